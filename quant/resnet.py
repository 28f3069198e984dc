"""ResNet-18 in PyTorch whose ``state_dict`` keys match torchvision's, with a width multiplier
and a small-image stem."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .resnet_graph import resnet_widths

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BasicBlock",
    "CheckpointError",
    "ResNet18",
    "load_checkpoint_state",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model, naming the mismatch and the fix."""


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual connection (torchvision layout)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet18(nn.Module):
    """ResNet-18 taking images as floats in [0, 1] (pixels / 255), normalized inside.

    Parameters
    ----------
    num_classes : int
        Outputs of ``fc``.
    in_channels : int
        Image channels (3 for RGB, 1 for grayscale).
    width : float
        Channel multiplier of the four stages (1.0 is torchvision's 64/128/256/512).
    small_stem : bool
        A single 3x3/1 ``conv1`` and no max-pool, for 8x8 or 32x32 inputs; otherwise the
        standard 7x7/2 conv and 3x3/2 max-pool.
    input_size : int
        Side of the square input images the model is trained for (recorded for export; the
        network itself accepts any size that survives the downsampling).
    mean, std : sequence of float
        Per-channel input normalization, ``(x - mean) / std``; kept out of the ``state_dict``
        so torchvision checkpoints load unchanged. Defaults: ImageNet's for 3 channels,
        0.5/0.5 otherwise.
    """

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                 small_stem: bool = False, input_size: int = 224,
                 mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, not {num_classes!r}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, not {in_channels!r}")
        if not isinstance(input_size, int) or input_size < 1:
            raise ValueError(f"input_size must be a positive integer, not {input_size!r}")
        widths = resnet_widths(width)
        self.config = {"num_classes": num_classes, "in_channels": in_channels, "width": width,
                       "small_stem": small_stem, "input_size": input_size}
        if mean is None:
            mean = IMAGENET_MEAN if in_channels == 3 else (0.5,) * in_channels
        if std is None:
            std = IMAGENET_STD if in_channels == 3 else (0.5,) * in_channels
        if len(mean) != in_channels or len(std) != in_channels or min(std) <= 0:
            raise ValueError(f"mean and std need {in_channels} entries (std > 0), not "
                             f"{mean!r} and {std!r}")
        self.config.update(mean=list(map(float, mean)), std=list(map(float, std)))
        self.register_buffer("input_mean", torch.tensor(mean).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("input_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        if small_stem:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        cin = widths[0]
        for stage, cout in enumerate(widths, start=1):
            stride = 1 if stage == 1 else 2
            setattr(self, f"layer{stage}", nn.Sequential(BasicBlock(cin, cout, stride),
                                                         BasicBlock(cout, cout, 1)))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)  # each block starts as identity, as torchvision can

    @property
    def small_stem(self) -> bool:
        return bool(self.config["small_stem"])

    def blocks(self) -> list[tuple[str, BasicBlock]]:
        """``("layer1.0", block), ...`` in execution order."""
        return [(f"layer{s}.{b}", getattr(self, f"layer{s}")[b])
                for s in range(1, 5) for b in range(2)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.input_mean) / self.input_std
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def load_checkpoint_state(model: nn.Module, path: str | Path) -> None:
    """Load a torchvision-format ``state_dict`` file (or a dict holding one under
    ``"state_dict"`` / ``"model"``) into ``model``, with a clear error for any mismatch."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; give the path of a "
                              f"torchvision ResNet-18 state_dict saved with torch.save")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for unreadable files
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read as a torch file "
                              f"({type(exc).__name__}); save it with torch.save(state_dict)") \
            from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"checkpoint {str(path)!r} holds no state_dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a ResNet-18 of this layout: missing keys "
            f"{missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected keys "
            f"{unexpected[:3]}{'...' if len(unexpected) > 3 else ''}; pass a torchvision "
            f"resnet18 state_dict")
    for key, value in own.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"checkpoint {str(path)!r}: {key} has shape {tuple(state[key].shape)} but this "
                f"model needs {tuple(value.shape)}; match --width, --num-classes, --channels "
                f"and --small-stem to the checkpoint")
    model.load_state_dict(state)
