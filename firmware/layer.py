"""Host-side layer preparation: a conv or fc layer's weights packed into DDR pass blocks (the
layout of :mod:`rtl.interface.ddr`), and the descriptors that point the engine at them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtl.config import HwConfig
from rtl.interface.ddr import SLOT_WORDS, pack_slot, pass_word_order, row_words, word_bits
from rtl.interface.descriptor import POOL_TOP, Op
from rtl.interface.tiling import layer_descriptors

from .conv import plan_passes, weight_rows

__all__ = ["ConvLayer", "prepare_conv"]


@dataclass
class ConvLayer:
    """Everything the engine needs for one conv layer, ready to copy into DDR."""

    weights: np.ndarray     # uint64 words: the pass blocks
    passes: int
    steps: int
    kernel: tuple[int, int]     # (height, width)
    cfg: HwConfig

    def descriptors(self, *, in_addr: int, out_addr: int, weight_addr: int,
                    in_shape: tuple[int, int, int], out_shape: tuple[int, int, int],
                    stride: int, pad: int, mode: int, in_bits: int,
                    out_bits: int, name: str = "conv", pool: bool = False,
                    unroll: bool = False) -> list[bytes]:
        """The layer's descriptors, one per row tile (:mod:`rtl.interface.tiling`), to run as
        one chain (``DESC_COUNT``); with ``pool``, the tiles write the max-pool (3 x 3,
        stride 2, padding 1) of the output at ``out_addr`` instead (``out_shape``: the
        conv's); with ``unroll``, the engine unrolls the pixel map at ``in_addr``
        (``in_shape``: the unrolled map's, ``HwConfig.unroll_taps``)."""
        extra = {"pool": POOL_TOP} if pool else {}
        if unroll:
            extra["unroll"] = 1
        return layer_descriptors(
            self.cfg, pad=pad, name=name, op=Op.CONV, in_addr=in_addr, out_addr=out_addr,
            weight_addr=weight_addr, in_c=in_shape[0], in_h=in_shape[1], in_w=in_shape[2],
            out_c=out_shape[0], out_h=out_shape[1], out_w=out_shape[2],
            kernel_h=self.kernel[0], kernel_w=self.kernel[1], stride=stride, mode=int(mode),
            in_bits=in_bits, out_bits=out_bits, passes=self.passes, steps=self.steps, **extra)


def prepare_conv(weight: np.ndarray, scheme: np.ndarray, bias: np.ndarray, mult: np.ndarray,
                 shift: np.ndarray, cfg: HwConfig) -> ConvLayer:
    """Pass blocks of a conv (O, I, kh, kw) or fc (O, I) layer.

    Block of one pass (:func:`pass_block_words` words): a word of Fixed-8 pair flags; per
    result slot two words (the fields of ``SLOT_FIELDS``, then the original channel); then
    the weight rows, each :func:`row_words` words, low word first, in the order of
    :func:`pass_word_order` (a segment of every row for each of the engine's weight ports).
    """
    w = np.asarray(weight)
    if w.ndim == 2:
        w = w[:, :, None, None]
    plans = plan_passes(scheme, cfg)
    word, wpr = word_bits(cfg), row_words(cfg)
    words: list[int] = []
    steps = 0
    for plan in plans:
        words.append(sum(1 << k for k, f in enumerate(plan.fixed8) if f))
        for slot in plan.slots(bias, mult, shift):
            if slot is None:
                words += [0] * SLOT_WORDS
            else:
                words += pack_slot(channel=slot.channel, bias=slot.bias, mult=slot.mult,
                                   shift=slot.shift)
        rows = weight_rows(w, scheme, plan, cfg)
        steps = len(rows)
        flat = [(row >> (word * i)) & ((1 << word) - 1) for row in rows for i in range(wpr)]
        words += [flat[k] for k in pass_word_order(cfg, steps)]
    return ConvLayer(np.array(words, np.uint64), len(plans), steps, tuple(w.shape[2:]), cfg)
