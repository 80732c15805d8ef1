"""U-Net with a ResNet encoder over 5 channels (R, G, B, NIR, elevation), in plain torch.

Why not segmentation-models-pytorch: smp 0.6.0 imports torchvision, and the only torchvision wheels
that resolve for torch 2.13.0 here are the CUDA builds; with the CPU torch they fail at import
(``RuntimeError: operator torchvision::nms does not exist``), and installing the CUDA stack would
replace torch and add gigabytes to every batch image. So the network is written here, with module
names that reproduce smp's ``Unet`` state-dict keys exactly (``encoder.conv1``, ``encoder.bn1``,
``encoder.layerN.i.{conv1,bn1,conv2,bn2,downsample.0,downsample.1}``,
``decoder.blocks.N.conv{1,2}.{0,1}``, ``segmentation_head.0``): a state dict saved from
``smp.Unet("resnet34", encoder_weights=None, in_channels=5, classes=15)`` — which is what IGN's
FLAIR-INC ``*_resnet34-unet`` weights are once the ``model.seg_model.`` prefix is stripped — loads
here with ``strict=True`` and gives the same outputs (checked against smp 0.6.0 when this was written;
the key/shape list is kept in ``tests/inference_batch/data/smp_unet_resnet34_keys.json``).

Presets (``PRESETS``): ``unet-resnet34`` (the FLAIR baseline, 24.4 M parameters), ``unet-resnet18``,
``unet-resnet50``, and ``unet-small``, a narrow ResNet-10 encoder with a light decoder for CPU demos
and CI (≈ 0.5 M parameters, a ~2 MB file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ocsge.errors import OcsgeError

CHANNEL_NAMES: tuple[str, ...] = ("R", "G", "B", "NIR", "E")  # E = elevation above ground (DSM − DTM)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a network; stored in checkpoints."""

    n_classes: int
    in_channels: int = 5
    arch: str = "unet"
    encoder: str = "resnet34"  # a label; the structure is given by the fields below
    block: str = "basic"  # "basic" (ResNet-18/34) or "bottleneck" (ResNet-50)
    layers: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (64, 64, 128, 256, 512)  # stem, then layer1…layer4 base widths
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)

    def __post_init__(self) -> None:
        if self.arch != "unet":
            raise OcsgeError(f"unsupported architecture {self.arch!r}: only 'unet' is implemented")
        if self.block not in ("basic", "bottleneck"):
            raise OcsgeError(f"unknown ResNet block {self.block!r}: expected 'basic' or 'bottleneck'")
        if len(self.layers) != 4 or len(self.widths) != 5 or len(self.decoder_channels) != 5:
            raise OcsgeError("a U-Net/ResNet spec needs 4 layer counts, 5 widths and 5 decoder channels")
        if self.n_classes < 2 or self.in_channels < 1:
            raise OcsgeError(f"invalid model spec: {self.n_classes} classes, {self.in_channels} channels")

    def to_dict(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ModelSpec:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise OcsgeError(f"unknown model spec fields {sorted(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)  # type: ignore[arg-type]

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1

    @property
    def encoder_channels(self) -> tuple[int, ...]:
        """Channels of the encoder features, input first (smp's ``encoder.out_channels``)."""
        return (self.in_channels, self.widths[0], *(w * self.expansion for w in self.widths[1:]))


def _preset(n_classes: int, in_channels: int, name: str) -> ModelSpec:
    common = {"n_classes": n_classes, "in_channels": in_channels}
    if name == "unet-resnet34":
        return ModelSpec(**common, encoder="resnet34")
    if name == "unet-resnet18":
        return ModelSpec(**common, encoder="resnet18", layers=(2, 2, 2, 2))
    if name == "unet-resnet50":
        return ModelSpec(**common, encoder="resnet50", block="bottleneck")
    if name == "unet-small":
        return ModelSpec(**common, encoder="resnet10-w16", layers=(1, 1, 1, 1), widths=(16, 16, 32, 64, 128),
                         decoder_channels=(64, 32, 24, 16, 16))
    if name == "unet-tiny":  # tests and CI: ~60 k parameters
        return ModelSpec(
            **common,
            encoder="resnet10-w8",
            layers=(1, 1, 1, 1),
            widths=(8, 8, 16, 16, 32),
            decoder_channels=(32, 16, 8, 8, 8),
        )
    raise OcsgeError(f"unknown model preset {name!r}: expected one of {', '.join(PRESETS)}")


PRESETS: tuple[str, ...] = ("unet-resnet34", "unet-resnet18", "unet-resnet50", "unet-small", "unet-tiny")


def preset(name: str, n_classes: int, in_channels: int = 5) -> ModelSpec:
    return _preset(n_classes, in_channels, name)


# --- encoder (torchvision's ResNet layout, so that the keys match) ------------------------------


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet without its classifier; returns the 6 feature maps smp's U-Net decoder expects."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        block = Bottleneck if spec.block == "bottleneck" else BasicBlock
        stem = spec.widths[0]
        self.conv1 = nn.Conv2d(spec.in_channels, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = stem
        for i, (n_blocks, width) in enumerate(zip(spec.layers, spec.widths[1:], strict=True)):
            stride = 1 if i == 0 else 2
            blocks: list[nn.Module] = []
            for j in range(n_blocks):
                downsample = None
                if j == 0 and (stride != 1 or cin != width * block.expansion):
                    downsample = nn.Sequential(
                        nn.Conv2d(cin, width * block.expansion, 1, stride=stride, bias=False),
                        nn.BatchNorm2d(width * block.expansion),
                    )
                blocks.append(block(cin, width, stride if j == 0 else 1, downsample))
                cin = width * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [x]
        x = self.relu(self.bn1(self.conv1(x)))
        features.append(x)
        x = self.layer1(self.maxpool(x))
        features.append(x)
        for name in ("layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            features.append(x)
        return features


# --- decoder (smp's UnetDecoder with batch norm, no attention, nearest upsampling) ----------------


class Conv2dReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.conv1 = Conv2dReLU(cin + skip, cout)
        self.conv2 = Conv2dReLU(cout, cout)

    def forward(self, x: torch.Tensor, size: Sequence[int], skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, size=tuple(size), mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UnetDecoder(nn.Module):
    def __init__(self, encoder_channels: Sequence[int], decoder_channels: Sequence[int]) -> None:
        super().__init__()
        enc = list(encoder_channels[1:])[::-1]  # deepest first, input resolution dropped
        ins = [enc[0], *decoder_channels[:-1]]
        skips = [*enc[1:], 0]
        self.center = nn.Identity()
        self.blocks = nn.ModuleList(DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, decoder_channels, strict=True))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        shapes = [f.shape[2:] for f in features][::-1]
        feats = features[1:][::-1]
        x = self.center(feats[0])
        skips = feats[1:]
        for i, block in enumerate(self.blocks):
            x = block(x, shapes[i + 1], skips[i] if i < len(skips) else None)
        return x


class Unet(nn.Module):
    """``Unet(spec)(x)`` → logits ``(N, n_classes, H, W)`` for normalised ``x`` of shape ``(N, C, H, W)``."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = ResNetEncoder(spec)
        self.decoder = UnetDecoder(spec.encoder_channels, spec.decoder_channels)
        self.segmentation_head = nn.Sequential(nn.Conv2d(spec.decoder_channels[-1], spec.n_classes, 3, padding=1))
        for m in self.decoder.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        head = self.segmentation_head[0]
        nn.init.xavier_uniform_(head.weight)
        nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmentation_head(self.decoder(self.encoder(x)))


def build_model(spec: ModelSpec) -> Unet:
    return Unet(spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- architecture from a bare state dict (IGN weights carry no metadata) ---------------------------


def spec_from_state_dict(state: Mapping[str, torch.Tensor], encoder_label: str | None = None) -> ModelSpec:
    """Rebuild the :class:`ModelSpec` of an smp-style U-Net/ResNet state dict from its keys and shapes."""
    required = ("encoder.conv1.weight", "segmentation_head.0.weight", "decoder.blocks.0.conv1.0.weight")
    missing = [k for k in required if k not in state]
    if missing:
        sample = ", ".join(sorted(state)[:5])
        raise OcsgeError(
            f"not a U-Net/ResNet state dict (missing {', '.join(missing)}; keys start with {sample}): "
            "only smp-style Unet with a ResNet encoder is supported"
        )
    stem = state["encoder.conv1.weight"]
    in_channels, stem_width = int(stem.shape[1]), int(stem.shape[0])
    block = "bottleneck" if "encoder.layer1.0.conv3.weight" in state else "basic"
    layers, widths = [], [stem_width]
    for i in range(1, 5):
        n = 0
        while f"encoder.layer{i}.{n}.conv1.weight" in state:
            n += 1
        if n == 0:
            raise OcsgeError(f"state dict has no encoder.layer{i}: encoder depth 5 is required")
        layers.append(n)
        widths.append(int(state[f"encoder.layer{i}.0.conv1.weight"].shape[0]))
    decoder = []
    j = 0
    while f"decoder.blocks.{j}.conv1.0.weight" in state:
        decoder.append(int(state[f"decoder.blocks.{j}.conv1.0.weight"].shape[0]))
        j += 1
    if "decoder.blocks.0.attention1.attention.cSE.1.weight" in state or any(".attention" in k for k in state):
        raise OcsgeError("U-Net with decoder attention (scse) is not supported")
    n_classes = int(state["segmentation_head.0.weight"].shape[0])
    if encoder_label is None:
        depth = sum(layers) * (3 if block == "bottleneck" else 2) + 2
        encoder_label = f"resnet{depth}" + ("" if widths[0] == 64 else f"-w{widths[0]}")
    return ModelSpec(n_classes=n_classes, in_channels=in_channels, encoder=encoder_label, block=block,
                     layers=tuple(layers), widths=tuple(widths), decoder_channels=tuple(decoder))



def fuse_for_inference(model: Unet) -> Unet:
    """A copy of ``model`` with every BatchNorm folded into the convolution before it (eval only).

    At inference BatchNorm is an affine map per channel; folding it into the convolution's weights and
    bias removes a full pass over every activation (≈ 20 % of the CPU time of the small U-Net). The
    copy's state dict no longer matches smp's keys: it is for running, never for saving."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()

    def fold(parent: nn.Module, conv_name: str, bn_name: str) -> None:
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(parent, bn_name, nn.Identity())

    fold(fused.encoder, "conv1", "bn1")
    for module in fused.modules():
        if isinstance(module, BasicBlock | Bottleneck):
            for i in (1, 2, 3):
                if hasattr(module, f"conv{i}"):
                    fold(module, f"conv{i}", f"bn{i}")
            if module.downsample is not None:
                fold(module.downsample, "0", "1")
        elif isinstance(module, Conv2dReLU):
            fold(module, "0", "1")
    return fused
