"""Input normalisation and the encoding of elevation as the 5th uint8 channel.

FLAIR models see per-channel z-scores of raw 0–255 values, with the means and standard deviations
of IGN's FLAIR-1 configs (``configs/flair-1-config.yaml``, ../shared/reference/ml-anchors.md §0.1).
Inference must use exactly the normalisation the model was trained with, so it travels in the
checkpoint; these constants are the default for our models and for imported IGN weights.

The elevation channel is the height above ground, DSM − DTM, stored as uint8. FLAIR does not document
its scaling; we encode ``round(5 × metres)`` clipped to 0–255 (0.2 m steps, 51 m ceiling), which gives
the FLAIR channel statistics the right order of magnitude (many zeros, buildings and trees at
10–30 m → 50–150). The factor is recorded in every checkpoint (``elevation_scale``) so that a model
is always fed the encoding it learned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ocsge.errors import OcsgeError

FLAIR_MEANS: dict[str, float] = {"R": 105.08, "G": 110.87, "B": 101.82, "NIR": 106.38, "E": 53.26}
FLAIR_STDS: dict[str, float] = {"R": 52.17, "G": 45.38, "B": 44.0, "NIR": 39.69, "E": 79.3}
DEFAULT_ELEVATION_SCALE = 5.0  # uint8 units per metre above ground


@dataclass(frozen=True)
class Normalisation:
    """Per-channel ``(x − mean) / std`` on raw 0–255 values."""

    means: tuple[float, ...]
    stds: tuple[float, ...]
    name: str = "flair"

    def __post_init__(self) -> None:
        if len(self.means) != len(self.stds) or any(s <= 0 for s in self.stds):
            raise OcsgeError(f"invalid normalisation {self.name!r}: means {self.means}, stds {self.stds}")

    @classmethod
    def flair(cls, channels: Sequence[str]) -> Normalisation:
        try:
            return cls(tuple(FLAIR_MEANS[c] for c in channels), tuple(FLAIR_STDS[c] for c in channels), "flair")
        except KeyError as exc:
            raise OcsgeError(f"no FLAIR normalisation for channel {exc.args[0]!r}") from None

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "means": list(self.means), "stds": list(self.stds)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Normalisation:
        return cls(tuple(data["means"]), tuple(data["stds"]), str(data.get("name", "custom")))  # type: ignore[arg-type]

    def apply(self, batch: torch.Tensor) -> torch.Tensor:
        """Normalise a ``(N, C, H, W)`` uint8 or float batch into float32 (on the batch's device)."""
        if batch.shape[1] != len(self.means):
            raise OcsgeError(f"batch has {batch.shape[1]} channels, normalisation {self.name!r} {len(self.means)}")
        mean = torch.tensor(self.means, dtype=torch.float32, device=batch.device).view(1, -1, 1, 1)
        std = torch.tensor(self.stds, dtype=torch.float32, device=batch.device).view(1, -1, 1, 1)
        return (batch.to(torch.float32) - mean) / std


def encode_elevation(height_m: np.ndarray, scale: float = DEFAULT_ELEVATION_SCALE) -> np.ndarray:
    """Height above ground in metres → uint8 channel (negative heights, e.g. DTM noise, become 0)."""
    out = np.rint(np.asarray(height_m, dtype=np.float32) * scale)
    return np.clip(out, 0, 255).astype(np.uint8)
