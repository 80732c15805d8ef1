"""Model files: our own format, and IGN FLAIR-INC style state dicts.

Our format is one ``.safetensors`` file: the weights, plus a JSON document in the safetensors header
under the key ``"ocsge"`` (:class:`ModelCard`: architecture, class scheme, input channels,
normalisation, elevation encoding, training info). safetensors loads without unpickling, so a model
file from anywhere is safe to open. ``.pt``/``.pth`` files written by ``torch.save`` with the same
two parts (``{"ocsge": {...}, "state_dict": {...}}``) are read too.

IGN distributes FLAIR-INC weights as bare state dicts (``.pth``, ``.ckpt`` from Lightning with a
``state_dict`` entry, or ``.safetensors``) whose keys start with ``model.seg_model.``; FLAIR-1's
``zone_detect`` strips that prefix before ``load_state_dict(strict=True)``, and so do we. They carry no
metadata: the architecture is read from the tensor shapes, the class scheme from the number of
classes (13 → ``flair13``, 15 → ``flair15``, 19 → ``flair19``) unless given, the channels from the
first convolution (5 → R,G,B,NIR,E; 4 → R,G,B,NIR; 3 → R,G,B) and the normalisation is FLAIR's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from inference_batch.production.model import CHANNEL_NAMES, ModelSpec, Unet, build_model, spec_from_state_dict
from inference_batch.production.normalisation import DEFAULT_ELEVATION_SCALE, Normalisation
from ocsge.errors import OcsgeError
from ocsge.flair import SCHEMES, ClassScheme, scheme

FORMAT = "ocsge-model/1"
IGN_PREFIXES = ("model.seg_model.", "seg_model.", "model.", "module.")
SCHEME_BY_N_CLASSES = {13: "flair13", 15: "flair15", 19: "flair19", 14: "couverture"}
CHANNELS_BY_COUNT = {5: CHANNEL_NAMES, 4: CHANNEL_NAMES[:4], 3: CHANNEL_NAMES[:3]}


@dataclass
class ModelCard:
    """What a model needs to be used correctly, stored with its weights."""

    spec: ModelSpec
    scheme: str
    channels: tuple[str, ...] = CHANNEL_NAMES
    normalisation: Normalisation | None = None
    elevation_scale: float = DEFAULT_ELEVATION_SCALE
    name: str = "model"
    source: str = "ocsge"  # "ocsge" (trained here) or "ign-import"
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise OcsgeError(f"unknown class scheme {self.scheme!r}: expected one of {', '.join(SCHEMES)}")
        if scheme(self.scheme).n_classes != self.spec.n_classes:
            raise OcsgeError(
                f"class scheme {self.scheme!r} has {scheme(self.scheme).n_classes} classes but the network "
                f"outputs {self.spec.n_classes}"
            )
        bad = [c for c in self.channels if c not in CHANNEL_NAMES]
        if bad:
            raise OcsgeError(f"unknown input channels {bad}: expected names among {', '.join(CHANNEL_NAMES)}")
        if len(self.channels) != self.spec.in_channels:
            raise OcsgeError(
                f"the network takes {self.spec.in_channels} channels but the card lists {len(self.channels)} "
                f"({', '.join(self.channels)})"
            )
        if self.normalisation is None:
            self.normalisation = Normalisation.flair(self.channels)
        if len(self.normalisation.means) != len(self.channels):
            raise OcsgeError("normalisation and channels differ in length")

    @property
    def class_scheme(self) -> ClassScheme:
        return scheme(self.scheme)

    @property
    def needs_elevation(self) -> bool:
        return "E" in self.channels

    def to_dict(self) -> dict[str, Any]:
        assert self.normalisation is not None
        return {
            "format": FORMAT,
            "name": self.name,
            "source": self.source,
            "spec": self.spec.to_dict(),
            "scheme": self.scheme,
            "classes": list(self.class_scheme.classes),
            "channels": list(self.channels),
            "normalisation": self.normalisation.to_dict(),
            "elevation_scale": self.elevation_scale,
            "training": self.training,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        if data.get("format") != FORMAT:
            raise OcsgeError(f"unsupported model card format {data.get('format')!r}: expected {FORMAT!r}")
        return cls(
            spec=ModelSpec.from_dict(data["spec"]),
            scheme=data["scheme"],
            channels=tuple(data["channels"]),
            normalisation=Normalisation.from_dict(data["normalisation"]),
            elevation_scale=float(data.get("elevation_scale", DEFAULT_ELEVATION_SCALE)),
            name=data.get("name", "model"),
            source=data.get("source", "ocsge"),
            training=dict(data.get("training", {})),
        )

    def check_compatible(self, *, scheme_name: str | None = None, channels: Sequence[str] | None = None,
                         what: str = "model") -> None:
        """Refuse a model for other classes or channels than the caller needs (clear error, never a silent map)."""
        if scheme_name is not None and scheme_name != self.scheme:
            raise OcsgeError(
                f"{what} predicts class scheme {self.scheme!r} ({self.spec.n_classes} classes) but {scheme_name!r} "
                f"({scheme(scheme_name).n_classes} classes) is required"
            )
        if channels is not None and tuple(channels) != tuple(self.channels):
            raise OcsgeError(
                f"{what} takes channels {', '.join(self.channels)} but the inputs provide {', '.join(channels)}"
            )


# --- writing -----------------------------------------------------------------------------------


def save_model(path: str | Path, model: torch.nn.Module, card: ModelCard) -> Path:
    """Write weights + card; ``.safetensors`` (default) or ``.pt``. Written to a temp file then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(tmp), metadata={"ocsge": json.dumps(card.to_dict())})
    elif path.suffix in (".pt", ".pth"):
        torch.save({"ocsge": card.to_dict(), "state_dict": state}, tmp)
    else:
        raise OcsgeError(f"unsupported model file extension {path.suffix!r} for {path}: use .safetensors or .pt")
    tmp.replace(path)
    return path


