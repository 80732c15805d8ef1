"""The OGC documents (capabilities, exception reports, GetFeatureInfo HTML), rendered from the Jinja2
templates of ``services/ogc/templates/``.

One environment, built once, with autoescaping on for every template: a value that reaches a document (a
public URL from the request's Host, a layer title, a client's parameter echoed in an exception) is always
escaped, never trusted to a hand-written helper. ``StrictUndefined`` makes a missing value an error rather
than an empty element. Numbers are formatted where the templates say (``"%.6f"|format`` for bounds, the
``repr`` filter where full precision matters: ScaleDenominator, TopLeftCorner).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).parent / "templates"

ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
ENV.filters["repr"] = repr


def render(name: str, **context: Any) -> str:
    """The template ``name`` (e.g. ``wmts_capabilities.xml``) rendered with ``context``, escaped."""
    return ENV.get_template(name).render(**context)
