"""Answering a CSV table as CSV or JSON, for the commune statistics and the analyses' tables alike."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi.responses import Response


def typed(value: str | None) -> Any:
    """A CSV cell as JSON would carry it: numbers as numbers, codes with a leading zero (INSEE ``01001``)
    kept as text, empty as null."""
    if value is None or value == "":
        return None
    if value in ("True", "False"):
        return value == "True"
    if value.isdigit() and value.startswith("0") and len(value) > 1:
        return value
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            continue
    return value


def csv_response(fields: list[str], rows: list[dict[str, Any]], filename: str) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'inline; filename="{filename}"'})
