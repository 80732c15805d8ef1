"""Colours and legends of every raster layer kind, from the official nomenclature.

Class rasters are uint8 with value *i* = the *i*-th leaf in legend order and 0 = nodata
(``ocsge.nomenclature``). Couverture, usage and predictions (which carry couverture values) use the
official colours; artificialisation, zone construite, differences and the analyses' tâche urbaine and
renaturation classes (``ocsge.rasters``) use the palette below unless the
COG carries its own colour table and ``CLASS_<value>`` band tags, which then win (the producer knows
best what its values mean).

The model's confidence (uint8, the predicted class's probability × 255, 0 = nodata) is drawn with a
sequential palette (viridis, colour-blind safe: dark = low confidence) in ten classes of 10 %: each legend
entry is a :class:`LegendRange` of raster values, so that the legend says exactly what the map shows.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache

from ocsge.nomenclature import COUVERTURE, CS_LEAVES, US_LEAVES, USAGE, Kind, palette
from ocsge.rasters import ENCODINGS
from services.tiles.ortho import ORTHO_BANDS

RGBA = tuple[int, int, int, int]


@dataclass(frozen=True)
class LegendEntry:
    value: int
    code: str
    label: str
    colour: str  # "#RRGGBB"

    @property
    def rgba(self) -> RGBA:
        return (int(self.colour[1:3], 16), int(self.colour[3:5], 16), int(self.colour[5:7], 16), 255)

    @property
    def values(self) -> range:
        return range(self.value, self.value + 1)


@dataclass(frozen=True)
class LegendRange(LegendEntry):
    """A class of a continuous layer: raster values ``value``…``last`` (inclusive), one colour."""

    last: int = 0

    @property
    def values(self) -> range:
        return range(self.value, max(self.value, self.last) + 1)


# viridis at 10 evenly spaced points (matplotlib's viridis(np.linspace(0, 1, 10)))
VIRIDIS_10 = ("#440154", "#482878", "#3E4A89", "#31688E", "#26828E", "#1F9E89", "#35B779", "#6DCD59",
              "#B4DE2C", "#FDE725")


def _confidence_legend() -> tuple[LegendEntry, ...]:
    """Ten classes of 10 % over the uint8 confidence (value = round(p × 255), 1…255)."""
    entries = []
    for k, colour in enumerate(VIRIDIS_10):
        first = max(1, math.ceil(k * 25.5))
        last = 255 if k == 9 else math.ceil((k + 1) * 25.5) - 1
        text = f"{k * 10}–{(k + 1) * 10} %"
        entries.append(LegendRange(first, text, text, colour, last))
    return tuple(entries)


def _nomenclature_legend(kind: Kind) -> tuple[LegendEntry, ...]:
    table = COUVERTURE if kind is Kind.COUVERTURE else USAGE
    leaves = CS_LEAVES if kind is Kind.COUVERTURE else US_LEAVES
    return tuple(
        LegendEntry(table[c].raster_value or 0, c, table[c].label, table[c].colour or "#000000") for c in leaves
    )


# Binary and change layers: one encoding shared with the product step (ocsge.rasters); classes not drawn
# (outside the zone construite) have no legend entry.
_FIXED: dict[str, tuple[LegendEntry, ...]] = {
    layer: tuple(LegendEntry(c.value, c.code, c.label, c.colour) for c in classes if c.visible)
    for layer, classes in ENCODINGS.items()
}


@lru_cache(maxsize=16)
def default_legend(kind: str) -> tuple[LegendEntry, ...]:
    if kind in ("couverture", "prediction"):
        return _nomenclature_legend(Kind.COUVERTURE)
    if kind == "usage":
        return _nomenclature_legend(Kind.USAGE)
    if kind == "confiance":
        return _confidence_legend()
    if kind.upper() in ORTHO_BANDS:  # orthophotos: no classes, the bands and the colour each is drawn in
        return tuple(LegendEntry(i, band, shown, colour)
                     for i, (band, shown, colour) in enumerate(ORTHO_BANDS[kind.upper()], 1))
    return _FIXED[kind]


def legend_from_dataset(kind: str, colormap: dict[int, RGBA] | None, tags: dict[str, str]) -> tuple[LegendEntry, ...]:
    """The legend a COG declares (colour table + ``CLASS_<v>`` tags), else the default for its kind."""
    if kind in ("couverture", "usage", "prediction", "confiance") or not colormap:
        return default_legend(kind)
    defaults = {e.value: e for e in default_legend(kind)}
    entries = []
    for value, rgba in sorted(colormap.items()):
        if value == 0 or len(rgba) < 4 or rgba[3] == 0:
            continue
        label = tags.get(f"CLASS_{value}")
        if label is None and value not in defaults:
            continue
        base = defaults.get(value)
        colour = "#{:02X}{:02X}{:02X}".format(*rgba[:3])
        entries.append(LegendEntry(value, base.code if base else str(value), label or base.label, colour))  # type: ignore[union-attr]
    return tuple(entries) or default_legend(kind)


def colormap_of(legend: tuple[LegendEntry, ...]) -> dict[int, RGBA]:
    """A full 256-entry colour map (rio-tiler uses a LUT then): unknown values and 0 transparent."""
    cmap: dict[int, RGBA] = {v: (0, 0, 0, 0) for v in range(256)}
    for entry in legend:
        for value in entry.values:
            cmap[value] = entry.rgba
    return cmap


def legend_index(legend: tuple[LegendEntry, ...]) -> dict[int, LegendEntry]:
    """Raster value → its legend entry (every value of a :class:`LegendRange`)."""
    return {value: entry for entry in legend for value in entry.values}


def nomenclature_colormap(kind: Kind) -> dict[int, RGBA]:
    cmap: dict[int, RGBA] = {v: (0, 0, 0, 0) for v in range(256)}
    cmap.update(palette(kind))  # type: ignore[arg-type]
    return cmap


FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans{}.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans{}.ttf",
    "/usr/share/fonts/TTF/DejaVuSans{}.ttf",
)


@lru_cache(maxsize=8)
def _font(size: int, bold: bool = False):  # type: ignore[no-untyped-def]
    """A TrueType font with French accents when the system has one, else Pillow's built-in font."""
    import os

    from PIL import ImageFont

    for pattern in FONT_CANDIDATES:
        path = pattern.format("-Bold" if bold else "")
        if os.path.exists(path):
            return ImageFont.truetype(path, size), True
    return ImageFont.load_default(size=size), False


