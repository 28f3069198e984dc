"""The map reader: a feature map's bus words into act-buffer vectors (``rtl.interface.ddr``);
the unroller: neighbouring pixels of a row side by side (``HwConfig.unroll_taps``)."""

from __future__ import annotations

import functools
import operator

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..common import check_config, stage
from ..config import HwConfig
from ..interface.ddr import word_bits, words_per_vector
from ..interface.descriptor import IN_BITS, PIXEL_BITS
from ..vector_units import lane_bits

__all__ = ["MapReader", "Unroller", "vector_layout"]


def vector_layout(cfg: HwConfig) -> data.ArrayLayout:
    """An act-buffer vector: ``V`` lanes of ``lane_bits(cfg)`` bits, two's complement."""
    return data.ArrayLayout(unsigned(lane_bits(cfg)), cfg.vec_len)


class MapReader(wiring.Component):
    """Unpacks the bus words of a feature map into vectors of ``V`` lanes.

    A vector of ``b``-bit elements (``b`` in ``IN_BITS``) takes ``words`` words (the map's
    ``rtl.interface.ddr.vector_words``: ``words_per_vector(cfg, b)``, fewer for a pixel map),
    element ``i`` at bit ``(i mod per_word) * b`` (``rtl.interface.ddr.pack_values``); each
    lane is zero-extended to ``lane_bits(cfg)``, sign-extended when ``b`` is ``act_bits + 1``
    (a signed pre-add branch); the lanes past ``words`` words are zero.

    The vector leaves with its last word, in the same cycle (no register between ``i`` and
    ``o``): ``o.valid`` is ``i.valid`` on a vector's last word, which waits for ``o.ready``;
    the other words are always taken. ``o.payload`` holds while ``i`` does.

    Parameters
    ----------
    cfg : HwConfig
        The build: ``V``, the bus width, ``act_bits``.

    Members
    -------
    bits : In(8)
        The element width; compared in registers, so it is stable from two cycles before a
        map's first word to its last.
    words : In(8)
        Bus words of a vector, 1 to ``words_per_vector(cfg, bits)``; stable as ``bits`` is.
    start : In(1)
        The next word taken is a vector's first (a new map); registered, so no word may come
        in the cycle after it.
    i : In(stream.Signature(axi_data_width))
        The map's bus words.
    o : Out(stream.Signature(vector_layout(cfg)))
        Its vectors.
    whole : Out(1)
        The words taken since ``start`` are whole vectors (the next is a vector's first).
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        self._cfg = check_config(cfg, "Map reader")
        super().__init__({
            "bits": In(8),
            "words": In(8),
            "start": In(1),
            "i": In(stream.Signature(word_bits(cfg))),
            "o": Out(stream.Signature(vector_layout(cfg))),
            "whole": Out(1),
        })

    @property
    def cfg(self) -> HwConfig:
        return self._cfg

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg, v = self._cfg, self._cfg.vec_len
        word, sgn = word_bits(cfg), cfg.act_bits + 1
        wpv_max = max(words_per_vector(cfg, bits) for bits in IN_BITS)
        # The element width's comparisons, the one-hot of a vector's last word and the words
        # a vector fills are registers.
        is_bits = {bits: stage(m, self.bits == bits, 1, "is_bits") for bits in IN_BITS}
        last_hot = stage(m, Cat(self.words == j + 1 for j in range(wpv_max)), wpv_max,
                         "last_hot")
        filled = stage(m, Cat(self.words > j for j in range(wpv_max)), wpv_max, "filled")

        k = Signal(wpv_max)            # the word within the vector, one-hot
        k_last = Signal()              # k is the vector's last word
        acc = Signal(vector_layout(cfg))
        vec = Signal(vector_layout(cfg))
        # Each lane an AND-OR of its sources (the widths are one-hot): this word's field when
        # the lane is in it, zero when a pixel map's vector ends before the lane's word, else
        # what the lane holds; a shallow tree, not a chain of choices, in front of ``acc``.
        for lane in range(v):
            sources, taken = [], []
            for bits in IN_BITS:
                per = word // bits
                j = lane // per
                field = self.i.payload[(lane % per) * bits:(lane % per + 1) * bits]
                sel = is_bits[bits] & k[j]
                if bits == PIXEL_BITS and j > 0:
                    # A lane of a word past a pixel map's vector: zero.
                    taken.append(is_bits[bits] & ~filled[j])
                    sel = sel & filled[j]
                taken.append(sel)
                sources.append(Mux(sel, field.as_signed() if bits == sgn else field, 0))
            keep = ~functools.reduce(operator.or_, taken)
            m.d.comb += vec[lane].eq(functools.reduce(operator.or_, sources)
                                     | Mux(keep, acc[lane], 0))

        m.d.comb += [self.whole.eq(k[0]), self.o.payload.eq(vec),
                     self.o.valid.eq(self.i.valid & k_last),
                     self.i.ready.eq(~k_last | self.o.ready)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [acc.eq(vec), k.eq(k << 1), k_last.eq((k & (last_hot >> 1)) != 0)]
            with m.If(k_last):
                m.d.sync += [k.eq(1), k_last.eq(last_hot[0])]
        # ``start`` takes effect a cycle late (a register: no path from the engine's command
        # logic into the word counter); a map's first word comes from the DMA reader several
        # cycles after its command at the earliest.
        with m.If(stage(m, self.start, 1, "start_r")):
            m.d.sync += [k.eq(1), k_last.eq(last_hot[0])]
        return m


class Unroller(wiring.Component):
    """Puts ``T = unroll_taps`` neighbouring pixels of a row side by side in one vector.

    With ``on``, the vectors on ``i`` are the pixels of a map of ``L = tap_lanes`` channels,
    row after row of ``row + T - 1`` pixels; each pixel ``x >= T - 1`` of a row leaves on
    ``o`` as the vector ``U`` whose lanes ``b L .. b L + L - 1`` hold pixel ``x - T + 1 + b``'s
    lanes ``0 .. L - 1`` (``rtl.interface.stem.unroll_columns``): ``row`` vectors a row, the
    first ``T - 1`` pixels of a row only fill the window. Without ``on``, ``i`` passes as it
    is. ``o`` leaves in the cycle ``i`` comes (as from ``MapReader``): its lanes are a
    multiplexer of ``i`` and the ``T - 1`` pixels before, which are registers.

    Members
    -------
    on : In(1)
        Unroll (stable from two cycles before a map's first vector to its last).
    row : In(16)
        Vectors ``o`` takes a row (the unrolled map's width); stable as ``on`` is.
    start : In(1)
        The next vector is a row's first (a new map); registered, as ``MapReader.start``.
    i : In(stream.Signature(vector_layout(cfg)))
    o : Out(stream.Signature(vector_layout(cfg)))
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        self._cfg = check_config(cfg, "Unroller")
        if not cfg.tap_lanes:
            raise ValueError(f"config {cfg.name!r} builds no unroller (HwConfig.unroll_taps 0, "
                             f"or a split_input build)")
        super().__init__({
            "on": In(1), "row": In(16), "start": In(1),
            "i": In(stream.Signature(vector_layout(cfg))),
            "o": Out(stream.Signature(vector_layout(cfg))),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self._cfg
        taps, lanes = cfg.unroll_taps, cfg.tap_lanes
        lane = unsigned(lane_bits(cfg))
        # The T - 1 pixels before the one on ``i`` (the oldest first), their first L lanes.
        before = [Signal(data.ArrayLayout(lane, lanes), name=f"before{b}")
                  for b in range(taps - 1)]
        col = Signal(range(cfg.max_spatial + taps))   # the pixel on ``i`` within its row
        full = Signal()                               # col >= T - 1
        last_col = stage(m, self.row + (taps - 2), 17, "last_col")
        on = stage(m, self.on, 1, "on_r")
        unrolled = Signal(vector_layout(cfg))
        for j in range(cfg.vec_len):
            b, c = divmod(j, lanes)
            m.d.comb += unrolled[j].eq(self.i.payload[c] if b == taps - 1 else before[b][c])
        m.d.comb += [self.o.payload.eq(Mux(on, unrolled, self.i.payload)),
                     self.o.valid.eq(self.i.valid & (~on | full)),
                     self.i.ready.eq(self.o.ready)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [before[b].eq(before[b + 1]) for b in range(taps - 2)]
            m.d.sync += before[-1].eq(self.i.payload.as_value()[:len(before[-1].as_value())])
            with m.If(col == last_col):
                m.d.sync += [col.eq(0), full.eq(0)]
            with m.Else():
                m.d.sync += col.eq(col + 1)
                with m.If(col == taps - 2):
                    m.d.sync += full.eq(1)
        with m.If(stage(m, self.start, 1, "start_r")):
            m.d.sync += [col.eq(0), full.eq(0)]
        return m
