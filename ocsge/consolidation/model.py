"""What the consolidation loop stores: roles, statuses, rows, and the errors its writes can meet.

Shared by the HTTP API (``services.consolidation``) and the batch export (``inference_batch.consolidation``),
hence in the domain core. Geometries are WKB in the département's CRS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from ocsge.errors import OcsgeError


class Role(IntEnum):
    """Ordered: a route that needs a role accepts every role above it."""

    CONTRIBUTOR = 1
    INTERPRETER = 2
    REVIEWER = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: object) -> Role:
        if isinstance(value, Role):
            return value
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            raise InvalidInput("role", f"unknown role {value!r}: one of {', '.join(r.label for r in cls)}") from None


class TaskStatus(StrEnum):
    TODO = "todo"
    DONE = "done"
    CHECKED = "checked"


class ContributionStatus(StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class Provenance(StrEnum):
    AUTO = "auto"  # as the model and the rules produced it
    PI = "pi"  # reclassified or split by a photo-interpreter
    CONTRIBUTION = "contribution"  # an accepted user contribution carried into the new millésime


# --- errors: each maps to one HTTP status in the API ----------------------------------------------


class ConsolidationError(OcsgeError):
    status = 400


class InvalidInput(ConsolidationError):
    """A value the request gave is refused; ``param`` names it."""

    status = 422

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


class NotFound(ConsolidationError, LookupError):
    status = 404


class Conflict(ConsolidationError):
    """The row changed since the client read it (stale version), or its state forbids the write."""

    status = 409


class Unauthenticated(ConsolidationError):
    status = 401


class Forbidden(ConsolidationError):
    status = 403


# --- rows ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    username: str
    role: Role
    disabled: bool = False
    password_hash: str | None = None
    created: str = ""


@dataclass(frozen=True)
class Window:
    id: str
    departement: str
    millesime: int
    previous_millesime: int
    opens: str
    closes: str
    epsg: int
    bbox: tuple[float, float, float, float]  # in the département's CRS
    grid_key: str
    auto_key: str
    previous_key: str
    created_by: str
    tasks: int = 0
    polygons: int = 0


@dataclass(frozen=True)
class Task:
    window_id: str
    id: str
    wkb: bytes
    status: TaskStatus
    version: int
    changed_area_m2: float = 0.0
    assignee: str | None = None
    done_by: str | None = None
    done_at: str | None = None
    sampled: bool = False
    checked_by: str | None = None
    agree: bool | None = None
    check_comment: str | None = None


@dataclass(frozen=True)
class Polygon:
    window_id: str
    id: str
    code_cs: str
    code_us: str
    wkb: bytes
    version: int
    provenance: Provenance
    parent_id: str | None = None
    retired: bool = False
    updated_by: str | None = None
    updated_at: str | None = None


@dataclass(frozen=True)
class PreviousPolygon:
    window_id: str
    id: str
    code_cs: str
    code_us: str
    wkb: bytes


@dataclass(frozen=True)
class Contribution:
    id: str
    window_id: str
    wkb: bytes
    code_cs: str
    code_us: str
    comment: str
    status: ContributionStatus
    author: str
    created: str
    version: int = 1
    reviewer: str | None = None
    reviewed_at: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    at: str
    actor: str
    action: str
    entity: str
    entity_id: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
