"""Container images of the deployment, named by path: the CDK app never imports what they run.

Both images build from the repository root with an explicit allow-list of folders, so that staging an
asset at synth time copies a few MB (not ``.venv``, ``data`` or ``node_modules``) and the Lambda image
cannot pick up ``inference_batch`` (torch, geopandas). Images are built by ``cdk deploy`` (Docker on the
deploying machine), never at synth time; a prebuilt image can be given instead with the context values
``services_image`` / ``batch_image`` (``<repository name or URI>:<tag>``).
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

SERVICES_DOCKERFILE = "services/Dockerfile"
BATCH_DOCKERFILE = "inference_batch/Dockerfile"
PGSTAC_MIGRATE_DIR = Path(__file__).resolve().parent / "pgstac_migrate"

_ALWAYS_OUT = ["**/__pycache__", "**/*.pyc", "**/node_modules", "**/.pytest_cache", "**/cdk.out"]


def _context(folders: list[str]) -> list[str]:
    """Docker-ignore patterns that keep only ``folders`` (and the files that build the package)."""
    return ["*", "!pyproject.toml", "!README.md", *(f"!{folder}" for folder in folders), *_ALWAYS_OUT]


# What each image may see of the repository.
SERVICES_CONTEXT_EXCLUDE = _context(["ocsge", "catalog", "services"])
BATCH_CONTEXT_EXCLUDE = _context(["ocsge", "catalog", "inference_batch"])


def split_image_ref(ref: str) -> tuple[str, str]:
    """``repo:tag`` (or an ECR URI ``acct.dkr.ecr.region.amazonaws.com/repo:tag``) → (repository, tag)."""
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag or not name:
        raise ValueError(f"image reference {ref!r} must end with ':<tag>'")
    return name.split("/", 1)[1] if ".dkr.ecr." in name else name, tag
