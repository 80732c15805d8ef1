"""Writes that cannot destroy: what a batch step writes lands together, and only once the step succeeded.

A step runs against a :class:`StagedStorage`, a view of the storage whose writes (and deletions) are
held in a staging folder: reads see them, the storage does not. When the step returns, :func:`transaction`
commits them — freshness stamps removed first, outputs renamed into place, new stamps last, so that a kill
midway leaves outputs without stamps and the next run redoes the step. When the step fails (an exception,
Ctrl-C, a SIGTERM from AWS Batch), the staging folder is dropped: every key keeps the bytes it had,
whatever the step had already written, so a failed run never replaces or deletes a published artifact.
A step that completed before the failure keeps its committed outputs, complete and stamped: the next run
resumes after it.

Where staged files live: under ``{root}/_tmp/ocsge-run-{pid}-{start}-{host}-{id}/`` for a local root (the
same file system, so a commit is a rename and never a copy), in the run's scratch folder for S3 (committed
by the storage's own upload through its ``_tmp/`` keys, which a bucket lifecycle rule expires). Every other
temporary file of a run — GDAL's, tippecanoe's, Python's ``tempfile`` — goes to the run's scratch folder
``ocsge-run-{pid}-…`` under the system's temporary folder (:func:`batch_run` points ``tempfile``,
``TMPDIR`` and ``CPL_TMPDIR`` at it). A kill -9 runs no cleanup handler: both folders are swept by the
next run on this machine, which finds their process gone (pid and start time, so a reused pid is never
taken for the dead run); a staging folder of another machine is swept once a day old.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from ocsge.errors import ArtifactNotFound, InvalidStorageKey, OcsgeError, StorageError
from ocsge.storage import TMP_PREFIX, LocalStorage, ObjectInfo, Storage

STAMP_SUFFIX = ".inputs.json"  # inference_batch.freshness: stamps go last, and are removed first
RUN_PREFIX = "ocsge-run"
FOREIGN_STALE_S = 24 * 3600  # staging folders of another machine: swept once this old
_RUN_NAME = re.compile(r"^ocsge-run-(\d+)-(\d+)-([A-Za-z0-9.]+)-[0-9a-f]{8}$")
_SCRATCH_NAME = re.compile(r"^ocsge-[a-z0-9_]+-(\d+)-")

T = TypeVar("T")


class StepFailed(OcsgeError):
    """A batch step that failed on an unexpected error; the message names the step and its input."""


# --- processes ---------------------------------------------------------------------------------

def _start_time(pid: int) -> int:
    """Start time of a process in clock ticks since boot (0 where /proc is not there)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int, start: int | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return start is None or start == 0 or _start_time(pid) in (0, start)  # a reused pid is another process


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", ".", socket.gethostname() or "host")[:63] or "host"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


# --- sweeping what killed runs left --------------------------------------------------------------

def sweep_scratch(base: str | Path | None = None) -> list[Path]:
    """Remove the scratch folders (``ocsge-{step}-{pid}-…``, run folders included) under ``base`` (default:
    the system's temporary folder) whose process is gone; the removed folders."""
    base = Path(base or tempfile.gettempdir())
    removed = []
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            run = _RUN_NAME.match(entry.name)
            m = run or _SCRATCH_NAME.match(entry.name)
            if m is None or not entry.is_dir() or entry.is_symlink():
                continue
            pid = int(m.group(1))
            stale = not _alive(pid, int(run.group(2))) if run else pid != os.getpid() and not _alive(pid)
            if stale:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def sweep_storage(storage: Storage) -> list[str]:
    """Remove the staging folders of dead runs under a local root's ``_tmp/`` (S3: the bucket's lifecycle
    rule expires ``_tmp/`` keys); the removed folder names."""
    if not isinstance(storage, LocalStorage):
        return []
    area = storage.path / TMP_PREFIX.rstrip("/")
    removed = []
    host, now = _host(), time.time()
    with contextlib.suppress(OSError):
        for entry in area.iterdir():
            m = _RUN_NAME.match(entry.name)
            if m is None or entry.is_symlink():
                continue
            pid, start, where = int(m.group(1)), int(m.group(2)), m.group(3)
            here = where == host
            if (here and not _alive(pid, start)) or (not here and now - entry.stat().st_mtime > FOREIGN_STALE_S):
                _remove(entry)
                removed.append(entry.name)
        if not any(area.iterdir()):
            area.rmdir()
    return removed


# --- the run ---------------------------------------------------------------------------------

