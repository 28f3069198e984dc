"""The quantized ResNet-18: fake-quant training forward, and the exact integer emulation of an
exported model in torch int64 using the contract's functions."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import contract as C
from .model_format import QModel
from .quantizers import PACT, fake_quant_weight, ste_round
from .resnet import ResNet18

__all__ = ["INPUT_SCALE", "QuantResNet", "emulate", "fold_layer", "layer_names"]

#: The network reads u8 pixels; the float model sees ``pixel * INPUT_SCALE`` in [0, 1].
INPUT_SCALE = 1.0 / 255.0


def layer_names(net: ResNet18) -> list[str]:
    """Weight layers (conv and fc) in execution order, named like torchvision's modules."""
    names = ["conv1"]
    for prefix, block in net.blocks():
        names += [f"{prefix}.conv1", f"{prefix}.conv2"]
        if block.downsample is not None:
            names.append(f"{prefix}.downsample.0")
    return [*names, "fc"]


def _bn_of(net: ResNet18, name: str) -> nn.BatchNorm2d | None:
    if name == "fc":
        return None
    if name.endswith("downsample.0"):
        return net.get_submodule(name[:-1] + "1")
    parent, _, leaf = name.rpartition(".")
    return net.get_submodule((parent + "." if parent else "") + "bn" + leaf[-1])


