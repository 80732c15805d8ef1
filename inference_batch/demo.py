"""``ocsge demo``: the whole chain on a generated territory, then serving it.

Each step runs the same verb a user would type (``ocsge synth``, ``ocsge ingest`` …), so the demo
exercises the public CLI contract and stays a short script of steps. Steps are idempotent: re-running
the demo skips finished artifacts and goes straight to serving.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import click

from ocsge.cli import run_verb
from ocsge.products import product_key
from ocsge.progress import console, done, step
from ocsge.settings import get_settings
from ocsge.storage import open_storage

DEMO_DEPARTEMENT = "S01"
DEMO_MILLESIMES = (2021, 2024)


@dataclass(frozen=True)
class DemoConfig:
    root: str
    width_m: float
    height_m: float
    seed: int
    departement: str = DEMO_DEPARTEMENT
    millesimes: tuple[int, int] = DEMO_MILLESIMES

    @property
    def dep_args(self) -> list[str]:
        return ["--root", self.root, "--departement", self.departement]


def _synth(cfg: DemoConfig) -> None:
    run_verb("synth", [*cfg.dep_args, "--width-m", str(cfg.width_m), "--height-m", str(cfg.height_m),
                       "--seed", str(cfg.seed), "--millesimes", ",".join(map(str, cfg.millesimes))])


def _ingest(cfg: DemoConfig) -> None:
    storage = open_storage(cfg.root)
    for year in cfg.millesimes:
        with storage.local_copy(product_key("delivery", cfg.departement, year)) as archive:
            run_verb("ingest", [str(archive), *cfg.dep_args, "--millesime", str(year)])


def _products(cfg: DemoConfig) -> None:
    run_verb("products", cfg.dep_args)


def _production(cfg: DemoConfig) -> None:
    """Predict the latest millésime with the shipped model, vectorise, cross with ancillary data, QA."""
    year = str(cfg.millesimes[-1])
    args = [*cfg.dep_args, "--millesime", year]
    run_verb("predict", args)
    run_verb("vectorize", args)
    run_verb("rules", args)
    run_verb("qa", args)
    # work packages for photo-interpretation: where the production departs from the previous millésime
    run_verb("grid", [*cfg.dep_args, "--before", str(cfg.millesimes[0]), "--after", year,
                      "--after-source", "occupation_auto"])


def _analyses(cfg: DemoConfig) -> None:
    """Portrait, origin of new artificialisation, tâche urbaine, densification, renaturation, HTML portraits
    (with a synthetic grouping of the communes and population grid: the generated territory has none)."""
    run_verb("analyse", ["tout", *cfg.dep_args, "--demo-inputs"])


def _consolidation(cfg: DemoConfig) -> None:
    """A consolidation window on the flagged change cells, open for six months (as IGN's call for reports);
    accounts are created with ``ocsge accounts create``."""
    import datetime
    import os

    if "://" in cfg.root and not os.environ.get("OCSGE_CONSOLIDATION_DSN"):
        console.print("no consolidation window: an object-storage root needs OCSGE_CONSOLIDATION_DSN (PostgreSQL)")
        return
    closes = datetime.date.today() + datetime.timedelta(days=182)
    run_verb("consolidation", ["open", *cfg.dep_args, "--millesime", str(cfg.millesimes[-1]),
                               "--previous", str(cfg.millesimes[0]), "--closes", closes.isoformat()])


def _publish(cfg: DemoConfig) -> None:
    run_verb("publish", ["--root", cfg.root])


STEPS: list[tuple[str, Callable[[DemoConfig], None]]] = [
    ("generate the synthetic territory", _synth),
    ("ingest the IGN-like deliveries of both millésimes", _ingest),
    ("derive the per-département products", _products),
    ("produce OCS GE auto with the shipped model", _production),
    ("run the analyses for planners", _analyses),
    ("open a consolidation window on the change cells", _consolidation),
    ("publish the STAC catalogue", _publish),
]


@click.command("demo")
@click.option("--root", default=None, help="Storage root (folder or s3://…); default OCSGE_STORAGE_ROOT.")
@click.option("--width-m", type=float, default=2000.0, show_default=True, help="Territory width (m).")
@click.option("--height-m", type=float, default=1500.0, show_default=True, help="Territory height (m).")
@click.option("--seed", type=int, default=None, help="Random seed (default OCSGE_SEED).")
@click.option("--serve/--no-serve", default=True, show_default=True, help="Serve the result at the end.")
@click.option("--host", default=None, help="Address to serve on (default OCSGE_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to serve on (default OCSGE_PORT, 8000).")
def demo(root: str | None, width_m: float, height_m: float, seed: int | None, serve: bool,
         host: str | None, port: int | None) -> None:
    """The whole chain on a generated territory, then serve it (Ctrl-C to stop)."""
    settings = get_settings()
    cfg = DemoConfig(root=root or settings.storage_root, width_m=width_m, height_m=height_m,
                     seed=settings.seed if seed is None else seed)
    open_storage(cfg.root).check_writable()
    started = time.perf_counter()
    for number, (title, run) in enumerate(STEPS, start=1):
        step(f"[{number}/{len(STEPS)}] {title}")
        t0 = time.perf_counter()
        run(cfg)
        done(f"{title} ({time.perf_counter() - t0:.0f} s)")
    console.print(f"[bold green]demo chain finished in {time.perf_counter() - started:.0f} s[/] — "
                  f"artifacts under {cfg.root}")
    if serve:
        serve_args = ["--root", cfg.root]
        if host:
            serve_args += ["--host", host]
        if port:
            serve_args += ["--port", str(port)]
        run_verb("serve", serve_args)
