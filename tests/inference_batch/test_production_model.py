"""Model and checkpoints: smp-compatible keys, our file format round trip, IGN-style state dicts, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from inference_batch.production.checkpoint import ModelCard, load_model, save_model, strip_prefixes
from inference_batch.production.model import ModelSpec, build_model, count_parameters, preset, spec_from_state_dict
from inference_batch.production.normalisation import FLAIR_MEANS, Normalisation, encode_elevation
from ocsge.errors import OcsgeError

DATA = Path(__file__).parent / "data"
TINY = ModelSpec(n_classes=15, encoder="resnet10-w8", layers=(1, 1, 1, 1), widths=(8, 8, 8, 16, 16),
                 decoder_channels=(16, 8, 8, 8, 8))


def _outputs(model: torch.nn.Module, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    x = torch.randn(2, model.spec.in_channels, 64, 64)
    with torch.no_grad():
        return model.eval()(x)


def test_resnet34_unet_has_smp_state_dict_keys_and_shapes() -> None:
    expected = json.loads((DATA / "smp_unet_resnet34_keys.json").read_text())["keys"]
    model = build_model(preset("unet-resnet34", n_classes=15))
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert got == expected
    assert count_parameters(model) == 24_444_671  # smp 0.6.0 reports the same for 5 ch / 15 classes


@pytest.mark.parametrize("name", ["unet-resnet18", "unet-resnet50", "unet-small"])
def test_spec_is_recovered_from_shapes(name: str) -> None:
    spec = preset(name, n_classes=13)
    recovered = spec_from_state_dict(build_model(spec).state_dict(), encoder_label=spec.encoder)
    assert recovered == spec


def test_odd_input_sizes_give_full_size_logits() -> None:
    model = build_model(TINY).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 5, 100, 70))
    assert out.shape == (1, 15, 100, 70)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_our_format_round_trip(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(1)
    model = build_model(TINY)
    card = ModelCard(spec=TINY, scheme="flair15", name="tiny", training={"epochs": 3, "miou": 0.5})
    path = save_model(tmp_path / f"m{suffix}", model, card)
    loaded, got = load_model(path)
    assert got.to_dict() == card.to_dict()
    assert got.normalisation.means == tuple(FLAIR_MEANS.values())
    assert torch.equal(_outputs(model), _outputs(loaded))


@pytest.mark.parametrize("layout", ["pth", "ckpt", "safetensors"])
def test_ign_style_state_dict_with_prefix_loads(tmp_path: Path, layout: str) -> None:
    torch.manual_seed(2)
    model = build_model(TINY)
    prefixed = {f"model.seg_model.{k}": v for k, v in model.state_dict().items()}
    if layout == "pth":
        path = tmp_path / "FLAIR-INC_rgbie_15cl_tiny-unet_weights.pth"
        torch.save(prefixed, path)
    elif layout == "ckpt":  # Lightning: weights under "state_dict", next to other entries
        path = tmp_path / "epoch=1.ckpt"
        torch.save({"state_dict": {**prefixed, "criterion.weight": torch.ones(15)}, "epoch": 1}, path)
    else:
        from safetensors.torch import save_file

        path = tmp_path / "weights.safetensors"
        save_file({k: v.contiguous() for k, v in prefixed.items()}, str(path))
    loaded, card = load_model(path)
    assert card.source == "ign-import"
    assert card.scheme == "flair15"  # inferred from 15 outputs
    assert card.channels == ("R", "G", "B", "NIR", "E")
    assert torch.equal(_outputs(model), _outputs(loaded))


def test_prefix_stripping_keeps_unprefixed_dicts() -> None:
    state = {"encoder.conv1.weight": torch.zeros(1)}
    assert strip_prefixes(state) == state
    assert set(strip_prefixes({"module.encoder.x": torch.zeros(1)})) == {"encoder.x"}


def test_unknown_class_count_needs_an_explicit_scheme(tmp_path: Path) -> None:
    spec = ModelSpec(**{**TINY.to_dict(), "n_classes": 7})  # type: ignore[arg-type]
    path = tmp_path / "seven.pth"
    torch.save(build_model(spec).state_dict(), path)
    with pytest.raises(OcsgeError, match="7 output classes match no known class scheme"):
        load_model(path)


def test_model_for_other_classes_or_channels_is_refused(tmp_path: Path) -> None:
    path = save_model(tmp_path / "m.safetensors", build_model(TINY), ModelCard(spec=TINY, scheme="flair15"))
    with pytest.raises(OcsgeError, match="predicts class scheme 'flair15'.*'couverture'"):
        load_model(path, scheme_name="couverture")
    with pytest.raises(OcsgeError, match="takes channels R, G, B, NIR, E but the inputs provide R, G, B, NIR"):
        load_model(path, channels=("R", "G", "B", "NIR"))
    with pytest.raises(OcsgeError, match="class scheme 'couverture' has 14 classes but the network outputs 15"):
        ModelCard(spec=TINY, scheme="couverture")


def test_unreadable_and_foreign_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a model")
    with pytest.raises(OcsgeError, match="broken.safetensors"):
        load_model(bad)
    other = tmp_path / "classifier.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(OcsgeError, match="not a U-Net/ResNet state dict"):
        load_model(other)
    with pytest.raises(OcsgeError, match="model file not found"):
        load_model(tmp_path / "missing.pt")


def test_normalisation_and_elevation_encoding() -> None:
    norm = Normalisation.flair(("R", "E"))
    x = torch.tensor([[[[105.08]], [[53.26 + 79.3]]]])
    assert torch.allclose(norm.apply(x).flatten(), torch.tensor([0.0, 1.0]), atol=1e-6)
    assert encode_elevation([-1.0, 0.0, 2.0, 12.34, 80.0]).tolist() == [0, 0, 10, 62, 255]
