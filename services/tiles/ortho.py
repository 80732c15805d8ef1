"""Orthophotos as served layers: the aerial images the model saw, RGB and infrared colour (IRC), per campaign.

**Layer ids.** The Géoplateforme names its orthophotos ``ORTHOIMAGERY.ORTHOPHOTOS`` (the current mosaic),
``ORTHOIMAGERY.ORTHOPHOTOS.IRC`` (infrared colour) and per vintage ``ORTHOIMAGERY.ORTHOPHOTOS2021-2023``…
(../shared/reference/ocsge-domain.md §4.2). Our OCS GE layers are national mosaics per campaign
(``OCSGE.COUVERTURE.2021-2023``), so the orthophotos follow the same cut with a dotted campaign suffix:

    ORTHOIMAGERY.ORTHOPHOTOS.{campaign}        RGB (natural colour), e.g. ORTHOIMAGERY.ORTHOPHOTOS.2021-2023
    ORTHOIMAGERY.ORTHOPHOTOS.IRC.{campaign}    IRC (near infrared, red, green as red, green, blue)

A layer is the mosaic of the per-département COGs of one product (``imagery_rgb``, ``imagery_irc``) whose
millésime falls in the campaign: each département has one survey per campaign, so the two campaigns of a
consolidation window (previous and new millésime) are two layers, which the viewer's swipe compares.

**Rendering.** The bands are drawn as they are (three uint8 bands → RGB), transparent where the COG has no
data (outside its footprint, or its nodata); there is no palette. The legend says which band is which colour.
"""

from __future__ import annotations

import re

import numpy as np
from rio_tiler.models import ImageData

# kind → (storage product, title); the kinds join services.tiles.layers.KINDS
ORTHO_KINDS: dict[str, tuple[str, str]] = {
    "ORTHO": ("imagery_rgb", "Orthophotographie (couleurs naturelles)"),
    "ORTHO_IRC": ("imagery_irc", "Orthophotographie infrarouge couleur (IRC)"),
}
ORTHO_ABSTRACTS: dict[str, str] = {
    "ORTHO": "Orthophotographie en couleurs naturelles (rouge, vert, bleu) vue par le modèle et par les "
    "photo-interprètes",
    "ORTHO_IRC": "Orthophotographie infrarouge couleur : proche infrarouge en rouge, rouge en vert, vert en bleu "
    "(la végétation ressort en rouge)",
}
# legend files in the pattern of the Géoplateforme's ``…/legendes/…`` (no class: the bands and their colours)
ORTHO_LEGEND_FILES: dict[str, str] = {
    "ORTHO": "ORTHOIMAGERY.ORTHOPHOTOS-legend.png",
    "ORTHO_IRC": "ORTHOIMAGERY.ORTHOPHOTOS.IRC-legend.png",
}
# (raster band, shown as, colour) per kind: what the legend image lists
ORTHO_BANDS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "ORTHO": (("R", "rouge", "#E41A1C"), ("V", "vert", "#4DAF4A"), ("B", "bleu", "#377EB8")),
    "ORTHO_IRC": (
        ("PIR", "proche infrarouge → rouge", "#E41A1C"),
        ("R", "rouge → vert", "#4DAF4A"),
        ("V", "vert → bleu", "#377EB8"),
    ),
}

PREFIX = "ORTHOIMAGERY.ORTHOPHOTOS"
# 0.2 m photos: Web Mercator zoom 20 is 0.1 m at 46.5°N, zoom 19 0.2 m; the Géoplateforme's HR orthos go to 19–21
ORTHO_MINZOOM = 5
ORTHO_MAXZOOM = 20

_ID = re.compile(r"^ORTHOIMAGERY\.ORTHOPHOTOS(?P<irc>\.IRC)?\.(?P<campaign>\d{4}-\d{4})$")


def is_ortho(kind: str) -> bool:
    return kind in ORTHO_KINDS


def ortho_layer_id(kind: str, campaign: str) -> str:
    return f"{PREFIX}.IRC.{campaign}" if kind == "ORTHO_IRC" else f"{PREFIX}.{campaign}"


def parse_ortho_id(layer_id: str) -> tuple[str, str] | None:
    """(kind, campaign) of an orthophoto layer id; None if ``layer_id`` is not one (the campaign is checked by
    the caller, against the known campaigns)."""
    m = _ID.match(layer_id or "")
    if not m:
        return None
    return ("ORTHO_IRC" if m["irc"] else "ORTHO"), m["campaign"]


def photo_rgba(img: ImageData) -> np.ndarray:
    """4×H×W uint8: the first three bands as red, green, blue; alpha 0 where any of them is masked."""
    data = img.array.data
    # a one-band image (grey) is drawn as the same band three times
    rgb = data[:3] if data.shape[0] >= 3 else np.repeat(data[:1], 3, axis=0)
    rgb = np.clip(rgb, 0, 255).astype("uint8")
    masked = np.ma.getmaskarray(img.array)[: min(3, data.shape[0])].any(axis=0)
    alpha = np.where(masked, 0, 255).astype("uint8")
    return np.concatenate([rgb, alpha[np.newaxis, ...]], axis=0)


def photo_pixel(kind: str, values: np.ndarray) -> tuple[str, str, str]:
    """(code, label, colour) of a photo's pixel for GetFeatureInfo: the bands' names and raw values (as the
    Géoplateforme answers for its image pyramids), and the colour drawn there."""
    bands = ORTHO_BANDS[kind]
    raw = [int(v) for v in values[: len(bands)]]
    drawn = [min(max(v, 0), 255) for v in raw] + [0] * (3 - len(raw))
    return (
        "-".join(b for b, _, _ in bands),
        ", ".join(f"{b} {v}" for (b, _, _), v in zip(bands, raw, strict=False)),
        "#{:02X}{:02X}{:02X}".format(*drawn[:3]),
    )
