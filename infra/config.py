"""Deployment configuration read from CDK context, validated before any construct is built.

Every value comes from ``cdk.json``/``-c key=value`` (strings) or a dict passed to :func:`infra.app.synth`
(typed values); both go through the same parsing, so ``-c departements=77,2A`` and
``{"departements": ["77", "2A"]}`` mean the same. A bad value stops the synth with an
:class:`InfraConfigError` that names the context key and the value at fault.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# GPU instance families AWS Batch can run the CUDA image on, and their sizes. A family name alone
# ("g5") is accepted too: Batch then picks sizes within it.
GPU_INSTANCE_TYPES: dict[str, tuple[str, ...]] = {
    "g4dn": ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "metal"),
    "g5": ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge"),
    "g6": ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge"),
    "g6e": ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge"),
    "p3": ("2xlarge", "8xlarge", "16xlarge"),
    "p4d": ("24xlarge",),
    "p5": ("48xlarge",),
}
CAPACITY_CHOICES = ("spot", "on-demand")
STEP_NAMES = ("predict", "vectorize", "rules", "products", "publish")

_ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_INSTANCE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9._-]+$")  # repo:tag or ECR URI:tag
_URL = re.compile(r"^https://[A-Za-z0-9.-]+(:\d+)?/?$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

DEFAULTS: dict[str, Any] = {
    "env_name": "dev",
    "gpu_instance_types": ["g5.xlarge", "g4dn.xlarge"],
    "gpu_capacity": "spot",
    "gpu_max_vcpus": 64,
    "cpu_max_vcpus": 128,
    "departements": ["S01"],
    "pgstac": False,
    "data_prefix": "data",
    "pgstac_instance_type": "t4g.medium",
    "notify_email": None,
    "services_image": None,
    "batch_image": None,
    "public_url": None,
}
# Keys of earlier versions: the STAC catalogue had a bucket of its own, which nothing wrote (``ocsge
# publish`` writes under the storage root). A context that still sets them is refused, not ignored, so
# that an operator does not believe a bucket is deployed and served.
REMOVED_KEYS = ("catalog_bucket", "catalog_prefix")
# Every key this app reads from the CDK context (the rest, e.g. CDK feature flags, is not ours).
CONTEXT_KEYS = ("data_bucket", "account", "region", *DEFAULTS, *REMOVED_KEYS)
# Where ``ocsge publish`` writes the static catalogue and the snapshot the STAC API loads, under the
# storage root (``catalog.publish.STAC_PREFIX``; a test keeps the two equal).
STAC_FOLDER = "stac"
# First path segments that CloudFront routes to the services: a bucket prefix may not shadow them.
RESERVED_PATHS = ("stac", "wmts", "wms", "tiles", "vector", "downloads", "stats")


class InfraConfigError(ValueError):
    """A context value that cannot be deployed; the message names the key and the value."""


@dataclass(frozen=True)
class InfraConfig:
    env_name: str
    data_bucket: str
    gpu_instance_types: tuple[str, ...]
    gpu_capacity: str
    gpu_max_vcpus: int
    cpu_max_vcpus: int
    departements: tuple[str, ...]
    pgstac: bool
    data_prefix: str = "data"
    pgstac_instance_type: str = "t4g.medium"
    notify_email: str | None = None
    services_image: str | None = None  # prebuilt images (repository:tag) instead of building at deploy
    batch_image: str | None = None
    public_url: str | None = None  # https://… the public base (custom domain or the CloudFront URL)
    account: str | None = None
    region: str | None = None

    @property
    def spot(self) -> bool:
        return self.gpu_capacity == "spot"

    @property
    def storage_root(self) -> str:
        """``OCSGE_STORAGE_ROOT`` of every batch job and Lambda."""
        return f"s3://{self.data_bucket}/{self.data_prefix}"

    @property
    def stac_prefix(self) -> str:
        """Key prefix of the published catalogue (static STAC and snapshot), also its CloudFront path."""
        return f"{self.data_prefix}/{STAC_FOLDER}"

    @property
    def asset_base_url(self) -> str:
        """``OCSGE_ASSET_BASE_URL``: the public base of the storage root, for STAC asset hrefs.

        The distribution serves the storage root at ``/{data_prefix}``. With ``public_url`` known the base is
        absolute; otherwise it is the path, which the STAC service resolves against the host serving the
        request (CloudFront's domain cannot be handed to the Lambdas it fronts in the same deployment).
        """
        return f"{self.public_url or ''}/{self.data_prefix}"

    @property
    def tmp_prefix(self) -> str:
        """Where ``ocsge.storage`` stages writes (``{root prefix}/_tmp/``): the lifecycle rule's prefix."""
        return f"{self.data_prefix}/_tmp/"

    def stack_name(self, part: str) -> str:
        return f"Ocsge-{self.env_name}-{part}"


def _list(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):  # JSON list given on the command line
            import json

            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InfraConfigError(f"context {key}={value!r} is not a valid JSON list: {exc}") from None
        else:
            return [part.strip() for part in text.split(",")]
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value]
    raise InfraConfigError(f"context {key}={value!r} must be a comma-separated list or a list")


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InfraConfigError(f"context {key}={value!r} must be one of on/off, true/false, 1/0")


