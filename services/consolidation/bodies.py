"""Request bodies of the consolidation API (pydantic), codes checked against the nomenclature."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel

from ocsge.errors import OcsgeError
from ocsge.millesimes import check_year
from ocsge.nomenclature import Kind, lookup


def _leaf(kind: Kind) -> Any:
    def check(value: str) -> str:
        try:
            code = lookup(kind, value.strip())
        except (OcsgeError, KeyError, ValueError):
            raise ValueError(f"{value!r} is not a {kind.value} code of the nomenclature") from None
        if not code.is_leaf:
            raise ValueError(f"{value!r} is not a leaf {kind.value} code (a polygon gets a most detailed code)")
        return code.code

    return AfterValidator(check)


def _year(value: int) -> int:
    try:
        return check_year(value)
    except OcsgeError as exc:
        raise ValueError(str(exc)) from None


def _printable(value: str) -> str:
    # control characters (NUL above all: PostgreSQL's text refuses it) have no place in a name or a comment
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise ValueError("control characters are not allowed")
    return value


Printable = AfterValidator(_printable)
CodeCS = Annotated[str, Field(max_length=32), _leaf(Kind.COUVERTURE)]
CodeUS = Annotated[str, Field(max_length=32), _leaf(Kind.USAGE)]
Year = Annotated[int, AfterValidator(_year)]
Id = Annotated[str, Field(min_length=1, max_length=200), Printable]
Text = Annotated[str, Field(max_length=2000), Printable]
# a version as the store keeps it (a 64-bit integer on both engines)
Version = Annotated[int, Field(ge=0, le=2**62)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Login(Body):
    username: Annotated[str, Field(min_length=1, max_length=100), Printable]
    password: Annotated[str, Field(min_length=1, max_length=1000)]


class OpenWindow(Body):
    departement: Annotated[str, Field(min_length=1, max_length=8), Printable]
    millesime: Year
    previous_millesime: Year
    closes: date


class Codes(Body):
    code_cs: CodeCS
    code_us: CodeUS


class Reclassify(Body):
    action: Literal["reclassify"]
    polygon_id: Id
    version: Version
    code_cs: CodeCS
    code_us: CodeUS


class Split(Body):
    action: Literal["split"]
    polygon_id: Id
    version: Version
    line: dict[str, Any]
    codes: Annotated[list[Codes], Field(min_length=2, max_length=2)]


class Edit(RootModel[Annotated[Reclassify | Split, Field(discriminator="action")]]):
    pass


class Versioned(Body):
    version: Version


class Check(Body):
    version: Version
    agree: bool
    comment: Text | None = None


class Sample(Body):
    count: Annotated[int | None, Field(ge=1, le=100_000)] = None
    rate: Annotated[float | None, Field(gt=0, le=1)] = None
    seed: Annotated[int, Field(ge=0, le=2**62)] | None = None


class NewContribution(Body):
    geometry: dict[str, Any]
    code_cs: CodeCS
    code_us: CodeUS
    comment: Text = ""


class Review(Body):
    status: Literal["accepted", "rejected"]
    reason: Text = ""
    version: Version | None = None
