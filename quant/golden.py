"""The golden model: a deliberately plain numpy evaluation of an integer model, int64 only.

Each function here is one op of docs/arithmetic.md; RTL tests compare against them bit for
bit. Feature maps are ``(N, C, H, W)`` integer arrays; a single ``(C, H, W)`` image is
accepted where noted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import contract as C
from .model_format import ModelFormatError, QModel

__all__ = [
    "add",
    "avgpool",
    "conv",
    "conv2d_acc",
    "dot_products",
    "fc",
    "maxpool",
    "predict",
    "run",
    "run_all",
]

_I64 = np.int64


def dot_products(acts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``acts`` (T, K) times ``weights`` (F, K) transposed: (T, F) exact dot products."""
    return np.asarray(acts, dtype=_I64) @ np.asarray(weights, dtype=_I64).T


def _windows(x: np.ndarray, k: int, stride: int, padding: int) -> np.ndarray:
    """(N, C, Ho, Wo, k, k) view of the zero-padded input's k x k windows."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    return sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]


def conv2d_acc(x: np.ndarray, weight: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """Integer 2-D convolution with zero padding: (N, O, Ho, Wo) dot products, no bias."""
    out_ch, in_ch, k, _ = weight.shape
    win = _windows(np.asarray(x, dtype=_I64), k, stride, padding)
    n, _, ho, wo = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, in_ch * k * k)
    acc = dot_products(cols, weight.reshape(out_ch, -1))
    return acc.reshape(n, ho, wo, out_ch).transpose(0, 3, 1, 2)


def _per_channel(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=_I64)[None, :, None, None]


def conv(x: np.ndarray, node: dict[str, Any], p: dict[str, np.ndarray], act_bits: int
         ) -> np.ndarray:
    """Convolution layer: dot products + bias, requantized per output channel, ReLU/clamp."""
    acc = conv2d_acc(x, p["weight"], node["stride"], node["padding"]) + _per_channel(p["bias"])
    return C.activation(acc, _per_channel(p["mult"]), _per_channel(p["shift"]),
                        node["relu"], act_bits)


def fc(x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """Final fully connected layer: (N, F) integer logits."""
    flat = x.reshape(x.shape[0], int(np.prod(x.shape[1:])))  # (N, C*H*W), C-order; N may be 0
    acc = dot_products(flat, p["weight"]) + p["bias"].astype(_I64)
    return C.logits(acc, p["mult"].astype(_I64), p["shift"].astype(_I64))


def maxpool(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """Max-pool over unsigned inputs; padding with 0 never wins over a real value."""
    return _windows(np.asarray(x, dtype=_I64), kernel, stride, padding).max(axis=(4, 5))


def avgpool(x: np.ndarray, mult: int, shift: int, act_bits: int) -> np.ndarray:
    """Global average pool: integer sum over H x W, requantized, clamped; (N, C, 1, 1)."""
    total = np.asarray(x, dtype=_I64).sum(axis=(2, 3), keepdims=True)
    return C.avgpool_requant(total, mult, shift, act_bits)


def add(a: np.ndarray, b: np.ndarray, node: dict[str, Any], act_bits: int) -> np.ndarray:
    """Residual add of two feature maps with their own multipliers and shifts."""
    (ma, mb), (sa, sb) = node["mult"], node["shift"]
    return C.residual_add(np.asarray(a, _I64), np.asarray(b, _I64), ma, sa, mb, sb,
                          node["relu"], act_bits)


def run_node(model: QModel, node: dict[str, Any], ins: list[np.ndarray]) -> np.ndarray:
    """Evaluate one node of ``model`` on its input feature maps."""
    op = node["op"]
    if op == "conv":
        return conv(ins[0], node, model.params(node["name"]), model.act_bits)
    if op == "fc":
        return fc(ins[0], model.params(node["name"]))
    if op == "add":
        return add(ins[0], ins[1], node, model.act_bits)
    if op == "maxpool":
        return maxpool(ins[0], node["kernel"], node["stride"], node["padding"])
    if op == "avgpool":
        return avgpool(ins[0], node["mult"], node["shift"], model.act_bits)
    raise ModelFormatError(f"node {node['name']!r}: unknown op {op!r}")


def _check_images(model: QModel, images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1] != model.input_shape[0]:
        raise ValueError(f"images must be (N, {model.input_shape[0]}, H, W) or "
                         f"({model.input_shape[0]}, H, W), not {images.shape}")
    if not np.issubdtype(images.dtype, np.integer):
        raise TypeError(f"images must be integers (u{model.input_bits} pixels), not "
                        f"{images.dtype}")
    hi = (1 << model.input_bits) - 1
    if images.size and (images.min() < 0 or images.max() > hi):
        raise ValueError(f"image pixels must be in [0, {hi}] (u{model.input_bits}), found "
                         f"[{images.min()}, {images.max()}]")
    model.infer(images.shape[1:])  # raises if the graph cannot take this input size
    return images.astype(_I64)


def run_all(model: QModel, images: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor of the network (by node name, plus ``"input"``) for a batch of images."""
    values = {"input": _check_images(model, images)}
    for node in model.nodes:
        values[node["name"]] = run_node(model, node, [values[i] for i in node["inputs"]])
    return values


def run(model: QModel, images: np.ndarray) -> np.ndarray:
    """Output of the network (integer logits, (N, classes), for a ResNet) for a batch."""
    values = {"input": _check_images(model, images)}
    remaining = {}  # how many later nodes still read each tensor, to free memory early
    for node in model.nodes:
        for i in node["inputs"]:
            remaining[i] = remaining.get(i, 0) + 1
    for node in model.nodes:
        values[node["name"]] = run_node(model, node, [values[i] for i in node["inputs"]])
        for i in node["inputs"]:
            remaining[i] -= 1
            if remaining[i] == 0 and i != model.output:
                del values[i]
    out = values[model.output]
    return out.reshape(out.shape[0], -1) if out.ndim == 4 and out.shape[2:] == (1, 1) else out


def predict(model: QModel, images: np.ndarray) -> np.ndarray:
    """Predicted class per image (argmax of the integer logits; ties go to the lower class)."""
    return np.argmax(run(model, images), axis=1)