def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@dataclass
class BatchRun:
    """One process's batch run: its scratch folder and, per storage root, its staging folder."""

    name: str
    scratch: Path
    _areas: dict[str, Path] = field(default_factory=dict)
    _steps: int = 0

    def staging_area(self, storage: Storage) -> Path:
        """A new, empty staging folder for one step over ``storage``."""
        base = self._areas.get(storage.root)
        if base is None:
            if isinstance(storage, LocalStorage):
                sweep_storage(storage)
                base = storage.path / TMP_PREFIX.rstrip("/") / self.name
            else:
                base = self.scratch / "staging"
            self._areas[storage.root] = base
        self._steps += 1
        folder = base / f"step-{self._steps:04d}"
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise StorageError(f"storage root {storage.root} cannot be written: {exc}") from exc
        return folder

    def close(self) -> None:
        for area in self._areas.values():
            _remove(area)
            if not area.is_relative_to(self.scratch):
                with contextlib.suppress(OSError):
                    area.parent.rmdir()  # ``_tmp/``, only when empty: another run may be using it
        self._areas.clear()
        _remove(self.scratch)


_RUN: BatchRun | None = None
_RUN_LOCK = threading.Lock()


def current_run() -> BatchRun | None:
    return _RUN


@contextlib.contextmanager
def batch_run() -> Iterator[BatchRun]:
    """The scope of one batch run in this process (nested calls join it): sweeps what dead runs left,
    gives the run a scratch folder that every temporary file goes to, turns SIGTERM (AWS Batch, a scheduler)
    and SIGHUP (a closed terminal) into ``SystemExit`` so that cleanup runs, and removes the run's folders
    on any exit."""
    global _RUN
    with _RUN_LOCK:
        outer = _RUN
    if outer is not None:
        yield outer
        return
    system_tmp = Path(tempfile.gettempdir())
    sweep_scratch(system_tmp)
    pid = os.getpid()
    name = f"{RUN_PREFIX}-{pid}-{_start_time(pid)}-{_host()}-{uuid.uuid4().hex[:8]}"
    scratch = system_tmp / name
    scratch.mkdir()
    run = BatchRun(name, scratch)
    saved_env = {k: os.environ.get(k) for k in ("TMPDIR", "CPL_TMPDIR")}
    saved_tempdir = tempfile.tempdir
    main = threading.current_thread() is threading.main_thread()
    handled = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None] if main else []
    previous = {s: signal.signal(s, _terminate) for s in handled}
    os.environ["TMPDIR"] = os.environ["CPL_TMPDIR"] = str(scratch)
    tempfile.tempdir = str(scratch)
    with _RUN_LOCK:
        _RUN = run
    try:
        yield run
    finally:
        with _RUN_LOCK:
            _RUN = None
        tempfile.tempdir = saved_tempdir
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        run.close()


# --- the staged view -------------------------------------------------------------------------------

def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidStorageKey(f"invalid storage key {key!r}")
    return key


