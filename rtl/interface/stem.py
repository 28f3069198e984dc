"""Space-to-depth for a stride-2 first layer: the same integers, a third of the cycles.

ResNet's stem (7 x 7, stride 2, padding 3, on 3 channels) fills 3 of the ``vec_len``
lanes of every activation vector. Folding each 2 x 2 block of the zero-padded image into
the channels gives a 4 x 4, stride-1 convolution without padding on 12 channels, which
fills four times the lanes and takes 16 weight rows per pixel instead of 49:

    out[o, y, x] = sum_{c, ky, kx} W[o, c, ky, kx] * P[c, 2y + ky, 2x + kx]
                 = sum_{c, dy, dx, a, b} W8[o, c, 2a + dy, 2b + dx] * S[(c, dy, dx), y + a, x + b]

with ``P`` the padded image, ``S[(c, dy, dx), i, j] = P[c, 2i + dy, 2j + dx]`` and ``W8``
the kernel zero-extended to an even size. Every product and every sum is the same, so the
results are bit-exact; zero weights are legal in every scheme (PoT code 0). The host writes
``S`` instead of the image (:func:`fold_input`) and the layer's weights folded
(:func:`fold_weight`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import HwConfig

__all__ = ["Fold", "fold_input", "fold_plan", "fold_weight"]


@dataclass(frozen=True)
class Fold:
    """How a stride-2 layer with kernel ``kernel`` and padding ``pad`` on a
    ``(channels, height, width)`` input is folded: the folded input's shape and kernel."""

    kernel: int
    pad: int
    in_shape: tuple[int, int, int]

    @property
    def folded_kernel(self) -> int:
        return -(-self.kernel // 2)

    @property
    def folded_shape(self) -> tuple[int, int, int]:
        c, h, w = self.in_shape
        return 4 * c, -(-(h + 2 * self.pad) // 2), -(-(w + 2 * self.pad) // 2)


def fold_plan(node: dict, in_shape: tuple[int, int, int], cfg: HwConfig) -> Fold | None:
    """A :class:`Fold` if ``node`` is a stride-2 conv whose folded form takes fewer weight
    rows per output pixel on ``cfg``, else None."""
    if node.get("op") != "conv" or node.get("stride") != 2:
        return None
    k, c = node["kernel"], in_shape[0]
    fold = Fold(k, node["padding"], tuple(in_shape))
    steps = cfg.steps(k, c)
    folded = cfg.steps(fold.folded_kernel, 4 * c)
    return fold if folded < steps else None


def fold_input(x: np.ndarray, fold: Fold) -> np.ndarray:
    """The folded input ``S`` (4C, Hs, Ws) of an image (C, H, W): zero-padded by ``pad``
    (and one more row/column where the padded size is odd), then 2 x 2 blocks to channels
    ``4 * c + 2 * dy + dx``."""
    c, h, w = fold.in_shape
    if tuple(x.shape) != (c, h, w):
        raise ValueError(f"input of shape {tuple(x.shape)}, the fold expects {(c, h, w)}")
    _, hs, ws = fold.folded_shape
    p = np.zeros((c, 2 * hs, 2 * ws), np.int64)
    p[:, fold.pad:fold.pad + h, fold.pad:fold.pad + w] = x
    return p.reshape(c, hs, 2, ws, 2).transpose(0, 2, 4, 1, 3).reshape(4 * c, hs, ws)


def fold_weight(weight: np.ndarray, fold: Fold) -> np.ndarray:
    """The folded kernel (O, 4C, k', k') of a (O, C, k, k) kernel, same dtype."""
    o, c, k, _ = weight.shape
    kf = fold.folded_kernel
    w8 = np.zeros((o, c, 2 * kf, 2 * kf), weight.dtype)
    w8[:, :, :k, :k] = weight
    return w8.reshape(o, c, kf, 2, kf, 2).transpose(0, 1, 3, 5, 2, 4).reshape(o, 4 * c, kf, kf)
