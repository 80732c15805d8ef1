"""Progress and messages for long steps: one rich console, one progress-bar helper for every verb."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, highlight=False)


def _quiet() -> bool:
    return os.environ.get("OCSGE_QUIET", "") not in ("", "0") or not sys.stderr.isatty()


@contextlib.contextmanager
def progress(description: str, total: float | None, unit: str = "") -> Iterator[Callable[..., None]]:
    """A progress bar; yields ``advance(n=1, **fields)``. Falls back to start/end lines when not a TTY,
    so logs of batch jobs stay readable."""
    if _quiet():
        console.print(f"… {description}")
        done = 0.0

        def advance(n: float = 1, **_: object) -> None:
            nonlocal done
            done += n

        yield advance
        console.print(f"✓ {description} ({done:g}{(' ' + unit) if unit else ''})")
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn() if unit == "" else
               TextColumn("{task.completed:.2f}/{task.total:.2f} " + unit), TaskProgressColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, info="")

        def advance(n: float = 1, info: str = "", **_: object) -> None:
            bar.update(task, advance=n, info=info)

        yield advance


def step(message: str) -> None:
    console.print(f"[bold cyan]▶[/] {message}")


def done(message: str) -> None:
    console.print(f"[green]✓[/] {message}")