def _suffix(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    return name[name.index("."):] if "." in name else ""  # drivers pick formats from the extension


class StagedStorage:
    """The storage as one step sees it: its own writes and deletions (staged) over the storage's content.
    Implements the :class:`ocsge.storage.Storage` protocol; nothing reaches the storage before
    :meth:`commit`."""

    def __init__(self, base: Storage, area: Path, label: str = "") -> None:
        self.base, self.area, self.label = base, area, label
        self.root = base.root
        self._staged: dict[str, Path | None] = {}  # key → staged file, None: deleted
        self._types: dict[str, str | None] = {}
        self._n = 0

    # writes: staged
    def _new_path(self, key: str) -> Path:
        _check_key(key)
        self._n += 1
        return self.area / f"{self._n:05d}{_suffix(key)}"

    def _stage(self, key: str, path: Path | None, content_type: str | None = None) -> None:
        old = self._staged.pop(key, None)
        if old is not None and old != path:
            _remove(old)
        self._staged[key] = path  # re-inserted: commit order is the order of the last write of each key
        self._types[key] = content_type

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[Path]:
        tmp = self._new_path(key)
        try:
            yield tmp
            if not tmp.exists():
                raise StorageError(f"writer for {key!r} produced no file")
        except BaseException:
            _remove(tmp)
            raise
        self._stage(key, tmp)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        tmp = self._new_path(key)
        tmp.write_bytes(data)
        self._stage(key, tmp, content_type)

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        tmp = self._new_path(key)
        shutil.copyfile(path, tmp)
        self._stage(key, tmp, content_type)

    def delete(self, key: str) -> None:
        self._stage(_check_key(key), None)

    # reads: staged first
    def _local(self, key: str) -> Path | None:
        """The staged file of ``key``; None when the storage's own content stands."""
        if key not in self._staged:
            return None
        path = self._staged[key]
        if path is None:
            raise ArtifactNotFound(f"no object {key!r} under {self.root}")
        return path

    def exists(self, key: str) -> bool:
        if key in self._staged:
            return self._staged[key] is not None
        return self.base.exists(key)

    def stat(self, key: str) -> ObjectInfo:
        path = self._local(key)
        if path is None:
            return self.base.stat(key)
        st = path.stat()
        return ObjectInfo(key, st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}")

    def get_bytes(self, key: str) -> bytes:
        path = self._local(key)
        return self.base.get_bytes(key) if path is None else path.read_bytes()

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        path = self._local(key)
        if path is None:
            return self.base.get_range(key, offset, length)
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(length)

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        path = self._local(key)
        if path is not None:
            yield path
            return
        with self.base.local_copy(key) as copy:
            yield copy

    def url(self, key: str) -> str:
        path = self._local(key)
        return self.base.url(key) if path is None else str(path)

    def gdal_path(self, key: str) -> str:
        path = self._local(key)
        return self.base.gdal_path(key) if path is None else str(path)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        infos = {o.key: o for o in self.base.list(prefix)
                 if o.key not in self._staged and not o.key.startswith(TMP_PREFIX)}  # staging is no object
        for key, path in self._staged.items():
            if path is not None and key.startswith(prefix):
                infos[key] = self.stat(key)
        for key in sorted(infos):
            yield infos[key]

    def presigned_url(self, key: str, expires_s: int | None = None) -> str:
        return self.base.presigned_url(key, expires_s)

    def check_writable(self) -> None:
        self.base.check_writable()

    # the end of the step
    @property
    def pending(self) -> dict[str, Path | None]:
        return dict(self._staged)

    def _put(self, key: str, path: Path) -> None:
        if isinstance(self.base, LocalStorage):
            final = Path(self.base.url(key))  # the storage's own path: its checks (links out of the root) hold
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, final)  # same file system: atomic, and no copy of a large COG
                return
            except OSError as exc:
                if exc.errno != errno.EXDEV:  # the staging folder on another file system: copy then
                    raise StorageError(f"storage root {self.root} cannot be written ({key!r}): {exc}") from exc
        self.base.put_file(key, path, self._types.get(key))

    def commit(self, on_put: Callable[[str], None] | None = None) -> list[str]:
        """Make the staged writes and deletions the storage's: stamps removed first, outputs, deletions,
        stamps written last (a kill midway leaves outputs unstamped: the step is redone). The keys written."""
        stamps = [k for k in self._staged if k.endswith(STAMP_SUFFIX)]
        for key in stamps:
            self.base.delete(key)
        written = []
        for final_pass in (False, True):
            for key, path in list(self._staged.items()):
                if key.endswith(STAMP_SUFFIX) != final_pass:
                    continue
                if path is None:
                    if not final_pass:
                        self.base.delete(key)
                    continue
                self._put(key, path)
                written.append(key)
                if on_put is not None:
                    on_put(key)
        self._staged.clear()
        return written

    def discard(self) -> None:
        self._staged.clear()
        _remove(self.area)


# --- one step ----------------------------------------------------------------------------------------

def _named(label: str, exc: BaseException) -> BaseException:
    """An error that says which step failed on which input: an unexpected one becomes :class:`StepFailed`
    (the original stays its ``__cause__``, shown with ``--debug``); ours get the step in front when their
    message does not say it already."""
    if not isinstance(exc, Exception):
        return exc  # KeyboardInterrupt, SystemExit (SIGTERM): not errors of the step
    if isinstance(exc, OcsgeError):
        step, _, subject = label.partition(" ")
        message = str(exc)
        if exc.args and isinstance(exc.args[0], str) and not message.startswith(step):
            # a message that already names what the step works on gets the step only
            tokens = subject.split(" (", 1)[0].split()
            prefix = step if tokens and all(t in message for t in tokens) else label
            exc.args = (f"{prefix}: {exc.args[0]}", *exc.args[1:])
        return exc
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    failed = StepFailed(f"{label}: {type(exc).__name__}{': ' + detail if detail else ''}")
    failed.__cause__ = exc
    return failed


@contextlib.contextmanager
def transaction(storage: Storage, label: str) -> Iterator[Storage]:
    """Run one step against a staged view of ``storage``; commit when the block succeeds, drop everything
    it wrote when it fails. Inside another transaction, the block joins it (one commit for both). Errors
    leave named by ``label`` (the step and its input, e.g. ``render 33 2024 (occupation/D033/…)``)."""
    if isinstance(storage, StagedStorage):
        yield storage
        return
    with batch_run() as run:
        staged = StagedStorage(storage, run.staging_area(storage), label)
        try:
            yield staged
        except BaseException as exc:
            staged.discard()
            named = _named(label, exc)
            if named is exc:
                raise
            raise named from exc
        try:
            staged.commit()
        except BaseException as exc:
            named = _named(f"{label} (saving its outputs)", exc)
            if named is exc:
                raise
            raise named from exc
        finally:
            staged.discard()


def run_step(storage: Storage, label: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(staged_storage, *args, **kwargs)`` as one transaction (see :func:`transaction`)."""
    with transaction(storage, label) as staged:
        return fn(staged, *args, **kwargs)
