"""Départements of France: code, name, CRS, and the IGN file token of each.

Métropole and Corse use Lambert-93 (EPSG:2154); the DROM use the UTM CRSs of their IGN deliveries
(../shared/reference/ocsge-domain.md §3.4). Codes ``S01``…``S99`` name synthetic territories made by
``ocsge synth``: they are clearly not real départements and use Lambert-93.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ocsge.errors import UnknownDepartementError

LAMBERT93 = 2154
DROM_EPSG: dict[str, int] = {
    "971": 5490,  # Guadeloupe, RGAF09 / UTM 20N
    "972": 5490,  # Martinique, RGAF09 / UTM 20N
    "973": 2972,  # Guyane, RGFG95 / UTM 22N
    "974": 2975,  # La Réunion, RGR92 / UTM 40S
    "976": 4471,  # Mayotte, RGM04 / UTM 38S
}
# 975 (Saint-Pierre-et-Miquelon) is a collectivité with no OCS GE production: not listed.

_NAMES: dict[str, str] = {
    "01": "Ain", "02": "Aisne", "03": "Allier", "04": "Alpes-de-Haute-Provence", "05": "Hautes-Alpes",
    "06": "Alpes-Maritimes", "07": "Ardèche", "08": "Ardennes", "09": "Ariège", "10": "Aube",
    "11": "Aude", "12": "Aveyron", "13": "Bouches-du-Rhône", "14": "Calvados", "15": "Cantal",
    "16": "Charente", "17": "Charente-Maritime", "18": "Cher", "19": "Corrèze", "2A": "Corse-du-Sud",
    "2B": "Haute-Corse", "21": "Côte-d'Or", "22": "Côtes-d'Armor", "23": "Creuse", "24": "Dordogne",
    "25": "Doubs", "26": "Drôme", "27": "Eure", "28": "Eure-et-Loir", "29": "Finistère", "30": "Gard",
    "31": "Haute-Garonne", "32": "Gers", "33": "Gironde", "34": "Hérault", "35": "Ille-et-Vilaine",
    "36": "Indre", "37": "Indre-et-Loire", "38": "Isère", "39": "Jura", "40": "Landes",
    "41": "Loir-et-Cher", "42": "Loire", "43": "Haute-Loire", "44": "Loire-Atlantique", "45": "Loiret",
    "46": "Lot", "47": "Lot-et-Garonne", "48": "Lozère", "49": "Maine-et-Loire", "50": "Manche",
    "51": "Marne", "52": "Haute-Marne", "53": "Mayenne", "54": "Meurthe-et-Moselle", "55": "Meuse",
    "56": "Morbihan", "57": "Moselle", "58": "Nièvre", "59": "Nord", "60": "Oise", "61": "Orne",
    "62": "Pas-de-Calais", "63": "Puy-de-Dôme", "64": "Pyrénées-Atlantiques", "65": "Hautes-Pyrénées",
    "66": "Pyrénées-Orientales", "67": "Bas-Rhin", "68": "Haut-Rhin", "69": "Rhône", "70": "Haute-Saône",
    "71": "Saône-et-Loire", "72": "Sarthe", "73": "Savoie", "74": "Haute-Savoie", "75": "Paris",
    "76": "Seine-Maritime", "77": "Seine-et-Marne", "78": "Yvelines", "79": "Deux-Sèvres",
    "80": "Somme", "81": "Tarn", "82": "Tarn-et-Garonne", "83": "Var", "84": "Vaucluse", "85": "Vendée",
    "86": "Vienne", "87": "Haute-Vienne", "88": "Vosges", "89": "Yonne", "90": "Territoire de Belfort",
    "91": "Essonne", "92": "Hauts-de-Seine", "93": "Seine-Saint-Denis", "94": "Val-de-Marne",
    "95": "Val-d'Oise", "971": "Guadeloupe", "972": "Martinique", "973": "Guyane", "974": "La Réunion",
    "976": "Mayotte",
}

_SYNTHETIC = re.compile(r"^S\d{2}$")


@dataclass(frozen=True)
class Departement:
    code: str
    name: str
    epsg: int
    synthetic: bool = False

    @property
    def token(self) -> str:
        """IGN file token: three characters after ``D`` (``D001``, ``D02A``, ``D971``, ``DS01``)."""
        return "D" + self.code.rjust(3, "0")

    @property
    def crs(self) -> str:
        return f"EPSG:{self.epsg}"


DEPARTEMENTS: dict[str, Departement] = {
    code: Departement(code, name, DROM_EPSG.get(code, LAMBERT93)) for code, name in _NAMES.items()
}


def normalise_code(code: object) -> str:
    """Canonical code from user or file input: ``1``/``01``/``D001``/``d01`` → ``01``, ``2a`` → ``2A``."""
    text = str(code).strip().upper()
    if text.startswith("D") and len(text) > 1:
        text = text[1:]
    if text.isdigit():
        text = text.lstrip("0").rjust(2, "0") if len(text) <= 3 else text
        if len(text) == 4 and text.startswith("0"):  # "D0971", a known naming irregularity
            text = text[1:]
    elif len(text) == 3 and text.startswith("0") and text[1:] in ("2A", "2B"):
        text = text[1:]
    return text


def departement(code: object) -> Departement:
    """The département for a code in any usual spelling; raises for unknown codes."""
    text = normalise_code(code)
    if text in DEPARTEMENTS:
        return DEPARTEMENTS[text]
    if _SYNTHETIC.match(text):
        return Departement(text, f"Territoire synthétique {text}", LAMBERT93, synthetic=True)
    raise UnknownDepartementError(code)


def all_departements() -> list[Departement]:
    return list(DEPARTEMENTS.values())
