"""Millésimes (survey years), the Géoplateforme campaigns that group them, and the millésime index.

A campaign names the production window of a layer (``OCSGE.COUVERTURE.2021-2023``). The millésime
index (M1, M2, M3) is per département, as sparte uses it to add up flows across départements surveyed
in different years (../shared/reference/ocsge-domain.md §3.5).
"""

from __future__ import annotations

from dataclasses import dataclass

from ocsge.errors import UnknownMillesimeError
from ocsge.territory import departement


@dataclass(frozen=True)
class Campaign:
    name: str  # as in layer identifiers: "2021-2023"
    first_year: int
    last_year: int
    index: int  # the M of "M2"

    def __contains__(self, year: object) -> bool:
        return isinstance(year, int) and self.first_year <= year <= self.last_year


CAMPAIGNS: tuple[Campaign, ...] = (
    Campaign("2017-2020", 2017, 2020, 1),
    Campaign("2021-2023", 2021, 2023, 2),
    Campaign("2024-2026", 2024, 2026, 3),
)
# D032's first survey (2016) predates M1; the Géoplateforme publishes it as the 2016-2017 layers.
LEGACY_CAMPAIGN = Campaign("2016-2017", 2016, 2016, 1)

# Millésimes delivered per département (sparte sources.json 2026-04, plus IGN news up to 2026-08).
# Départements whose M3 is announced without a year fall back on the campaign index.
_COVERAGE_GROUPS: dict[tuple[int, ...], str] = {
    (2016, 2019, 2022): "32",
    (2017, 2020, 2023): "06 35 69 83",
    (2017, 2021): "47 77 80",
    (2017, 2021, 2024): "24",
    (2017, 2022): "972 974",
    (2017, 2022, 2024): "971",
    (2018, 2021): "01 02 04 11 17 29 30 33 34 37 38 40 48 59 60 62 64 66 67 68 75 78 84 91 92 93 94 95",
    (2018, 2021, 2025): "22",
    (2018, 2022): "05 54 55 57 973",
    (2018, 2023): "41 88",
    (2019, 2021): "2A",
    (2019, 2021, 2024): "2B",
    (2019, 2022): "03 08 09 10 12 27 31 42 43 46 50 51 52 53 56 63 65 72 73 76 82 85",
    (2020, 2022): "15 44 49 81",
    (2020, 2023): "07 13 14 16 18 19 21 23 25 26 28 36 39 45 58 61 70 71 74 79 86 87 89 90 976",
}
COVERAGE: dict[str, tuple[int, ...]] = {
    code: years for years, codes in _COVERAGE_GROUPS.items() for code in codes.split()
}


def check_year(year: object) -> int:
    if not isinstance(year, int) or isinstance(year, bool):
        try:
            year = int(str(year).strip()[:4])
        except ValueError:
            raise UnknownMillesimeError(f"millésime {year!r} is not a year") from None
    if not 2016 <= year <= 2026:
        raise UnknownMillesimeError(f"millésime {year} is outside the OCS GE campaigns (2016–2026)")
    return year


def campaign_of(year: object) -> Campaign:
    year = check_year(year)
    if year in LEGACY_CAMPAIGN:
        return LEGACY_CAMPAIGN
    return next(c for c in CAMPAIGNS if year in c)


def campaign_named(name: str) -> Campaign:
    for campaign in (*CAMPAIGNS, LEGACY_CAMPAIGN):
        if campaign.name == name:
            return campaign
    known = ", ".join(c.name for c in CAMPAIGNS)
    raise UnknownMillesimeError(f"unknown campaign {name!r}: expected one of {known}")


def millesime_index(departement_code: object, year: object) -> int:
    """Index (1 for M1, …) of a millésime within its département's series.

    The position in the département's delivered series when the year is known there (D032: 2016 → M1),
    otherwise the campaign's index (a new production in 2024 is an M3).
    """
    year = check_year(year)
    dep = departement(departement_code)
    years = COVERAGE.get(dep.code, ())
    if year in years:
        return years.index(year) + 1
    return campaign_of(year).index


def label(departement_code: object, year: object) -> str:
    return f"M{millesime_index(departement_code, year)}"
