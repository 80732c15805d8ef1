"""``ocsge synth`` from the command line: it writes a territory, and bad input exits ≠ 0 naming the value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ocsge.products import product_key


def _ocsge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OCSGE_QUIET": "1"}
    return subprocess.run([sys.executable, "-m", "ocsge.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_synth_writes_a_territory(tmp_path) -> None:
    root = tmp_path / "data"
    result = _ocsge("synth", "--root", str(root), "--width-m", "200", "--height-m", "200", "--no-imagery",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (root / product_key("synth_manifest", "S01", 2021)).is_file()
    assert (root / product_key("delivery", "S01", 2024)).is_file()


def test_bad_departement_exits_nonzero_naming_it(tmp_path) -> None:
    result = _ocsge("synth", "--root", str(tmp_path / "d"), "--departement", "ZZ9", cwd=tmp_path)
    assert result.returncode != 0
    assert "ZZ9" in result.stderr
    assert not (tmp_path / "d").exists()
    result = _ocsge("synth", "--root", str(tmp_path / "d"), "--departement", "77", cwd=tmp_path)
    assert result.returncode != 0 and "'77'" in result.stderr


def test_unwritable_root_exits_nonzero_naming_it(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = _ocsge("synth", "--root", str(blocker / "root"), "--width-m", "200", "--height-m", "200",
                    "--no-imagery", cwd=tmp_path)
    assert result.returncode != 0 and str(blocker) in result.stderr


def test_vector_only_mode(tmp_path) -> None:
    import geopandas as gpd

    root = tmp_path / "data"
    result = _ocsge("synth", "--root", str(root), "--departement", "S04", "--vector-only", "--polygons", "2500",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(gpd.read_parquet(root / product_key("truth", "S04", 2021))) == 2500
