"""`ocsge analyse …` as a user types it, on the hand-made territory."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from inference_batch.analyses.cli import analyse
from inference_batch.products.difference import run_difference
from ocsge.products import product_key
from ocsge.storage import LocalStorage
from support.analyses_scene import DEP, write_scene


def test_analyse_verbs(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    write_scene(store)
    run_difference(store, DEP, 2021, 2024)
    runner = CliRunner()
    root = ["--root", str(tmp_path), "-d", DEP]
    result = runner.invoke(analyse, ["portrait", *root, "--points", "2"])
    assert result.exit_code == 0, result.output
    assert product_key("portrait_evolution", DEP, (2021, 2024)) in result.output
    result = runner.invoke(analyse, ["origine", *root])
    assert result.exit_code == 0, result.output
    assert store.exists(product_key("origine", DEP, (2021, 2024)))
    result = runner.invoke(analyse, ["tache-urbaine", *root, "--dilation", "40", "--erosion", "20"])
    assert result.exit_code == 0, result.output
    assert product_key("tache_urbaine_communes", DEP, (2021, 2024)) in result.output
    result = runner.invoke(analyse, ["rapport", *root, "-t", "77002"])
    assert result.exit_code == 0, result.output
    assert store.exists(product_key("portrait_html", DEP, (2021, 2024), block="77002"))
    assert not store.exists(product_key("portrait_html", DEP, (2021, 2024), block="77001"))
    for verb in ("densification", "renaturation"):
        result = runner.invoke(analyse, [verb, *root, "-m", "2024"])
        assert result.exit_code == 0, result.output
    bad = runner.invoke(analyse, ["portrait", *root, "--groupements", str(tmp_path / "none.csv")])
    assert bad.exit_code != 0


def test_analyse_tout_with_demo_inputs(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    write_scene(store)
    run_difference(store, DEP, 2021, 2024)
    result = CliRunner().invoke(analyse, ["tout", "--root", str(tmp_path), "-d", DEP, "--demo-inputs"])
    assert result.exit_code == 0, result.output
    assert f"synthetic\t{product_key('groupements', DEP, 2024)}" in result.output
    assert store.exists(product_key("population", DEP, 2024))
    # the synthetic EPCI has its page; every product of the analyses is there
    assert store.exists(product_key("portrait_html", DEP, (2021, 2024), block="EPCI-77"))
    for product, mill in (("origine", (2021, 2024)), ("tache_urbaine_communes", (2021, 2024)),
                          ("densification_csv", 2024), ("renaturation_csv", 2021)):
        assert store.exists(product_key(product, DEP, mill)), product
    again = CliRunner().invoke(analyse, ["tout", "--root", str(tmp_path), "-d", DEP, "--demo-inputs"])
    assert again.exit_code == 0 and "synthetic" not in again.output  # written once, then kept