def _ascii(text: str) -> str:
    import unicodedata

    text = text.replace("—", "-").replace("→", "->").replace("−", "-").replace("’", "'")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def legend_png(title: str, legend: tuple[LegendEntry, ...], scale: float = 1.0) -> bytes:
    """A legend image: a swatch and ``code — label`` per class, under the layer title."""
    from PIL import Image, ImageDraw

    size = max(10, round(12 * scale))
    font, accents = _font(size)
    bold, _ = _font(size + 2, bold=True)
    if not accents:  # Pillow's built-in font has no accented glyphs: write plain ASCII rather than boxes
        title = _ascii(title)
    row = round(size * 1.6)
    swatch = round(size * 1.2)
    pad = round(6 * scale)
    lines = [f"{e.code} — {e.label}" if e.code != e.label else e.label for e in legend]
    if not accents:
        lines = [_ascii(t) for t in lines]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width_text = max([probe.textlength(t, font=font) for t in lines] + [probe.textlength(title, font=bold)])
    width = int(pad * 3 + swatch + width_text)
    height = int(pad * 2 + row * (len(lines) + 1))
    img = Image.new("RGBA", (width, height), (255, 255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((pad, pad), title, fill=(0, 0, 0, 255), font=bold)
    for i, (entry, text) in enumerate(zip(legend, lines, strict=True)):
        y = pad + row * (i + 1)
        draw.rectangle([pad, y, pad + swatch, y + swatch], fill=entry.rgba, outline=(80, 80, 80, 255))
        draw.text((pad * 2 + swatch, y), text, fill=(0, 0, 0, 255), font=font)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()