def _int(key: str, value: Any, low: int, high: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InfraConfigError(f"context {key}={value!r} must be an integer") from None
    if not low <= number <= high:
        raise InfraConfigError(f"context {key}={value!r} must be between {low} and {high}")
    return number


def _bucket(key: str, value: Any) -> str:
    if value is None or str(value).strip() == "":
        raise InfraConfigError(
            f"missing bucket name: context {key} is required (cdk synth -c {key}=my-{key.replace('_', '-')})"
        )
    name = str(value).strip()
    if not _BUCKET.match(name) or ".." in name or re.match(r"^\d+\.\d+\.\d+\.\d+$", name):
        raise InfraConfigError(
            f"context {key}={name!r} is not a valid S3 bucket name (3-63 lowercase letters, digits, '.', '-')"
        )
    return name


def gpu_instance_type(value: str) -> str:
    """``g5.xlarge`` or a family (``g5``) known to carry an NVIDIA GPU; raises naming the value."""
    text = value.strip().lower()
    family, _, size = text.partition(".")
    sizes = GPU_INSTANCE_TYPES.get(family)
    if sizes is None or (size and size not in sizes):
        known = ", ".join(sorted(GPU_INSTANCE_TYPES))
        raise InfraConfigError(
            f"context gpu_instance_types: unknown GPU instance type {value!r} (known families: {known}; "
            "e.g. g5.xlarge or g5)"
        )
    return text


def departement_codes(key: str, values: list[str]) -> tuple[str, ...]:
    """Canonical département codes, validated by ``ocsge.territory`` (the one list of départements).

    The import is local on purpose: ``infra`` imports nothing of ours at import time (ARCHITECTURE §2),
    but validating here with a copy of the list or a regex would drift from the domain core (a regex
    would accept ``20`` or ``96``, which do not exist). ``ocsge.territory`` needs only the standard
    library, and wherever the ``infra`` extra is installed the project (hence ``ocsge``) is too.
    ``all`` expands to the 101 départements.
    """
    from ocsge.errors import UnknownDepartementError
    from ocsge.territory import all_departements, departement

    if [v.lower() for v in values] == ["all"]:
        return tuple(dep.code for dep in all_departements())
    codes: list[str] = []
    for raw in values:
        if not raw:
            raise InfraConfigError(f"context {key}: malformed département list {values!r} (an empty entry)")
        try:
            code = departement(raw).code
        except UnknownDepartementError as exc:
            raise InfraConfigError(f"context {key}: malformed département list, {exc}") from None
        if code in codes:
            raise InfraConfigError(f"context {key}: département {raw!r} is listed twice")
        codes.append(code)
    if not codes:
        raise InfraConfigError(f"context {key} is empty: list at least one département (or 'all')")
    return tuple(codes)


def load(context: Mapping[str, Any]) -> InfraConfig:
    """Validate every value up front; the first bad one raises :class:`InfraConfigError`."""

    def get(key: str) -> Any:
        value = context.get(key)
        return DEFAULTS.get(key) if value is None else value

    env_name = str(get("env_name")).strip()
    if not _ENV_NAME.match(env_name):
        raise InfraConfigError(
            f"context env_name={env_name!r} must be 1-20 lowercase letters, digits or '-', starting with a letter"
        )
    data_bucket = _bucket("data_bucket", context.get("data_bucket"))
    gpu_types = _list("gpu_instance_types", get("gpu_instance_types"))
    if not gpu_types or gpu_types == [""]:
        raise InfraConfigError("context gpu_instance_types is empty: name at least one GPU instance type")
    capacity = str(get("gpu_capacity")).strip().lower().replace("_", "-").replace("ondemand", "on-demand")
    if capacity not in CAPACITY_CHOICES:
        raise InfraConfigError(f"context gpu_capacity={get('gpu_capacity')!r} must be 'spot' or 'on-demand'")
    data_prefix = str(get("data_prefix")).strip().strip("/")
    if not _PREFIX.match(data_prefix) or "_tmp" in data_prefix.split("/"):
        raise InfraConfigError(
            f"context data_prefix={get('data_prefix')!r} must be a key prefix such as 'data' or 'v1/data'"
        )
    if data_prefix.split("/")[0].lower() in RESERVED_PATHS:
        raise InfraConfigError(
            f"context data_prefix={get('data_prefix')!r} would shadow the /{data_prefix.split('/')[0]} service "
            "path on CloudFront"
        )
    for key in REMOVED_KEYS:
        if context.get(key) not in (None, ""):
            raise InfraConfigError(
                f"context {key}={context[key]!r} was removed: there is no catalogue bucket any more; "
                f"`ocsge publish` writes the STAC catalogue under the data root, "
                f"s3://{data_bucket}/{data_prefix}/{STAC_FOLDER}/ (served at /{data_prefix}/{STAC_FOLDER}/*). "
                f"Drop -c {key}=…; a deployed catalogue bucket is retained (not deleted) on the next deploy: "
                "remove it by hand once nothing needs it"
            )
    optional: dict[str, str | None] = {}
    for key, pattern, what in (
        ("notify_email", _EMAIL, "an e-mail address"),
        ("services_image", _IMAGE, "an ECR image reference repository:tag"),
        ("batch_image", _IMAGE, "an ECR image reference repository:tag"),
        ("pgstac_instance_type", _INSTANCE, "an RDS instance class such as t4g.medium (without 'db.')"),
        ("public_url", _URL, "an https:// URL without a trailing path (the CloudFront or custom domain URL)"),
    ):
        value = get(key)
        text = None if value is None else str(value).strip() or None
        if text is not None and not pattern.match(text):
            raise InfraConfigError(f"context {key}={value!r} must be {what}")
        optional[key] = text
    return InfraConfig(
        env_name=env_name,
        data_bucket=data_bucket,
        gpu_instance_types=tuple(dict.fromkeys(gpu_instance_type(t) for t in gpu_types)),
        gpu_capacity=capacity,
        gpu_max_vcpus=_int("gpu_max_vcpus", get("gpu_max_vcpus"), 4, 10_000),
        cpu_max_vcpus=_int("cpu_max_vcpus", get("cpu_max_vcpus"), 2, 10_000),
        departements=departement_codes("departements", _list("departements", get("departements"))),
        pgstac=_bool("pgstac", get("pgstac")),
        data_prefix=data_prefix,
        account=str(context["account"]) if context.get("account") else None,
        region=str(context["region"]) if context.get("region") else None,
        pgstac_instance_type=optional["pgstac_instance_type"] or DEFAULTS["pgstac_instance_type"],
        notify_email=optional["notify_email"],
        services_image=optional["services_image"],
        batch_image=optional["batch_image"],
        public_url=optional["public_url"].rstrip("/") if optional["public_url"] else None,
    )