def fold_layer(net: ResNet18, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Float weight and bias of a layer with BatchNorm (running statistics) folded in;
    for ``conv1`` also the input normalization, so it takes ``pixel * INPUT_SCALE``."""
    mod = net.get_submodule(name)
    w = mod.weight
    bn = _bn_of(net, name)
    if bn is None:
        b = mod.bias if mod.bias is not None else torch.zeros_like(w[:, 0])
    else:
        g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w = w * g.view(-1, 1, 1, 1)
        b = bn.bias - bn.running_mean * g
    if name == "conv1":
        mean = net.input_mean.view(1, -1, 1, 1)
        std = net.input_std.view(1, -1, 1, 1)
        b = b - (w * mean / std).sum(dim=(1, 2, 3))
        w = w / std
    return w, b


class QuantResNet(nn.Module):
    """ResNet-18 with every weight layer quantized per filter and every activation quantized.

    The float ResNet's BatchNorm statistics are frozen and folded into the convolutions
    (``folded``); the first convolution also absorbs the input normalization so it reads raw
    pixels (zero padding is in the pixel domain). Block outputs and the inner ``conv1``
    outputs are unsigned ``act_bits`` values with a learnable PACT clip; ``conv2`` and the
    downsample convolution output signed ``act_bits + 1`` values on the block's output grid;
    the global average pool has its own PACT clip; ``fc`` outputs float logits.

    Parameters
    ----------
    net : ResNet18
        The float model (trained), whose weights QAT keeps training.
    schemes : dict of str to LongTensor
        Scheme code per filter for each name of ``layer_names(net)``.
    act_bits : int
        Activation width, 4 or 5.
    """

    def __init__(self, net: ResNet18, schemes: dict[str, torch.Tensor], act_bits: int = 4
                 ) -> None:
        super().__init__()
        self.net = net
        self.act_bits = act_bits
        names = layer_names(net)
        if sorted(schemes) != sorted(names):
            raise ValueError(f"schemes must cover exactly the layers {names}, not "
                             f"{sorted(schemes)}")
        for name in names:
            rows = self._module(name).weight.shape[0]
            codes = torch.as_tensor(schemes[name], dtype=torch.long)
            if codes.shape != (rows,) or codes.min() < 0 or codes.max() >= len(C.SCHEMES):
                raise ValueError(f"layer {name!r} needs {rows} scheme codes in 0..2, not "
                                 f"{tuple(codes.shape)} values")
            self.register_buffer(self._key(name), codes.clone())
        self.acts = nn.ModuleDict({self._key(k): PACT(act_bits) for k in self.act_points()})

    # ---- structure ---------------------------------------------------------------------------

    @staticmethod
    def _key(name: str) -> str:
        return "scheme_" + name.replace(".", "_")

    def act_points(self) -> list[str]:
        """Names of the unsigned activation quantizers (graph node names)."""
        names = ["conv1"]
        for prefix, _ in self.net.blocks():
            names += [f"{prefix}.conv1", f"{prefix}.add"]
        return [*names, "avgpool"]

    def act(self, name: str) -> PACT:
        return self.acts[self._key(name)]

    def schemes(self, name: str) -> torch.Tensor:
        return getattr(self, self._key(name))

    def _module(self, name: str) -> nn.Module:
        return self.net.get_submodule(name)

    def layer_names(self) -> list[str]:
        return layer_names(self.net)

    def folded(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``fold_layer(self.net, name)``."""
        return fold_layer(self.net, name)

    def quantized_layer(self, name: str, s_in: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fake-quantized ``(weight, bias, weight scale)`` of a layer whose input has scale
        ``s_in``; the bias sits on the accumulator grid ``s_in * s_w``."""
        w, b = self.folded(name)
        wq, s_w = fake_quant_weight(w, self.schemes(name))
        step = s_in * s_w
        return wq, ste_round(b / step) * step, s_w

    # ---- float (fake-quant) forward ------------------------------------------------------------

    def _conv(self, name: str, x: torch.Tensor, s_in: torch.Tensor) -> torch.Tensor:
        mod = self._module(name)
        wq, bq, _ = self.quantized_layer(name, s_in)
        return F.conv2d(x, wq, bq, mod.stride, mod.padding)

    def _signed(self, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        t = C.conv_out_type(False, self.act_bits)
        return ste_round(y / s).clamp(t.lo, t.hi) * s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float logits of images ``x`` = pixels / 255 (exactly the u8 grid)."""
        s_in = torch.tensor(INPUT_SCALE, device=x.device)
        x = self.act("conv1")(self._conv("conv1", x, s_in))
        s = self.act("conv1").scale()
        x = self.net.maxpool(x)
        hi = (1 << self.act_bits) - 1
        for prefix, block in self.net.blocks():
            mid = self.act(f"{prefix}.conv1")
            h = mid(self._conv(f"{prefix}.conv1", x, s))
            out = self.act(f"{prefix}.add")
            s_out = out.scale()
            y = self._conv(f"{prefix}.conv2", h, mid.scale())
            sc = x if block.downsample is None else self._conv(f"{prefix}.downsample.0", x, s)
            if out.calibrating:
                out.calibrate(y + sc)
                s_out = out.scale()
            total = self._signed(y, s_out) / s_out
            if block.downsample is None:
                total = total + ste_round(sc / s_out)
            else:
                total = total + self._signed(sc, s_out) / s_out
            x = total.clamp(0, hi) * s_out
            s = s_out
        pool = self.act("avgpool")
        x = pool(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        wq, bq, _ = self.quantized_layer("fc", pool.scale())
        return F.linear(x, wq, bq)

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Set every activation clip from a batch of images (pixels / 255)."""
        for m in self.acts.values():
            m.calibrating = True
        try:
            self.forward(x)
        finally:
            for m in self.acts.values():
                m.calibrating = False

    def train(self, mode: bool = True) -> QuantResNet:
        super().train(mode)
        self.net.eval()  # BatchNorm statistics stay frozen: they are folded into the weights
        return self


# ---- integer emulation ---------------------------------------------------------------------------

def _i64(a: np.ndarray, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(a, dtype=np.int64))
    return t if shape is None else t.view(shape)


def _conv_acc(x: torch.Tensor, weight: np.ndarray, stride: int, padding: int) -> torch.Tensor:
    """Exact integer convolution. Torch has no int64 conv on CPU, so this runs in float64:
    every product and partial sum is an integer below 2**53 (|x| < 2**8, |w| <= 2**7,
    at most 2**20 terms by the model format's limits), hence exact, and converted back."""
    acc = F.conv2d(x.to(torch.float64), torch.from_numpy(weight.astype(np.float64)),
                   stride=stride, padding=padding)
    return acc.round().to(torch.int64)


def emulate(model: QModel, images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Integer logits (N, classes) of an exported model, in torch int64 on the CPU.

    An implementation of the integer contract independent of the numpy golden model (torch
    convolutions and pooling), calling ``quant.contract`` for every rounding and clamp.
    """
    x = torch.as_tensor(np.asarray(images)).to(torch.int64)
    if x.dim() == 3:
        x = x[None]
    values: dict[str, torch.Tensor] = {"input": x}
    bits = model.act_bits
    for node in model.nodes:
        name, op = node["name"], node["op"]
        ins = [values[i] for i in node["inputs"]]
        p: dict[str, Any] = model.params(name)
        if op == "conv":
            acc = _conv_acc(ins[0], p["weight"], node["stride"], node["padding"])
            acc = acc + _i64(p["bias"], (1, -1, 1, 1))
            out = C.activation(acc, _i64(p["mult"], (1, -1, 1, 1)),
                               _i64(p["shift"], (1, -1, 1, 1)), node["relu"], bits)
        elif op == "fc":
            flat = ins[0].flatten(1)  # C-order (c, h, w), as the golden model; N may be 0
            acc = (flat.to(torch.float64) @ torch.from_numpy(
                p["weight"].astype(np.float64)).T).round().to(torch.int64)
            out = C.logits(acc + _i64(p["bias"]), _i64(p["mult"]), _i64(p["shift"]))
        elif op == "add":
            (ma, mb), (sa, sb) = node["mult"], node["shift"]
            out = C.residual_add(ins[0], ins[1], ma, sa, mb, sb, node["relu"], bits)
        elif op == "maxpool":
            # Inputs are unsigned, so zero padding equals torch's -inf padding here.
            out = F.max_pool2d(F.pad(ins[0].to(torch.float64), [node["padding"]] * 4),
                               node["kernel"], node["stride"]).to(torch.int64)
        elif op == "avgpool":
            out = C.avgpool_requant(ins[0].sum(dim=(2, 3), keepdim=True), node["mult"],
                                    node["shift"], bits)
        else:
            raise ValueError(f"node {name!r}: unknown op {op!r}")
        values[name] = out
    return values[model.output].flatten(1)
