"""Export a trained ``QuantResNet`` to the integer model format (``quant.model_format``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import contract as C
from .model_format import FORMAT_NAME, FORMAT_VERSION, QModel
from .qmodel import INPUT_SCALE, QuantResNet
from .quantizers import weight_to_int
from .resnet_graph import resnet18_nodes

__all__ = ["LOGIT_HEADROOM", "export_qmodel"]

#: The common logit scale is the largest fc row scale divided by this, so every row's
#: requantization multiplier is at most this (fine resolution, far from int32 saturation).
LOGIT_HEADROOM = 64.0

_I32 = np.iinfo(np.int32)


def _requant(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = [C.quantize_multiplier(float(r)) for r in np.atleast_1d(real)]
    return (np.array([m for m, _ in pairs], np.uint16), np.array([s for _, s in pairs], np.uint8))


@torch.no_grad()
def _layer_arrays(q: QuantResNet, name: str, s_in: float, s_out: np.ndarray | float
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Integer arrays of one weight layer; returns them and the per-filter weight scales."""
    w, b = q.folded(name)
    schemes = q.schemes(name)
    values, s_w = weight_to_int(w.detach().cpu().double().float(), schemes.cpu())
    s_w = s_w.double().numpy()
    step = s_in * s_w
    # Same rounding as the training forward (torch.round: half to even) so both agree.
    bias = torch.round(b.detach().cpu().double() / torch.from_numpy(step)).numpy()
    mult, shift = _requant(step / s_out)
    arrays = {"weight": values.numpy().astype(np.int8),
              "scheme": schemes.cpu().numpy().astype(np.uint8),
              "bias": np.clip(bias, _I32.min, _I32.max).astype(np.int32),
              "mult": mult, "shift": shift}
    return arrays, s_w


@torch.no_grad()
def export_qmodel(q: QuantResNet, *, input_size: int | None = None,
                  meta: dict[str, Any] | None = None) -> QModel:
    """The integer model of ``q`` (graph from ``resnet18_nodes``, names as torchvision's).

    Scales: input ``1/255``; each unsigned activation ``alpha / (2**act_bits - 1)`` of its
    PACT quantizer; ``conv2`` and downsample outputs use their block's output scale, so their
    side of the add has multiplier 1; logits share one scale (``meta.logit_scale``).
    """
    net = q.net
    cfg = net.config
    size = input_size or cfg["input_size"]
    nodes = resnet18_nodes(width=cfg["width"], num_classes=cfg["num_classes"],
                           in_channels=cfg["in_channels"], small_stem=cfg["small_stem"])
    manifest: dict[str, Any] = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "act_bits": q.act_bits,
        "input_bits": 8, "input_shape": [cfg["in_channels"], size, size], "output": "fc",
        "nodes": nodes, "meta": {},
    }
    model = QModel(manifest, {})
    info = model.infer()

    def scale(point: str) -> float:
        return float(q.act(point).scale())

    scales: dict[str, float] = {"input": INPUT_SCALE}
    for node in nodes:
        name, op = node["name"], node["op"]
        src = node["inputs"][0]
        if op == "conv":
            if name == "conv1" or name.endswith(".conv1"):
                s_out = scale(name)
            else:  # conv2 or downsample: the block's output grid
                s_out = scale(name.rsplit(".", 2 if "downsample" in name else 1)[0] + ".add")
            arrays, _ = _layer_arrays(q, name, scales[src], s_out)
            scales[name] = s_out
        elif op == "fc":
            s_in = scales[src]
            w, _ = q.folded(name)
            _, s_w = weight_to_int(w.detach().cpu(), q.schemes(name).cpu())
            logit_scale = float(s_in * s_w.double().max()) / LOGIT_HEADROOM
            arrays, _ = _layer_arrays(q, name, s_in, logit_scale)
            scales[name] = logit_scale
        elif op == "add":
            s_out = scale(name)
            mult, shift = zip(*(C.quantize_multiplier(scales[i] / s_out)
                                for i in node["inputs"]), strict=True)
            node["mult"], node["shift"] = [int(m) for m in mult], [int(s) for s in shift]
            scales[name] = s_out
            continue
        elif op == "maxpool":
            scales[name] = scales[src]
            continue
        else:  # avgpool
            _, h, w_ = info[src].shape
            s_out = scale(name)
            node["mult"], node["shift"] = C.quantize_multiplier(scales[src] / (h * w_ * s_out))
            scales[name] = s_out
            continue
        for key, arr in arrays.items():
            model.arrays[f"{name}.{key}"] = arr
    manifest["meta"] = {"generator": "quant.export", "logit_scale": scales["fc"],
                        "model_config": cfg,
                        "act_scales": {k: v for k, v in scales.items() if k != "fc"},
                        **(meta or {})}
    model.validate()
    return model