# --- reading -----------------------------------------------------------------------------------


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """State dict and our card (``None`` for a bare state dict) of any supported file."""
    if not path.is_file():
        raise OcsgeError(f"model file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        except Exception as exc:  # safetensors raises its own error types
            raise OcsgeError(f"cannot read model file {path}: {exc}") from exc
        card = json.loads(meta["ocsge"]) if "ocsge" in meta else None
        return state, card
    if path.suffix in (".pt", ".pth", ".ckpt"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise OcsgeError(f"cannot read model file {path}: {exc}") from exc
        if not isinstance(obj, Mapping):
            raise OcsgeError(f"{path} holds a {type(obj).__name__}, not a state dict")
        card = obj.get("ocsge") if isinstance(obj.get("ocsge"), Mapping) else None
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if not state:
            raise OcsgeError(f"{path} holds no tensors")
        return state, dict(card) if card is not None else None
    raise OcsgeError(f"unsupported model file {path}: expected .safetensors, .pt, .pth or .ckpt")


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove IGN/Lightning/DataParallel key prefixes (``model.seg_model.`` first, as FLAIR-1 does)."""
    out = dict(state)
    for prefix in IGN_PREFIXES:
        if any(k.startswith(prefix) for k in out) and not any(k.startswith("encoder.") for k in out):
            out = {k.removeprefix(prefix): v for k, v in out.items() if k.startswith(prefix)}
    return out


def load_model(path: str | Path, *, scheme_name: str | None = None, channels: Sequence[str] | None = None,
               device: str | torch.device = "cpu") -> tuple[Unet, ModelCard]:
    """Build the network of a model file and load its weights (strict), in eval mode.

    ``scheme_name``/``channels``: for bare IGN state dicts, the class scheme and input channels when the
    defaults inferred from the shapes are not right; for our files, a check that they match the card.
    """
    path = Path(path)
    state, card_dict = _read(path)
    if card_dict is not None:
        card = ModelCard.from_dict(card_dict)
        card.check_compatible(scheme_name=scheme_name, channels=channels, what=f"model {path}")
    else:
        state = strip_prefixes(state)
        spec = spec_from_state_dict(state)
        name = scheme_name or SCHEME_BY_N_CLASSES.get(spec.n_classes)
        if name is None:
            raise OcsgeError(
                f"{path}: {spec.n_classes} output classes match no known class scheme; give one of "
                f"{', '.join(SCHEMES)} explicitly"
            )
        chans = tuple(channels) if channels is not None else CHANNELS_BY_COUNT.get(spec.in_channels)
        if chans is None:
            raise OcsgeError(f"{path}: the network takes {spec.in_channels} input channels; give their names")
        try:
            card = ModelCard(spec=spec, scheme=name, channels=chans, name=path.stem, source="ign-import")
        except OcsgeError as exc:
            raise OcsgeError(f"{path}: {exc}") from None
    model = build_model(card.spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise OcsgeError(f"weights of {path} do not fit a {card.spec.encoder} U-Net: {exc}") from None
    return model.to(device).eval(), card


def read_card(path: str | Path) -> ModelCard:
    """The card of a model file without building the network (bare state dicts get inferred defaults)."""
    return load_model(path)[1]
