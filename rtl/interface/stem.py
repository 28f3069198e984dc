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

Where ``vec_len`` has room for more (12 channels fill 12 of zc706's 64 lanes), the fold
also *unrolls* the folded kernel's columns into the channels: ``U[(b, c'), y, x] =
S[c', y, x + b]`` for ``b < k'`` gives a ``k' x 1`` convolution on ``12 k'`` channels,

    out[o, y, x] = sum_{a, b, c'} Wf[o, c', a, b] * U[(b, c'), y + a, x],

which takes ``k' * ceil(12 k' / V)`` weight rows per pixel instead of ``k' * k'``: 4
instead of 16 on zc706 (V = 64), 12 on pynq-z2 (V = 16). The host writes ``U`` (``k'``
times the channels, ``k' - 1`` fewer columns), or, on a build whose engine unrolls
(``HwConfig.unroll_taps`` = ``k'``, zc706), ``S`` itself on ``V / k'`` channels: the engine
puts each pixel beside the ``k' - 1`` before it as the row streams in (tap ``b`` at
channel ``b V / k'``), so it reads every pixel once, 2 bus words on zc706 instead of 6.

On a build with ``split_input`` the arrays take only ``act_bits``-wide activations, so the
host also *splits* the (folded) input's pixels into nibbles, ``x = 16 hi + lo``
(:func:`split_pixels`): chunk ``2k`` of the split map holds the low nibbles of channels
``kV .. kV + V - 1``, chunk ``2k + 1`` their high nibbles, and the layer's weights repeat
each chunk's columns for its high chunk (:func:`split_weight`). The descriptor's ``split``
tells the arrays to take an odd chunk's products times 16, so

    sum_c w[c] x[c] = sum_c w[c] lo[c] + 16 sum_c w[c] hi[c]

is the same integer: the steps per pixel double, every product is a 4-bit one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import NIBBLE_BITS, HwConfig
from .descriptor import PIXEL_BITS

__all__ = ["Fold", "fold_input", "fold_plan", "fold_weight", "split_channels",
           "split_pixels", "split_weight", "unroll_columns"]



@dataclass(frozen=True)
class Fold:
    """How a stride-2 layer with kernel ``kernel`` and padding ``pad`` on a
    ``(channels, height, width)`` input is folded (and, with ``unroll``, its folded kernel's
    columns unrolled into the channels): the folded input's shape and kernel. ``lanes``: 0
    where the host unrolls, else the engine does (``HwConfig.unroll_taps``, the descriptor's
    ``unroll``): the host writes the folded map on ``lanes`` channels (``tap_lanes``, the
    folded channels zero-padded), and tap ``b`` of the unrolled map is at channel
    ``lanes * b``."""

    kernel: int
    pad: int
    in_shape: tuple[int, int, int]
    unroll: bool = False
    lanes: int = 0

    @property
    def side(self) -> int:
        """The folded kernel's side ``k'`` before any unrolling."""
        return -(-self.kernel // 2)

    @property
    def folded_kernel(self) -> tuple[int, int]:
        """``(height, width)`` of the kernel the engine runs."""
        return (self.side, 1 if self.unroll else self.side)

    @property
    def tap_channels(self) -> int:
        """Channel stride of the unrolled taps: the folded channels, or ``lanes``."""
        return self.lanes or 4 * self.in_shape[0]

    @property
    def folded_shape(self) -> tuple[int, int, int]:
        """The shape of the map the engine's conv runs on."""
        c, h, w = self.in_shape
        hs, ws = -(-(h + 2 * self.pad) // 2), -(-(w + 2 * self.pad) // 2)
        if self.unroll:
            return self.tap_channels * self.side, hs, ws - self.side + 1
        return 4 * c, hs, ws

    @property
    def input_fields(self) -> dict[str, int]:
        """The descriptor fields of the folded layer's input: the map the engine's conv runs
        on, and ``unroll`` where the engine unrolls the stored map into it."""
        c, h, w = self.folded_shape
        return {"in_c": c, "in_h": h, "in_w": w, "unroll": int(self.lanes > 0)}

    @property
    def stored_shape(self) -> tuple[int, int, int]:
        """The shape of the map the host writes: the folded map, or where the engine unrolls
        it, the folded map before unrolling on ``lanes`` channels."""
        if self.lanes:
            _, hs, width = self.folded_shape
            return self.lanes, hs, width + self.side - 1
        return self.folded_shape


def fold_plan(node: dict, in_shape: tuple[int, int, int], cfg: HwConfig,
              in_bits: int = PIXEL_BITS) -> Fold | None:
    """The :class:`Fold` (unrolled or not) that takes the fewest weight rows per output pixel
    on ``cfg`` if ``node`` is a stride-2 conv that folding makes cheaper, else None. Between
    equal counts the fold with the fewest bytes to read wins: the plain fold before the host's
    unroll, and the engine's unroll (``HwConfig.unroll_taps`` taps equal to ``k'``, the
    folded channels within ``tap_lanes``) before either. An unrolled fold is taken only
    where the input band of one output row fits half the act buffer, so that the engine can
    still load a band while it computes the one before (``rtl.interface.tiling``). On a
    ``split_input`` build the counts are those of the split map. ``in_bits``: the input's
    storage width; the engine unrolls only 8-bit pixels."""
    if node.get("op") != "conv" or node.get("stride") != 2:
        return None

    def stored(channels: int) -> int:     # channels of the map in the act buffer
        return split_channels(channels, cfg) if cfg.split_input else channels

    k, c = node["kernel"], in_shape[0]
    shape = tuple(in_shape)
    candidates = [Fold(k, node["padding"], shape, unroll) for unroll in (False, True)]
    if cfg.unroll_taps == -(-k // 2) and 4 * c <= cfg.tap_lanes and in_bits == PIXEL_BITS:
        candidates.append(Fold(k, node["padding"], shape, True, cfg.tap_lanes))
    best, steps = None, cfg.steps(k, stored(c))
    for fold in candidates:
        ch, _, width = fold.folded_shape
        folded = cfg.steps(fold.folded_kernel, stored(ch))
        band = fold.side * width * cfg.chunks(stored(ch))
        if width >= 1 and (not fold.unroll or band <= cfg.act_buf_depth // 2) and (
                folded < steps or (folded == steps and fold.lanes)):
            best, steps = fold, folded
    return best


def unroll_columns(x: np.ndarray, taps: int, lanes: int | None = None) -> np.ndarray:
    """``U[(b, c), y, x] = S[c, y, x + b]`` for ``b < taps`` of a (C, H, W) map ``S``: a
    (``lanes * taps``, H, W - taps + 1) map, channel ``lanes * b + c`` (``lanes`` >= C; the
    channels past C zero; ``lanes`` None: C)."""
    c, h, w = x.shape
    lanes = c if lanes is None else lanes
    padded = np.zeros((lanes, h, w), x.dtype)
    padded[:c] = x
    width = w - taps + 1
    return np.concatenate([padded[:, :, b:b + width] for b in range(taps)])


def fold_input(x: np.ndarray, fold: Fold) -> np.ndarray:
    """The folded input of an image (C, H, W): ``S`` (4C, Hs, Ws), zero-padded by ``pad``
    (and one more row/column where the padded size is odd), then 2 x 2 blocks to channels
    ``4 * c + 2 * dy + dx``; unrolled, ``U`` (4C k', Hs, Ws - k' + 1) with channel
    ``4C * b + c'`` holding ``S[c']`` shifted left by ``b`` columns (:func:`unroll_columns`);
    where the engine unrolls (``lanes``), ``S`` on ``lanes`` channels."""
    c, h, w = fold.in_shape
    if tuple(x.shape) != (c, h, w):
        raise ValueError(f"input of shape {tuple(x.shape)}, the fold expects {(c, h, w)}")
    hs, ws = -(-(h + 2 * fold.pad) // 2), -(-(w + 2 * fold.pad) // 2)
    p = np.zeros((c, 2 * hs, 2 * ws), np.int64)
    p[:, fold.pad:fold.pad + h, fold.pad:fold.pad + w] = x
    s = p.reshape(c, hs, 2, ws, 2).transpose(0, 2, 4, 1, 3).reshape(4 * c, hs, ws)
    if fold.lanes:
        return unroll_columns(s, 1, fold.lanes)       # the channels zero-padded
    if not fold.unroll:
        return s
    return unroll_columns(s, fold.side)


def fold_weight(weight: np.ndarray, fold: Fold) -> np.ndarray:
    """The folded kernel of a (O, C, k, k) kernel, same dtype: (O, 4C, k', k'), or unrolled
    (O, L k', k', 1) with channel ``L * b + c'`` holding column ``b`` (``L``:
    ``Fold.tap_channels``; the channels past 4C zero)."""
    o, c, k, _ = weight.shape
    kf = fold.side
    w8 = np.zeros((o, c, 2 * kf, 2 * kf), weight.dtype)
    w8[:, :, :k, :k] = weight
    wf = w8.reshape(o, c, kf, 2, kf, 2).transpose(0, 1, 3, 5, 2, 4).reshape(o, 4 * c, kf, kf)
    if not fold.unroll:
        return wf
    lanes = fold.tap_channels
    wu = np.zeros((o, kf, lanes, kf), weight.dtype)
    wu[:, :, :4 * c] = wf.transpose(0, 3, 1, 2)
    return wu.reshape(o, kf * lanes, kf, 1)


def split_channels(channels: int, cfg: HwConfig) -> int:
    """Channels of the split map of a ``channels``-channel input: a low and a high chunk of
    ``vec_len`` for every chunk of the input."""
    return 2 * cfg.vec_len * cfg.chunks(channels)


def split_pixels(x: np.ndarray, cfg: HwConfig) -> np.ndarray:
    """The split map (``split_channels(C)``, H, W) of unsigned pixels (C, H, W) of at most
    ``2 * NIBBLE_BITS`` bits: chunk ``2k`` the low nibbles of chunk ``k``'s channels, chunk
    ``2k + 1`` their high nibbles (zero channels pad the last chunk)."""
    x = np.asarray(x)
    top = (1 << 2 * NIBBLE_BITS) - 1
    if x.size and (x.min() < 0 or x.max() > top):
        raise ValueError(f"pixels to split must be in [0, {top}], found "
                         f"[{x.min()}, {x.max()}]")
    c, h, w = x.shape
    v, chunks = cfg.vec_len, cfg.chunks(c)
    padded = np.zeros((chunks, 1, v, h, w), np.int64)
    padded.reshape(chunks * v, h, w)[:c] = x
    low = padded & ((1 << NIBBLE_BITS) - 1)
    return np.concatenate([low, padded >> NIBBLE_BITS], axis=1).reshape(2 * chunks * v, h, w)


def split_weight(weight: np.ndarray, cfg: HwConfig) -> np.ndarray:
    """The weights (O, ``split_channels(I)``, kh, kw) of a (O, I, kh, kw) layer for its split
    input: chunk ``k``'s columns in chunks ``2k`` and ``2k + 1``, same dtype (an fc layer's
    (O, I) as (O, ``split_channels(I)``))."""
    if weight.ndim == 2:
        return split_weight(weight[:, :, None, None], cfg)[:, :, 0, 0]
    o, c, kh, kw = weight.shape
    v, chunks = cfg.vec_len, cfg.chunks(c)
    padded = np.zeros((o, chunks, 1, v, kh, kw), weight.dtype)
    padded.reshape(o, chunks * v, kh, kw)[:, :c] = weight
    return np.concatenate([padded, padded], axis=2).reshape(o, 2 * chunks * v, kh, kw)
