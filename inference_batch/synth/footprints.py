"""Approximate Lambert-93 bounding boxes of the 96 metropolitan départements, so that synthetic
territories can be laid on the real geometry of France (``ocsge synth --vector-only --footprint 77``,
``benchmarks/bench_national.py``).

The boxes are **approximate, to about 5 km** (up to ~10 km on a few irregular coasts): they were
estimated from each département's extent in longitude/latitude and projected to EPSG:2154 (bounds densified
along the edges), rounded to the kilometre. They are meant for placing synthetic data where France is —
realistic sizes, neighbours and overlaps of bounding boxes — never for clipping or reporting real data.
Overseas départements are not listed (they use other CRSs and are not part of the national rehearsal).
"""

from __future__ import annotations

from ocsge.errors import OcsgeError
from ocsge.territory import normalise_code

BBox = tuple[float, float, float, float]

# code → (xmin, ymin, xmax, ymax) in kilometres, EPSG:2154
_BOUNDS_KM: dict[str, tuple[int, int, int, int]] = {
    "01": (833, 6503, 947, 6607),  # Ain
    "02": (697, 6860, 792, 6998),  # Aisne
    "03": (644, 6537, 778, 6634),  # Allier
    "04": (898, 6289, 1020, 6404),  # Alpes-de-Haute-Provence
    "05": (890, 6346, 1026, 6456),  # Hautes-Alpes
    "06": (990, 6271, 1082, 6374),  # Alpes-Maritimes
    "07": (767, 6352, 851, 6476),  # Ardèche
    "08": (773, 6904, 874, 7011),  # Ardennes
    "09": (522, 6164, 633, 6249),  # Ariège
    "10": (729, 6758, 839, 6848),  # Aube
    "11": (592, 6172, 720, 6263),  # Aude
    "12": (606, 6288, 736, 6427),  # Aveyron
    "13": (799, 6230, 929, 6317),  # Bouches-du-Rhône
    "14": (394, 6853, 515, 6934),  # Calvados
    "15": (625, 6391, 729, 6487),  # Cantal
    "16": (428, 6457, 542, 6566),  # Charente
    "17": (341, 6448, 470, 6596),  # Charente-Maritime
    "18": (606, 6591, 706, 6726),  # Cher
    "19": (560, 6425, 663, 6520),  # Corrèze
    "2A": (1156, 6045, 1237, 6164),  # Corse-du-Sud
    "2B": (1154, 6097, 1246, 6237),  # Haute-Corse
    "21": (780, 6645, 892, 6773),  # Côte-d'Or
    "22": (204, 6781, 340, 6887),  # Côtes-d'Armor
    "23": (573, 6507, 670, 6597),  # Creuse
    "24": (459, 6387, 579, 6518),  # Dordogne
    "25": (903, 6609, 1011, 6728),  # Doubs
    "26": (829, 6337, 926, 6476),  # Drôme
    "27": (501, 6842, 613, 6936),  # Eure
    "28": (533, 6762, 626, 6873),  # Eure-et-Loir
    "29": (91, 6754, 231, 6881),  # Finistère
    "30": (721, 6262, 850, 6375),  # Gard
    "31": (490, 6177, 624, 6317),  # Haute-Garonne
    "32": (434, 6247, 556, 6337),  # Gers
    "33": (360, 6347, 491, 6507),  # Gironde
    "34": (663, 6235, 797, 6320),  # Hérault
    "35": (303, 6733, 404, 6859),  # Ille-et-Vilaine
    "36": (536, 6584, 640, 6689),  # Indre
    "37": (475, 6628, 578, 6739),  # Indre-et-Loire
    "38": (835, 6402, 966, 6537),  # Isère
    "39": (870, 6576, 947, 6695),  # Jura
    "40": (334, 6270, 473, 6392),  # Landes
    "41": (517, 6677, 644, 6784),  # Loir-et-Cher
    "42": (753, 6459, 838, 6577),  # Loire
    "43": (706, 6405, 818, 6482),  # Haute-Loire
    "44": (277, 6648, 404, 6763),  # Loire-Atlantique
    "45": (588, 6709, 710, 6807),  # Loiret
    "46": (539, 6345, 638, 6441),  # Lot
    "47": (448, 6321, 548, 6412),  # Lot-et-Garonne
    "48": (698, 6335, 779, 6432),  # Lozère
    "49": (369, 6656, 493, 6755),  # Maine-et-Loire
    "50": (334, 6824, 430, 6970),  # Manche
    "51": (728, 6824, 851, 6925),  # Marne
    "52": (820, 6721, 918, 6847),  # Haute-Marne
    "53": (382, 6741, 475, 6838),  # Mayenne
    "54": (876, 6808, 1005, 6948),  # Meurthe-et-Moselle
    "55": (837, 6814, 912, 6951),  # Meuse
    "56": (192, 6699, 326, 6811),  # Morbihan
    "57": (909, 6829, 1042, 6944),  # Moselle
    "58": (689, 6617, 794, 6722),  # Nièvre
    "59": (633, 6986, 788, 7111),  # Nord
    "60": (604, 6884, 712, 6963),  # Oise
    "61": (413, 6789, 552, 6881),  # Orne
    "62": (597, 6991, 714, 7103),  # Pas-de-Calais
    "63": (652, 6466, 777, 6574),  # Puy-de-Dôme
    "64": (308, 6191, 460, 6290),  # Pyrénées-Atlantiques
    "65": (427, 6177, 510, 6285),  # Hautes-Pyrénées
    "66": (594, 6137, 715, 6203),  # Pyrénées-Orientales
    "67": (988, 6787, 1089, 6899),  # Bas-Rhin
    "68": (985, 6709, 1048, 6811),  # Haut-Rhin
    "69": (795, 6484, 869, 6581),  # Rhône
    "70": (877, 6686, 989, 6776),  # Haute-Saône
    "71": (747, 6562, 890, 6676),  # Saône-et-Loire
    "72": (441, 6721, 546, 6826),  # Sarthe
    "73": (903, 6442, 1030, 6546),  # Savoie
    "74": (915, 6513, 1015, 6598),  # Haute-Savoie
    "75": (643, 6857, 661, 6868),  # Paris
    "76": (487, 6906, 614, 7001),  # Seine-Maritime
    "77": (655, 6780, 742, 6891),  # Seine-et-Marne
    "78": (585, 6816, 644, 6889),  # Yvelines
    "79": (398, 6545, 489, 6675),  # Deux-Sèvres
    "80": (583, 6941, 715, 7031),  # Somme
    "81": (582, 6253, 695, 6347),  # Tarn
    "82": (518, 6297, 620, 6369),  # Tarn-et-Garonne
    "83": (914, 6213, 1022, 6309),  # Var
    "84": (831, 6286, 923, 6374),  # Vaucluse
    "85": (284, 6581, 431, 6678),  # Vendée
    "86": (460, 6552, 564, 6680),  # Vienne
    "87": (515, 6483, 616, 6592),  # Haute-Vienne
    "88": (877, 6748, 1014, 6832),  # Vosges
    "89": (689, 6690, 801, 6812),  # Yonne
    "90": (981, 6710, 1012, 6756),  # Territoire de Belfort
    "91": (619, 6798, 670, 6854),  # Essonne
    "92": (637, 6848, 652, 6873),  # Hauts-de-Seine
    "93": (648, 6857, 671, 6879),  # Seine-Saint-Denis
    "94": (649, 6843, 672, 6862),  # Val-de-Marne
    "95": (598, 6868, 671, 6905),  # Val-d'Oise
}


def metropolitan_codes() -> list[str]:
    """The 96 metropolitan département codes, in INSEE order (01…19, 2A, 2B, 21…95)."""
    return list(_BOUNDS_KM)


def footprint(code: object) -> BBox:
    """The approximate Lambert-93 bounding box (metres) of a metropolitan département."""
    text = normalise_code(code)
    try:
        box = _BOUNDS_KM[text]
    except KeyError:
        raise OcsgeError(
            f"no footprint for département {code!r}: expected one of the 96 metropolitan codes (01…95, 2A, 2B)"
        ) from None
    return tuple(float(v) * 1000.0 for v in box)  # type: ignore[return-value]
