"""Writes that cannot destroy, and a batch that survives being killed.

- A step that fails, at its very last moment, leaves every published file (artifacts, stamps, catalogue)
  byte for byte as it was, and its error names the step and its input.
- ``ocsge render`` and ``ocsge products``, run as real processes, are killed with SIGKILL while they
  write a COG, write a PMTiles archive, write a zip, and between two renames of a commit (and stopped
  with SIGTERM once while they rasterise): each rerun sweeps what the killed one left, and the last one finishes with
  the outputs of an uninterrupted run, with no stray file under the storage root or in the scratch folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from inference_batch.writers.transaction import StagedStorage, StepFailed, sweep_scratch, sweep_storage, transaction
from ocsge.errors import OcsgeError
from ocsge.storage import LocalStorage

REPO = Path(__file__).resolve().parents[2]
RESOLUTION = "1"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated territory (two millésimes, a patch layer, communes) with its deliveries ingested."""
    synth = pytest.importorskip("inference_batch.synth.generate")
    from inference_batch.products.ingest import ingest

    root = tmp_path_factory.mktemp("ingested")
    store = LocalStorage(root)
    synth.generate(store, "S01", width_m=400, height_m=300, seed=9, millesimes=(2021, 2024), imagery=False)
    for k in sorted(o.key for o in store.list("deliveries/")):
        ingest(store.url(k), store)
    return root


