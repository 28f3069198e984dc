"""The descriptor checks: the quantities the engine derives from a descriptor, and its verdicts."""

from __future__ import annotations

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..common import check_config, index_bits, stage
from ..config import NIBBLE_BITS, HwConfig
from ..descriptor import descriptor_layout
from ..interface.ddr import (
    pass_block_words,
    row_words,
    values_per_word,
    vector_words,
    word_bits,
    words_per_vector,
)
from ..interface.descriptor import (
    DESC_MAGIC,
    IN_BITS,
    MAX_KERNEL,
    MAX_PASSES,
    OUT_BITS,
    PIXEL_BITS,
    POOL_LEAD,
    POOL_TOP,
    Op,
    PostMode,
)
from ..window import window_layout

__all__ = ["CHECK_CYCLES", "DescriptorCheck"]

#: Cycles in CHECK: the registers derived from a descriptor settle (``DescriptorCheck``'s
#: pipeline of products and comparisons) before the descriptor is accepted or refused.
CHECK_CYCLES = 7


class DescriptorCheck(wiring.Component):
    """What the engine derives from its descriptor, and whether it may run.

    A pipeline of registers behind ``desc``, one product or comparison per stage, so that
    no control path runs through a product of descriptor fields. The outputs follow a new
    ``desc`` (with ``window_base`` and ``window_size`` stable) ``CHECK_CYCLES - 1`` cycles
    later, the last cycle of the engine's CHECK state; they stay stable while ``desc`` does.
    The verdicts are those of ``firmware.emu`` in the engine's order: ``shape_ok`` (else
    BAD_DESCRIPTOR), ``size_ok`` (LAYER_TOO_LARGE), ``aligned`` (MISALIGNED_ADDR),
    ``window_ok`` (ADDR_OUT_OF_WINDOW).

    Parameters
    ----------
    cfg : HwConfig
        The build; the buffer depths and limits bound the sizes.

    Members
    -------
    desc : In(descriptor_layout())
        The descriptor.
    window_base, window_size : In(axi_addr_width)
        The DDR window (``WINDOW_BASE``, ``WINDOW_SIZE``).
    window_limit : Out(axi_addr_width + 2)
        ``window_base + window_size`` (a cycle behind them).
    is_conv, is_fused, is_add, is_max, is_avg : Out(1)
        The op: a conv or a conv-add, a conv-add, an add, a max-pool, an average pool.
    chunks_in, chunks_out : Out(16)
        Channel chunks of ``V`` of the input and the output.
    in_pixels : Out(32)
        ``in_h * in_w``.
    in_vecs : Out(40)
        Act-buffer vectors of the input.
    row_stride : Out
        Vectors of an input row (``in_w * chunks_in``).
    wpv_in, wpv_in2, wpv_out : Out(8)
        Bus words per vector of the input, the second input and the output.
    pass_words : Out(32)
        Bus words of a pass block.
    in_words, in2_words, out_words : Out(48)
        Bus words of the input, the second input (an add's or a conv-add's) and the output
        (a pooled conv's: of the pooled band).
    out_last : Out
        The last output vector in the out buffer (``out_vecs - 1``).
    is_split : Out(1)
        The conv's input is split into nibbles (``split``).
    is_unroll : Out(1)
        The conv's input is a pixel map the engine unrolls (``unroll``,
        ``rtl.engine.unpack.Unroller``): ``in_words`` and ``wpv_in`` are the stored map's.
    is_pool, pool_top : Out(1)
        The conv's band is max-pooled in the write-back (``pool``); with a zero row above.
    pool_h, pool_w : Out
        The pooled band's rows and columns (``rtl.interface.descriptor.pooled_size``).
    out_row : Out
        Out-buffer vectors of a row of the output (``out_w * chunks_out``).
    in_end, in2_end, out_end : Out(axi_addr_width + 20)
        The byte ends of the maps.
    shape_ok, size_ok, aligned, window_ok : Out(1)
        The verdicts.
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        self._cfg = check_config(cfg, "Descriptor check")
        aw = cfg.axi_addr_width
        super().__init__({
            "desc": In(descriptor_layout()),
            "window_base": In(aw), "window_size": In(aw),
            "window_limit": Out(aw + 2),
            "is_conv": Out(1), "is_fused": Out(1), "is_add": Out(1), "is_max": Out(1),
            "is_avg": Out(1),
            "chunks_in": Out(16), "chunks_out": Out(16), "in_pixels": Out(32),
            "in_vecs": Out(40), "row_stride": Out(window_layout(cfg).members["row_stride"]),
            "wpv_in": Out(8), "wpv_in2": Out(8), "wpv_out": Out(8), "pass_words": Out(32),
            "in_words": Out(48), "in2_words": Out(48), "out_words": Out(48),
            "out_last": Out(index_bits(cfg.out_buf_depth + 1)),
            "is_split": Out(1), "is_unroll": Out(1), "is_pool": Out(1), "pool_top": Out(1),
            "pool_h": Out(window_layout(cfg).members["out_h"]),
            "pool_w": Out(window_layout(cfg).members["out_w"]),
            "out_row": Out(window_layout(cfg).members["row_stride"]),
            "in_end": Out(aw + 20), "in2_end": Out(aw + 20), "out_end": Out(aw + 20),
            "shape_ok": Out(1), "size_ok": Out(1), "aligned": Out(1), "window_ok": Out(1),
        })

    @property
    def cfg(self) -> HwConfig:
        return self._cfg

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg, d, v = self._cfg, self.desc, self._cfg.vec_len
        logv = index_bits(v) if v > 1 else 0
        aw = cfg.axi_addr_width

        def reg(expr, shape, name):
            return stage(m, expr, shape, name)

        def out(name, expr):
            sig = reg(expr, getattr(self, name).shape(), name)
            m.d.comb += getattr(self, name).eq(sig)
            return sig

        # Stage 1: the op's one-hots (a conv-add is a conv whose signed result gets the
        # residual add in the out buffer), chunk and pixel counts, words per vector.
        is_fused = out("is_fused", d.op == Op.CONV_ADD)
        is_conv = out("is_conv", (d.op == Op.CONV) | (d.op == Op.CONV_ADD))
        is_add = out("is_add", d.op == Op.ADD)
        reads2 = is_add | is_fused     # a second input map at in2_addr
        is_max = out("is_max", d.op == Op.MAXPOOL)
        is_avg = out("is_avg", d.op == Op.AVGPOOL)
        chunks_in = out("chunks_in", (d.in_c + v - 1) >> logv)
        chunks_out = out("chunks_out", (d.out_c + v - 1) >> logv)
        in_pixels = out("in_pixels", d.in_h * d.in_w)
        out_pixels = reg(d.out_h * d.out_w, 32, "out_pixels")
        out("is_split", d.split[0] if cfg.split_input else 0)
        # An unrolled pixel map (HwConfig.unroll_taps): T - 1 more pixels a row in DDR, each
        # in the words of tap_lanes channels.
        taps = cfg.unroll_taps if cfg.tap_lanes else 0
        is_unroll = out("is_unroll", (d.unroll == 1) if taps else 0)
        row_extra = reg(d.in_h * (taps - 1), 32, "row_extra") if taps else 0
        # A pooled band: its size, and the pixels the write-back writes.
        is_pool = out("is_pool", d.pool != 0)
        top = d.pool == POOL_TOP
        out("pool_top", top)
        pool_h = out("pool_h", (d.out_h + top) >> 1)
        pool_w = out("pool_w", (d.out_w + 1) >> 1)
        # (out_h + top >= 2 without the adder.)
        pool_ok = reg((d.pool == 0) | ((d.pool <= POOL_LEAD) & (d.op == Op.CONV)
                                       & (d.mode == PostMode.RELU)
                                       & ((d.out_h[1:] != 0) | ((d.out_h == 1) & top))),
                      1, "pool_ok")
        kk = reg(d.kernel_h * d.kernel_w, 16, "kernel_taps")

        def wpv(bits_sig, choices):
            # The widths exclude each other: an OR of each one's count, not a priority chain.
            counts = [Mux(bits_sig == b, words_per_vector(cfg, b), 0) for b in choices]
            return functools.reduce(operator.or_, counts)

        # A pixel map of at most V channels keeps only the words its channels fill
        # (``rtl.interface.ddr.vector_words``): ceil(in_c / per_word), per_word a power of 2.
        per_pixel_word = values_per_word(PIXEL_BITS, word_bits(cfg))
        dense = reg((d.in_c + per_pixel_word - 1) >> (per_pixel_word.bit_length() - 1),
                    len(d.in_c), "dense_words")
        wpv_in2 = out("wpv_in2", wpv(d.in2_bits, IN_BITS))
        wpv_out = out("wpv_out", wpv(d.out_bits, OUT_BITS))
        # The steps' weight rows, a product (a DSP48E1 or a few adders) that ends at a
        # register; the pass's words a stage later.
        pw_bits = (pass_block_words(cfg, 0) + cfg.max_pass_rows * row_words(cfg)).bit_length()
        step_words = reg(d.steps * row_words(cfg), 32, "step_words")
        # Stage 2.
        pass_words = out("pass_words", pass_block_words(cfg, 0) + step_words)
        # (wpv_in from the registered dense count and test: in_words reads it at stage 3.)
        wpv_in = out("wpv_in", Mux(
            d.unroll[0] & bool(taps), vector_words(cfg, PIXEL_BITS, max(cfg.tap_lanes, 1)),
            Mux(reg((d.in_bits == PIXEL_BITS) & (d.in_c <= v), 1, "dense_map"), dense,
                wpv(d.in_bits, IN_BITS))))
        in_vecs = out("in_vecs", in_pixels * chunks_in)
        read_vecs = (reg(Mux(is_unroll, in_pixels + row_extra, in_pixels * chunks_in), 40,
                         "read_vecs") if taps else in_vecs)
        out_vecs = reg(out_pixels * chunks_out, 40, "out_vecs")
        # The write-back's pixels and words come a stage later (its out_end one stage before
        # the window verdicts), from registered pooled sizes: no adder in front of a
        # multiplier.
        wb_pixels = reg(Mux(is_pool, pool_h * pool_w, out_pixels), 32, "wb_pixels")
        out("out_row", d.out_w * chunks_out)
        steps_calc = reg(kk * chunks_in, 24, "steps_calc")
        out("row_stride", d.in_w * chunks_in)
        # Stage 3.
        # Of a descriptor whose steps and passes are in range (else size_ok or shape_ok
        # refuses it first): narrow enough for one DSP48E1, no adder behind its product.
        weight_words = reg(d.passes[:MAX_PASSES.bit_length()] * pass_words[:pw_bits],
                           MAX_PASSES.bit_length() + pw_bits, "weight_words")
        in_words = out("in_words", read_vecs * wpv_in)
        in2_words = out("in2_words", Mux(is_fused, out_vecs, in_vecs) * wpv_in2)
        wb_vecs = reg(wb_pixels * chunks_out, 40, "wb_vecs")
        out("out_last", out_vecs - 1)
        # Stage 4: the byte ends of the maps (the write-back's words).
        in_end = out("in_end", d.in_addr + in_words * 8)
        in2_end = out("in2_end", d.in2_addr + in2_words * 8)
        out_words = out("out_words", wb_vecs * wpv_out)
        w_end = reg(d.weight_addr + weight_words * 8, aw + 20, "weight_end")
        # Stage 5: the write-back's byte end.
        out_end = out("out_end", d.out_addr + out_words * 8)

        base = self.window_base
        limit = out("window_limit", base + self.window_size)

        def inside_end(addr, end, words, name, *, late_end=False):
            # Each test a register of its own a stage before the verdict (the start's
            # comparison from stage 1 on): the verdict is an AND of registers and, for an
            # end that comes last (``late_end``: the write-back's), of its comparison.
            starts = reg(addr >= base, 1, f"{name}_start_ok")
            if late_end:
                return starts & reg(words != 0, 1, f"{name}_words_ok") & (end <= limit)
            return reg(starts & (end <= limit) & (words != 0), 1, f"{name}_ok")

        # Expected output size from the input size (stride 1 or 2).
        # The spans plus one and plus two, registered: (span >> 1) + 1 is (span + 2) >> 1, so
        # the expected size is a choice between registers, with no carry chain behind it.
        spans = [d.in_h + d.pad_top + d.pad_bottom - d.kernel_h,
                 d.in_w + d.pad_left + d.pad_right - d.kernel_w]
        plus1, plus2 = ([reg(x + k, (x + k).shape(), f"span{k}_{hw}")
                         for x, hw in zip(spans, "hw", strict=True)] for k in (1, 2))
        exp_h = Mux(d.stride == 2, plus2[0] >> 1, plus1[0])
        exp_w = Mux(d.stride == 2, plus2[1] >> 1, plus1[1])
        act, sgn = cfg.act_bits, cfg.act_bits + 1
        mode_bits = Mux(d.mode == PostMode.RELU, act, Mux(d.mode == PostMode.SIGNED, sgn, 32))

        nonzero = reg((d.in_h != 0) & (d.in_w != 0) & (d.in_c != 0) & (d.out_c != 0), 1,
                      "nonzero")
        half_h, half_w = d.kernel_h >> 1, d.kernel_w >> 1
        pads_ok = ((d.pad_top <= half_h) & (d.pad_bottom <= half_h) & (d.pad_left <= half_w)
                   & (d.pad_right <= half_w))
        # Three stages: the spans, the expected output size and the simple tests, then the
        # comparison (window_geom at stage 3, a stage before op_ok reads it).
        # The window fits the padded input: only read where the kernel is valid (kernel_ok,
        # at most MAX_KERNEL) and the pads are (pads_ok, at most half of it), so the sum
        # needs only their low bits and an input at least MAX_KERNEL + 1 tall always fits
        # (a short carry chain instead of 32-bit sums).
        kb = MAX_KERNEL.bit_length()

        def fits(size, pad_a, pad_b, kernel):
            return ((size > MAX_KERNEL)
                    | (size[:kb] + pad_a[:kb - 1] + pad_b[:kb - 1] >= kernel[:kb]))

        geom_ok = reg(((d.stride == 1) | (d.stride == 2)) & pads_ok
                      & fits(d.in_h, d.pad_top, d.pad_bottom, d.kernel_h)
                      & fits(d.in_w, d.pad_left, d.pad_right, d.kernel_w), 1, "geom_ok")
        exp_h_r = reg(exp_h, len(d.out_h) + 2, "exp_h")
        exp_w_r = reg(exp_w, len(d.out_w) + 2, "exp_w")
        # The comparisons end at registers in pieces of 12 bits (two LUT levels each), the
        # AND of the pieces is op_ok's to take: no long chain of equalities in one stage.
        pieces = []
        for field, exp, hw in ((d.out_h, exp_h_r, "h"), (d.out_w, exp_w_r, "w")):
            wide = Cat(field, Const(0, len(exp) - len(field)))
            for lo in range(0, len(exp), 12):
                pieces.append(reg(wide[lo:lo + 12] == exp[lo:lo + 12], 1, f"eq_{hw}{lo}"))
        window_geom = geom_ok
        for piece in pieces:
            window_geom = window_geom & piece
        kernel_ok = ((d.kernel_h >= 1) & (d.kernel_h <= MAX_KERNEL) & (d.kernel_w >= 1)
                     & (d.kernel_w <= MAX_KERNEL))
        # A conv reads act_bits maps, and the first layer's pixels: 8-bit, or on a split_input
        # build 4-bit nibbles (``split``: an even chunk count, low and high chunks in turn).
        if cfg.split_input:
            split_ok = (d.split == 0) | ((d.split == 1) & (d.op == Op.CONV)
                                         & (d.in_bits == NIBBLE_BITS) & ~chunks_in[0])
            pixels_ok = (d.in_bits == act) | (d.in_bits == NIBBLE_BITS)
        else:
            split_ok = d.split == 0
            pixels_ok = (d.in_bits == act) | (d.in_bits == PIXEL_BITS)
        # The verdicts' terms a stage each (the descriptor's own comparisons from stage 1,
        # the split test at 2, the steps' at 3), so that no op verdict is a deep AND of
        # comparisons of descriptor fields: a conv's, an add's, a max-pool's and an average
        # pool's then at stage 4, the op's at 5 (the windows' at 6).
        fused_ok = ((d.op != Op.CONV_ADD)
                    | ((d.mode <= PostMode.SIGNED)
                       & ((d.in2_bits == act) | (d.in2_bits == sgn))))
        conv_desc = reg(Cat(kernel_ok & (d.mode <= PostMode.LOGITS) & pixels_ok,
                            (d.passes != 0) & (d.passes <= MAX_PASSES) & fused_ok),
                        2, "conv_desc").all()
        conv_split = reg(split_ok, 1, "conv_split")
        bits_ok = reg(d.out_bits == mode_bits, 1, "bits_ok")
        steps_ok = reg(d.steps == steps_calc, 1, "steps_ok")
        same_map = reg((d.in_c == d.out_c) & (d.in_h == d.out_h) & (d.in_w == d.out_w), 1,
                       "same_map")
        same_c = reg(d.in_c == d.out_c, 1, "same_c")
        unsplit = reg(d.split == 0, 1, "unsplit")
        ins_ok = reg(((d.in_bits == act) | (d.in_bits == sgn))
                     & ((d.in2_bits == act) | (d.in2_bits == sgn)), 1, "ins_ok")
        acts_ok = reg((d.in_bits == act) & (d.out_bits == act), 1, "acts_ok")
        kernel_r = reg(kernel_ok, 1, "kernel_ok")
        add_desc = reg(d.mode <= PostMode.SIGNED, 1, "add_mode")
        avg_desc = reg((d.out_h == 1) & (d.out_w == 1), 1, "avg_size")
        magic_ok = reg(d.magic == DESC_MAGIC, 1, "magic_ok")
        # An unrolled map: a conv's 8-bit pixels, V channels in T taps, a k x 1 kernel over
        # whole rows.
        # (Two stages: the descriptor's comparisons, then their AND.)
        unroll_terms = reg(Cat(
            d.unroll == 0, (d.unroll == 1) & bool(taps),
            (d.op == Op.CONV) | (d.op == Op.CONV_ADD), d.in_c == v, d.in_bits == PIXEL_BITS,
            (d.kernel_w == 1) & (d.stride == 1), (d.pad_left == 0) & (d.pad_right == 0)),
            7, "unroll_terms")
        unroll_ok = reg(unroll_terms[0] | unroll_terms[1:].all(), 1, "unroll_ok")
        conv_ok = conv_desc & conv_split & window_geom & bits_ok & steps_ok
        add_ok = same_map & add_desc & bits_ok & ins_ok & unsplit
        max_ok = kernel_r & window_geom & same_c & acts_ok & unsplit
        avg_ok = same_c & avg_desc & acts_ok & unsplit
        op_ok = reg(Cat(conv_ok, add_ok, max_ok, avg_ok, magic_ok), 5, "op_ok")
        out("shape_ok", op_ok[4] & nonzero & pool_ok & unroll_ok & Mux(
            is_conv, op_ok[0], Mux(is_add, op_ok[1], Mux(is_max, op_ok[2],
                                                         Mux(is_avg, op_ok[3], 0)))))
        out("size_ok", (d.in_h <= cfg.max_spatial) & (d.in_w <= cfg.max_spatial)
            & (d.in_c <= cfg.max_channels) & (d.out_c <= cfg.max_channels)
            & (in_vecs <= cfg.act_buf_depth) & (out_vecs <= cfg.out_buf_depth)
            & (~is_conv | ((d.steps <= cfg.max_pass_rows)
                           & (d.steps * v <= cfg.max_reduction + v - 1))))
        out("aligned", (d.in_addr[:3] == 0) & (d.out_addr[:3] == 0)
            & (~is_conv | (d.weight_addr[:3] == 0)) & (~reads2 | (d.in2_addr[:3] == 0)))
        out("window_ok", inside_end(d.in_addr, in_end, in_words, "in")
            & inside_end(d.out_addr, out_end, out_words, "out", late_end=True)
            & (~is_conv | inside_end(d.weight_addr, w_end, weight_words, "weight"))
            & (~reads2 | inside_end(d.in2_addr, in2_end, in2_words, "in2")))
        return m
