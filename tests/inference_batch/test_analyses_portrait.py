"""Portrait de territoire on a hand-made territory (tests/support/analyses_scene.py): stocks per commune,
groupement and département, change in ha and points, and IGN's Var example flagged by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference_batch.analyses.portrait import FlagRule, run_portrait
from inference_batch.analyses.territories import read_csv_table
from ocsge.storage import LocalStorage
from support.analyses_scene import DEP, write_scene


@pytest.fixture()
def store(tmp_path: Path) -> LocalStorage:
    store = LocalStorage(tmp_path / "root")
    write_scene(store)
    # A and B form G1; A alone is also in G2 (a commune may belong to an EPCI and a SCoT)
    store.put_bytes("ancillary/groupements/D077/2024/ancillary_groupements_D077_2024.csv",
                    b"code_insee;groupement;nom_groupement\n77001;G1;EPCI un\n77002;G1;EPCI un\n77001;G2;SCoT A\n",
                    "text/csv")
    return store


def _value(table, niveau, territoire, nomenclature, code, column):
    row = table[(table.niveau == niveau) & (table.territoire == territoire) & (table.nomenclature == nomenclature)
                & (table.code == code)]
    assert len(row) == 1, (niveau, territoire, code)
    return row.iloc[0][column]


def test_stocks_evolution_and_flags_by_hand(store: LocalStorage) -> None:
    keys = run_portrait(store, DEP, [2021, 2024])
    stocks = read_csv_table(store, keys["portrait_stocks_2021"])
    # every territory: 2 communes, 2 groupements, the département
    assert set(zip(stocks.niveau, stocks.territoire, strict=True)) == {
        ("commune", "77001"), ("commune", "77002"), ("groupement", "G1"), ("groupement", "G2"),
        ("departement", "77")}
    # 2021: feuillus 300 m × 1000 m = 30 ha of 100 ha; half of it in each commune (15 ha of 50 ha)
    assert _value(stocks, "departement", "77", "couverture", "CS2.1.1.1", "surface_ha") == pytest.approx(30.0)
    assert _value(stocks, "departement", "77", "couverture", "CS2.1.1.1", "part_pct") == pytest.approx(30.0)
    assert _value(stocks, "commune", "77001", "couverture", "CS2.1.1.1", "surface_ha") == pytest.approx(15.0)
    assert _value(stocks, "groupement", "G2", "couverture", "CS2.1.1.1", "surface_ha") == pytest.approx(15.0)
    assert _value(stocks, "groupement", "G1", "usage", "US1.2", "surface_ha") == pytest.approx(50.0)  # 30 + 20
    # artificialised = bâti only (15 ha); absent leaves are listed with 0
    assert _value(stocks, "departement", "77", "artificialisation", "artif", "surface_ha") == pytest.approx(15.0)
    assert _value(stocks, "departement", "77", "couverture", "CS1.2.3", "surface_ha") == 0.0
    assert _value(stocks, "commune", "77002", "couverture", "CS2.1.1.1", "libelle") == "Peuplement de feuillus"

    evo = read_csv_table(store, keys["portrait_evolution_2021_2024"])
    # département: mixte 20 → 22 ha = +2 ha = +2 pts (+10 % of itself); herbacée 20 → 17.5 ha = −2.5 pts
    assert _value(evo, "departement", "77", "couverture", "CS2.1.1.3", "variation_ha") == pytest.approx(2.0)
    assert _value(evo, "departement", "77", "couverture", "CS2.1.1.3", "variation_pts") == pytest.approx(2.0)
    assert _value(evo, "departement", "77", "couverture", "CS2.1.1.3", "variation_relative_pct") == \
        pytest.approx(10.0)
    assert _value(evo, "departement", "77", "couverture", "CS2.2.1", "variation_pts") == pytest.approx(-2.5)
    # commune B: herbacée 10 → 8.5 ha of 50 = 20 % → 17 % (−3 pts); bâti 7.5 → 8 ha = +1 pt
    assert _value(evo, "commune", "77002", "couverture", "CS2.2.1", "variation_pts") == pytest.approx(-3.0)
    assert _value(evo, "commune", "77002", "artificialisation", "artif", "variation_pts") == pytest.approx(1.0)

    # flags: slow couvertures moving ≥ 1 pt while artificialisation moves < 1 pt.
    # département (+0.5 pt artif), A (0 pt), G1 (= département), G2 (= A): feuillus, mixte, eau, arbustive.
    # B: artificialisation moves by 1 pt, so its changes are explained by development: no flag.
    # herbacée (not a slow couverture) is never flagged.
    flagged = evo[evo.a_verifier.astype(str) == "True"]
    expected_codes = {"CS2.1.1.1", "CS2.1.1.3", "CS1.2.2", "CS2.1.2"}
    for territory in ("77", "77001", "G1", "G2"):
        assert set(flagged[flagged.territoire == territory].code) == expected_codes, territory
    assert "77002" not in set(flagged.territoire)
    report = json.loads(store.get_bytes(keys["portrait_report_2021_2024"]))
    dep = next(t for t in report["territoires_a_verifier"] if t["niveau"] == "departement")
    assert dep["message"] == ("perte de 1.0 pt de Surfaces d'eau (eau continentale et maritime), perte de 1.0 pt "
                              "de Peuplement de feuillus, gain de 2.0 pt de Peuplement mixte, gain de 2.0 pt de "
                              "Formations arbustives et sous-arbrisseaux, alors que l'artificialisation varie "
                              "de +0.5 pt ⇒ évolutions à vérifier localement")
    assert report["regle"]["points"] == 1.0


def test_threshold_and_skip_when_up_to_date(store: LocalStorage) -> None:
    keys = run_portrait(store, DEP, [2021, 2024])
    stamp = store.get_bytes(keys["portrait_evolution_2021_2024"] + ".inputs.json")
    mtime = (Path(store.root) / keys["portrait_stocks_2021"]).stat().st_mtime_ns
    run_portrait(store, DEP, [2021, 2024])  # nothing changed: nothing rewritten
    assert (Path(store.root) / keys["portrait_stocks_2021"]).stat().st_mtime_ns == mtime
    assert store.get_bytes(keys["portrait_evolution_2021_2024"] + ".inputs.json") == stamp
    # a stricter rule (2.5 pts): only changes of 2.5 pts and more are flagged → none of the slow ones here
    run_portrait(store, DEP, [2021, 2024], rule=FlagRule(points=2.5))
    evo = read_csv_table(store, keys["portrait_evolution_2021_2024"])
    assert not (evo.a_verifier.astype(str) == "True").any()
    assert (Path(store.root) / keys["portrait_stocks_2021"]).stat().st_mtime_ns == mtime  # stocks still up to date


def test_groupements_file_given_by_the_user(store: LocalStorage, tmp_path: Path) -> None:
    path = tmp_path / "epci.csv"
    path.write_text("insee_com,epci,nom_epci\n77002,E9,Seule B\n")
    keys = run_portrait(store, DEP, [2021], groupements=path)
    stocks = read_csv_table(store, keys["portrait_stocks_2021"])
    assert set(stocks[stocks.niveau == "groupement"].territoire) == {"E9"}
    assert _value(stocks, "groupement", "E9", "couverture", "CS1.1.1.1", "surface_ha") == pytest.approx(7.5)