@pytest.fixture(scope="module")
def uninterrupted(ingested: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ocsge products`` run once, without interruption, on a copy of the territory."""
    from inference_batch.products.pipeline import run_products

    root = tmp_path_factory.mktemp("uninterrupted") / "root"
    shutil.copytree(ingested, root)
    run_products(LocalStorage(root), "S01", resolution=float(RESOLUTION))
    return root


def _files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _stray(root: Path) -> list[str]:
    """Anything under a storage root that is not an object: staging folders, hidden temporary files."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.name == "_tmp" or ".tmp" in p.name or p.name.startswith("."))


# --- a step that fails changes nothing ----------------------------------------------------------------

STEPS = ["run_artif", "run_difference", "run_corrections", "run_grid", "run_difference_tiles",
         "run_render_difference", "run_render", "run_occupation_tiles", "run_stats", "run_archive"]
LABELS = {"run_artif": "artif S01 2021 (input occupation/DS01/2021/",
          "run_difference": "diff S01 2021-2024 (inputs artificialisation/DS01/2021/",
          "run_corrections": "corrections S01 2021-2024 (input deliveries/patch_corr/DS01/2021-2024/",
          "run_grid": "grid S01 2021-2024 (inputs occupation/DS01/2021/",
          "run_difference_tiles": "pmtiles S01 2021-2024 (input difference/DS01/2021-2024/",
          "run_render_difference": "render S01 2021-2024 difference (input difference/DS01/2021-2024/",
          "run_render": "render S01 2021 (input artificialisation/DS01/2021/",
          "run_occupation_tiles": "pmtiles S01 2021 (input artificialisation/DS01/2021/",
          "run_stats": "stats S01 2021, 2024 (input ancillary/communes/DS01/",
          "run_archive": "archive S01 2021 (input occupation/DS01/2021/"}


def test_a_step_failing_after_its_writes_leaves_the_published_state_byte_identical(
        uninterrupted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Published once; then each step in turn is redone (forced) and fails when it records its stamps —
    after every one of its outputs was written: nothing of it reaches the storage."""
    from catalog.publish import publish
    from inference_batch import freshness
    from inference_batch.products import pipeline

    root = tmp_path / "root"
    shutil.copytree(uninterrupted, root)
    store = LocalStorage(root)
    publish(store)
    published = _files(root)
    scratch_base = tmp_path / "scratch"
    scratch_base.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch_base))

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device (injected)")

    for name in STEPS:
        real = getattr(pipeline, name)
        with monkeypatch.context() as m:
            # only this step runs (the others are up to date), all of it, then fails on its stamps
            m.setattr(pipeline, name, lambda storage, *a, _real=real, **k: _real(storage, *a, **{**k, "force": True}))
            m.setattr(freshness, "mark_done", disk_full)
            with pytest.raises(StepFailed) as failed:
                pipeline.run_products(store, "S01", resolution=float(RESOLUTION))
        message = str(failed.value)
        assert message.startswith(LABELS[name]) and "OSError: [Errno 28] No space left on device" in message, message
        assert _files(root) == published, name
        assert _stray(root) == [] and list(scratch_base.iterdir()) == [], name
    # and the untouched state is still the finished one: a rerun has nothing to do
    pipeline.run_products(store, "S01", resolution=float(RESOLUTION))
    assert _files(root) == published


def test_an_error_inside_a_writer_keeps_the_previous_cog(uninterrupted: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The rollback of a failed write never deletes what the key held (issue: the key was registered before
    its write succeeded, and the rollback deleted the published COG)."""
    from inference_batch.products import render, tiles
    from ocsge.products import product_key

    root = tmp_path / "root"
    shutil.copytree(uninterrupted, root)
    store = LocalStorage(root)
    before = _files(root)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("GDAL: write error (injected)")

    monkeypatch.setattr(render, "copy_to_cog", broken)
    for run in (lambda: render.run_render(store, "S01", 2024, resolution=1.0, force=True),
                lambda: render.run_render_difference(store, "S01", 2021, 2024, resolution=1.0, force=True)):
        with pytest.raises(StepFailed, match=r"^render S01 .*RuntimeError: GDAL: write error \(injected\)"):
            run()
    monkeypatch.setattr(tiles, "build_pmtiles", broken)
    with pytest.raises(StepFailed, match=r"^pmtiles S01 2024 .*RuntimeError"):
        tiles.run_occupation_tiles(store, "S01", 2024, force=True)
    assert _files(root) == before and _stray(root) == []
    assert (root / product_key("couverture_cog", "S01", 2024)).stat().st_size > 0


def test_staged_writes_are_seen_by_the_step_and_land_together(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "root")
    store.put_bytes("a/old.json", b"old")
    store.put_bytes("a/old.json.inputs.json", b"stamp")
    with transaction(store, "demo S01 2024") as staged:
        assert isinstance(staged, StagedStorage)
        staged.put_bytes("a/new.json", b"new")
        staged.delete("a/old.json.inputs.json")
        with staged.writer("a/old.json") as tmp:
            tmp.write_bytes(b"rewritten")
        assert staged.get_bytes("a/old.json") == b"rewritten" and staged.exists("a/new.json")
        assert not staged.exists("a/old.json.inputs.json")
        assert [o.key for o in staged.list("a/")] == ["a/new.json", "a/old.json"]
        assert store.get_bytes("a/old.json") == b"old" and not store.exists("a/new.json")  # nothing landed yet
        assert (tmp_path / "root" / "_tmp").is_dir()
        with transaction(staged, "nested") as inner:  # joins the enclosing step
            assert inner is staged
    assert store.get_bytes("a/old.json") == b"rewritten" and store.get_bytes("a/new.json") == b"new"
    assert not store.exists("a/old.json.inputs.json") and _stray(tmp_path / "root") == []

    with pytest.raises(StepFailed, match=r"^demo S01 2024: ZeroDivisionError: division by zero$"), \
            transaction(store, "demo S01 2024") as staged:
        staged.put_bytes("a/old.json", b"lost")
        staged.delete("a/new.json")
        1 / 0  # noqa: B018
    assert store.get_bytes("a/old.json") == b"rewritten" and store.exists("a/new.json")
    with pytest.raises(OcsgeError, match=r"^demo S01 2024: no object 'nope'"), transaction(store, "demo S01 2024") as s:
        s.get_bytes("nope")
    assert _stray(tmp_path / "root") == []


def test_only_dead_runs_are_swept(tmp_path: Path) -> None:
    """Staging folders under ``_tmp/`` and scratch folders of a process that is gone are swept; those of a live
    process are kept, and a pid reused by another process (another start time) does not keep a dead run's."""
    from inference_batch.writers import transaction as tx

    store = LocalStorage(tmp_path / "root")
    area = tmp_path / "root" / "_tmp"
    host = tx._host()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me, start = os.getpid(), tx._start_time(os.getpid())
    folders = {
        "dead": f"ocsge-run-{dead.pid}-1-{host}-0123abcd",
        "reused": f"ocsge-run-{me}-{start + 1 if start else 1}-{host}-0123abce",
        "live": f"ocsge-run-{me}-{start}-{host}-0123abcf",
        "elsewhere": f"ocsge-run-{dead.pid}-1-another.host-0123abd0",
    }
    for name in folders.values():
        (area / name / "step-0001").mkdir(parents=True)
        (area / name / "step-0001" / "00001.tif").write_bytes(b"partial")
    removed = set(sweep_storage(store))
    expected = {folders["dead"]} | ({folders["reused"]} if start else set())
    assert removed == expected
    assert (area / folders["live"]).is_dir() and (area / folders["elsewhere"]).is_dir()

    base = tmp_path / "scratch"
    (base / f"ocsge-render-{dead.pid}-abc").mkdir(parents=True)
    (base / f"ocsge-render-{me}-abd").mkdir()
    (base / f"ocsge-run-{dead.pid}-1-{host}-0123abcd").mkdir()
    (base / "ocsge-extras.xyz").mkdir()
    assert {p.name for p in sweep_scratch(base)} == {f"ocsge-render-{dead.pid}-abc",
                                                     f"ocsge-run-{dead.pid}-1-{host}-0123abcd"}
    assert sorted(p.name for p in base.iterdir()) == ["ocsge-extras.xyz", f"ocsge-render-{me}-abd"]


# --- killed processes -----------------------------------------------------------------------------------

# Runs an ``ocsge`` verb in a real process that stops at one point of its work, announces it on stdout and
# waits there to be killed (the test sends SIGKILL or SIGTERM): a kill at a known point, not at a random one.
_CHILD = r'''
import os, shutil, sys, time
point, args = sys.argv[1], sys.argv[2:]


def stop_here():
    print("STOPPED AT " + point, flush=True)
    time.sleep(300)


def half_then_stop(real):
    """Write half of the file, as a write interrupted midway would, then stop."""
    def move(src, dst, *a, **k):
        data = open(src, "rb").read()
        with open(dst, "wb") as out:
            out.write(data[: len(data) // 2])
            out.flush()
            stop_here()
    return move


if point == "rasterise":
    from inference_batch.products import render
    real = render.rasterize
    def rasterize(*a, **k):
        real(*a, **k)
        stop_here()
    render.rasterize = rasterize
elif point == "cog":
    from inference_batch.writers import cog
    cog.shutil = type("shutil", (), {"move": staticmethod(half_then_stop(shutil.move))})
elif point == "pmtiles":
    from inference_batch.products import tiles
    tiles.shutil = type("shutil", (), {"move": staticmethod(half_then_stop(shutil.move)),
                                       "which": staticmethod(shutil.which)})
elif point == "zip":
    from inference_batch.products import archive
    def copy_half(src, dst, length=0):
        dst.write(src.read(1024))
        dst.flush()
        stop_here()
    archive.shutil = type("shutil", (), {"copyfileobj": staticmethod(copy_half)})
elif point == "commit":
    from inference_batch.writers import transaction
    real_put, calls = transaction.StagedStorage._put, []
    def put(self, key, path):
        calls.append(key)
        if len(calls) == 2:  # one file of the step renamed into place, the others not yet
            stop_here()
        real_put(self, key, path)
    transaction.StagedStorage._put = put

from ocsge.cli import main
main(args)
'''


def _run_until(point: str, args: list[str], env: dict[str, str], sig: int = signal.SIGKILL) -> None:
    """Start ``ocsge {args}``, wait until it reaches ``point``, then send it ``sig``."""
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, point, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    deadline, seen = time.monotonic() + 120, []
    try:
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = proc.stdout.readline() if ready else ""
            seen.append(line)
            if line.startswith("STOPPED AT"):
                break
            if not line and (proc.poll() is not None or time.monotonic() > deadline):
                raise AssertionError(f"ocsge {' '.join(args)} never reached {point} (rc {proc.poll()}):\n"
                                     f"{''.join(seen)}{proc.stderr.read() if proc.poll() is not None else ''}")
        proc.send_signal(sig)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert rc == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + sig), rc


def _outputs(root: Path) -> dict[str, object]:
    """What a products run made, comparable between runs: the bytes of every file, except the stamps (they
    record modification times), a zip's members (compared one by one) and timings in JSON reports."""
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if not p.is_file() or rel.endswith(".inputs.json"):
            continue
        if p.suffix == ".zip":
            with zipfile.ZipFile(p) as zf:
                out[rel] = {i.filename: hashlib.sha256(zf.read(i)).hexdigest() for i in zf.infolist()}
        elif p.suffix == ".json" and rel.startswith("reports/"):
            out[rel] = _without_timings(json.loads(p.read_text()))
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _without_timings(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k not in ("seconds",) and not k.endswith("_s")}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def test_killed_runs_leave_nothing_and_the_rerun_equals_an_uninterrupted_run(
        ingested: Path, uninterrupted: Path, tmp_path: Path) -> None:
    root, scratch_base = tmp_path / "root", tmp_path / "scratch"
    shutil.copytree(ingested, root)
    scratch_base.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch_base), "OCSGE_QUIET": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    render = ["render", "-d", "S01", "--root", str(root), "--resolution", RESOLUTION]
    products = ["products", "-d", "S01", "--root", str(root), "--resolution", RESOLUTION]
    ingested_files = _files(ingested)

    # SIGTERM (AWS Batch stopping a job): the run cleans up after itself, nothing is changed
    _run_until("rasterise", render, env, signal.SIGTERM)
    assert _files(root) == ingested_files and list(scratch_base.iterdir()) == []

    # SIGKILL: no handler runs; what is left is swept by the next run, whatever verb it is. Killed while
    # writing a COG (its scratch rasters still open), between two renames of a commit (GeoParquet + JSON),
    # while writing a PMTiles archive, while writing a zip.
    for point, args in (("cog", render), ("commit", products), ("pmtiles", products), ("zip", products)):
        _run_until(point, args, env)
        assert any(scratch_base.iterdir()), f"{point}: the killed run left no scratch folder to sweep"
        assert (root / "_tmp").is_dir(), f"{point}: the killed run left no staging folder to sweep"

    done = subprocess.run([sys.executable, "-m", "ocsge.cli", *products], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert _stray(root) == [] and list(scratch_base.iterdir()) == []
    assert _outputs(root) == _outputs(uninterrupted)
    # stamped as done: one more run rewrites nothing
    from inference_batch.products.pipeline import run_products

    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    run_products(LocalStorage(root), "S01", resolution=float(RESOLUTION))
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == mtimes
