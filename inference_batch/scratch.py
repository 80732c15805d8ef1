"""Per-run scratch folders that never outlive their run.

A step that needs temporary files (rasters before their COG copy, GDAL's overview files) makes them in
``ocsge-{step}-{pid}-…`` under the system's temporary folder, never beside product keys. The folder is
removed on any exit of the ``with`` block — an exception, Ctrl-C, or a SIGTERM from AWS Batch or a
scheduler (turned into ``SystemExit`` while the block runs) — and a folder left by a process that was
killed without notice (SIGKILL, a lost machine) is swept by the next run, which sees its pid gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(step: str, base: str | Path | None = None) -> list[Path]:
    """Remove the scratch folders of ``step`` whose process is gone; the removed folders."""
    base = Path(base or tempfile.gettempdir())
    removed = []
    for folder in base.glob(f"ocsge-{step}-*-*"):
        pid = folder.name.split("-")[2]
        if folder.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def scratch(step: str, base: str | Path | None = None) -> Iterator[Path]:
    """A folder for this run of ``step``, removed on any exit (SIGTERM included); stale ones swept first."""
    sweep(step, base)
    folder = Path(tempfile.mkdtemp(prefix=f"ocsge-{step}-{os.getpid()}-", dir=base))
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main else None
    try:
        yield folder
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(folder, ignore_errors=True)
