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


CodeCS = Annotated[str, Field(max_length=32), _leaf(Kind.COUVERTURE)]
CodeUS = Annotated[str, Field(max_length=32), _leaf(Kind.USAGE)]
Year = Annotated[int, AfterValidator(_year)]
Id = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=2000)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Login(Body):
    username: Annotated[str, Field(min_length=1, max_length=100)]
    password: Annotated[str, Field(min_length=1, max_length=1000)]


class OpenWindow(Body):
    departement: Annotated[str, Field(min_length=1, max_length=8)]
    millesime: Year
    previous_millesime: Year
    closes: date


class Codes(Body):
    code_cs: CodeCS
    code_us: CodeUS


class Reclassify(Body):
    action: Literal["reclassify"]
    polygon_id: Id
    version: int
    code_cs: CodeCS
    code_us: CodeUS


class Split(Body):
    action: Literal["split"]
    polygon_id: Id
    version: int
    line: dict[str, Any]
    codes: Annotated[list[Codes], Field(min_length=2, max_length=2)]


class Edit(RootModel[Annotated[Reclassify | Split, Field(discriminator="action")]]):
    pass


class Versioned(Body):
    version: int


class Check(Body):
    version: int
    agree: bool
    comment: Text | None = None


class Sample(Body):
    count: Annotated[int | None, Field(ge=1, le=100_000)] = None
    rate: Annotated[float | None, Field(gt=0, le=1)] = None
    seed: int | None = None


class NewContribution(Body):
    geometry: dict[str, Any]
    code_cs: CodeCS
    code_us: CodeUS
    comment: Text = ""


class Review(Body):
    status: Literal["accepted", "rejected"]
    reason: Text = ""
    version: int | None = None
