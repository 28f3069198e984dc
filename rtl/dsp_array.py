"""The DSP array: Fixed-4 filters two to a DSP48E1 (packed products), Fixed-8 filters per pair."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .common import (
    act_layout,
    act_width,
    check_config,
    delay,
    register,
    result_layout,
    tree_depth,
    tree_level,
)
from .config import HwConfig

__all__ = ["DSP_A_BITS", "DSP_B_BITS", "DspArray", "dsp_input_layout", "dsp_latency",
           "pack_shift"]

#: Signed widths of the DSP48E1 multiplier ports (A: 25 bits, B: 18 bits).
DSP_A_BITS = 25
DSP_B_BITS = 18
#: Width of one lane weight (a Fixed-4 value, or one nibble of a Fixed-8 weight).
LANE_BITS = 4
_LANE_MIN, _LANE_MAX = -(1 << (LANE_BITS - 1)), (1 << (LANE_BITS - 1)) - 1


def pack_shift(cfg: HwConfig) -> int:
    """Bit position ``S`` of the high weight in the packed DSP operand ``w_hi * 2**S + w_lo``.

    Products are summed over the ``dsp_cols`` columns before the two fields are split, so the
    low field's sum ``L = sum_c a_c * w_lo,c`` must fit ``S`` signed bits:
    ``-2**(S-1) <= -8 * a_max * cols`` and ``7 * a_max * cols <= 2**(S-1) - 1``.
    """
    worst = -_LANE_MIN * cfg.max_activation * cfg.dsp_cols
    return (worst - 1).bit_length() + 1


def _pairs(cfg: HwConfig) -> int:
    return cfg.dsp_rows // 2


def _has_fixed8(cfg: HwConfig) -> bool:
    return "fixed8" in cfg.weight_formats


def dsp_input_layout(cfg: HwConfig) -> data.StructLayout:
    """Input payload of :class:`DspArray`.

    ``act``: the ``vec_len`` unsigned activations of this cycle (the same field as the PoT
    array's); ``weight[r][c]``: the signed 4-bit weight of lane ``r`` for activation ``c``;
    ``fixed8[k]`` (only if the config supports Fixed-8): lanes ``2k`` and ``2k + 1`` form one
    Fixed-8 filter whose weight ``w`` arrives as ``weight[2k][c] = w & 15`` (the low nibble's
    bits) and ``weight[2k+1][c] = w >> 4``; it must stay the same from ``first`` to ``last``;
    ``first``/``last``: this vector starts/ends a dot product.
    """
    fields: dict[str, object] = {
        "act": act_layout(cfg),
        "weight": data.ArrayLayout(data.ArrayLayout(signed(LANE_BITS), cfg.vec_len),
                                   cfg.dsp_rows),
    }
    if _has_fixed8(cfg):
        fields["fixed8"] = data.ArrayLayout(unsigned(1), _pairs(cfg))
    fields["first"] = unsigned(1)
    fields["last"] = unsigned(1)
    return data.StructLayout(fields)


def dsp_latency(cfg: HwConfig) -> int:
    """Cycles from accepting a ``last`` vector to its result on ``o`` (no stalls)."""
    return 3 + tree_depth(cfg.dsp_cols)


class DspArray(wiring.Component):
    """``dsp_rows`` fixed-point lanes times ``dsp_cols`` activations per cycle on DSP48E1s.

    Lanes ``2k`` (low) and ``2k + 1`` (high) share one DSP48E1 per column: the multiplier
    computes ``a * (w_hi * 2**S + w_lo)`` for the unsigned activation ``a`` (port B) and the
    packed weight (port A, ``S + 5 <= 25`` bits, ``S = pack_shift(cfg)``). The packed products
    of a DSP row are summed over the columns by a pipelined adder tree in fabric, then split:
    the low field ``L`` is the sign-extended low ``S`` bits, the high field is the bits above
    plus bit ``S - 1`` (the borrow the negative ``L`` took). Each lane accumulates its own field
    from ``first`` to ``last`` in ``cfg.acc_bits`` bits. So ``dsp_rows * dsp_cols / 2`` DSP48E1
    do all the multiplications; everything else is fabric.

    Fixed-8 mode (``fixed8[k]`` set): the pair's DSPs multiply by the whole 8-bit weight and
    lane ``2k`` accumulates the full product sum; lane ``2k + 1`` outputs 0. A Fixed-8 filter
    thus runs at full rate but takes the two lanes (one DSP per column) that could hold two
    Fixed-4 filters: half the filter throughput of Fixed-4.

    Timing: the result of a dot product whose ``last`` vector is accepted in cycle ``t`` is
    valid on ``o`` in cycle ``t + latency`` (``latency = 3 + ceil(log2(dsp_cols))``) when ``o``
    is not stalled. Backpressure stalls the whole pipeline: ``i.ready`` is
    ``~o.valid | o.ready``, so without backpressure one vector is accepted every cycle.

    Parameters
    ----------
    cfg : HwConfig
        Sizes (``dsp_rows``, ``dsp_cols``), activation widths, ``acc_bits``, weight formats.

    Members
    -------
    i : In(stream.Signature(dsp_input_layout(cfg)))
        Activation vector, lane weights, Fixed-8 pair modes, first/last flags.
    o : Out(stream.Signature(ArrayLayout(signed(acc_bits), dsp_rows)))
        One dot product per lane, once per ``last`` vector.

    Raises
    ------
    TypeError
        If ``cfg`` is not a :class:`HwConfig`.
    ValueError
        If the configuration has no DSP rows, is not packed two lanes per DSP48E1 (with a
        Fixed-8 filter on two lanes), or its packed operands exceed the DSP48E1 ports.
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        cfg = check_config(cfg, "DspArray")
        if cfg.dsp_rows == 0:
            raise ValueError(f"DspArray needs HwConfig.dsp_rows > 0, not {cfg.dsp_rows!r}")
        if cfg.dsp_pack != 2:
            raise ValueError(
                f"DspArray packs two 4-bit lanes per DSP48E1; HwConfig.dsp_pack must be 2, "
                f"not {cfg.dsp_pack!r}")
        if _has_fixed8(cfg) and cfg.fixed8_lanes != 2:
            raise ValueError(
                f"DspArray runs a Fixed-8 filter on the two lanes of one DSP48E1; "
                f"HwConfig.fixed8_lanes must be 2, not {cfg.fixed8_lanes!r}")
        shift = pack_shift(cfg)
        if shift + 5 > DSP_A_BITS:
            raise ValueError(
                f"DspArray packed weight needs {shift + 5} bits for dsp_cols={cfg.dsp_cols}, "
                f"more than the DSP48E1's {DSP_A_BITS}-bit A port; lower dsp_cols")
        if act_width(cfg) + 1 > DSP_B_BITS:
            raise ValueError(
                f"DspArray activations of {act_width(cfg)} bits do not fit the DSP48E1's "
                f"{DSP_B_BITS}-bit signed B port")
        self._cfg = cfg
        self._shift = shift
        super().__init__({
            "i": In(stream.Signature(dsp_input_layout(cfg))),
            "o": Out(stream.Signature(result_layout(cfg, cfg.dsp_rows))),
        })

    @property
    def cfg(self) -> HwConfig:
        return self._cfg

    @property
    def rows(self) -> int:
        return self._cfg.dsp_rows

    @property
    def cols(self) -> int:
        return self._cfg.dsp_cols

    @property
    def shift(self) -> int:
        """``S``: the high lane's weight sits at bit ``S`` of the packed DSP operand."""
        return self._shift

    @property
    def dsp_count(self) -> int:
        """Multipliers (DSP48E1) of the array: one per lane pair and column."""
        return _pairs(self._cfg) * self.cols

    @property
    def latency(self) -> int:
        """Cycles from accepting a ``last`` vector to its result on ``o`` (no stalls)."""
        return dsp_latency(self._cfg)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self._cfg
        cols, acc_bits, shift = self.cols, cfg.acc_bits, self._shift
        pairs = _pairs(cfg)
        has8 = _has_fixed8(cfg)
        en = Signal()  # every pipeline register moves together unless the output is stalled
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        take = self.i.valid & en

        stages = 2 + tree_depth(cols)  # operand registers, product registers, tree levels
        valid = delay(m, en, take, stages, "valid")
        first = delay(m, en, self.i.payload.first, stages, "first")
        last = delay(m, en, self.i.payload.last, stages, "last")

        # Operand registers (DSP48E1 A/B registers); activations are shared by every pair.
        acts = [register(m, en, self.i.payload.act[c], f"act_c{c}") for c in range(cols)]
        w_bits = shift + 5
        # |a * W| <= a_max * 2**(shift + 4) < 2**(shift + 12)
        p_bits = shift + 4 + act_width(cfg) + 1
        lo_acc = [Signal(signed(acc_bits), name=f"acc_lo_p{k}") for k in range(pairs)]
        hi_acc = [Signal(signed(acc_bits), name=f"acc_hi_p{k}") for k in range(pairs)]
        for k in range(pairs):
            mode = self.i.payload.fixed8[k] if has8 else Value.cast(0)
            products: list[Value] = []
            for c in range(cols):
                lo = self.i.payload.weight[2 * k][c]
                hi = self.i.payload.weight[2 * k + 1][c]
                # w_hi * 2**S + w_lo without an adder: the low field's sign extension is the
                # borrow n_lo, taken from the high field (w_hi - n_lo fits 5 bits: -9..7).
                n_lo = lo[LANE_BITS - 1] & ~mode
                packed4 = Cat(lo[:LANE_BITS], n_lo.replicate(shift - LANE_BITS),
                              (hi - n_lo)[:5]).as_signed()
                # Fixed-8 mode: the nibbles are the bits of one signed 8-bit weight.
                packed8 = Cat(lo[:LANE_BITS], hi[:LANE_BITS]).as_signed()
                operand = Signal(signed(w_bits), name=f"w_p{k}_c{c}")
                with m.If(en):
                    m.d.sync += operand.eq(Mux(mode, packed8, packed4))
                product = Signal(signed(p_bits), name=f"prod_p{k}_c{c}")
                with m.If(en):
                    m.d.sync += product.eq(operand * acts[c])
                products.append(product)
            terms = products
            level = 0
            while len(terms) > 1:
                terms, _ = tree_level(terms, [])
                terms = [register(m, en, t, f"sum_p{k}_l{level}_{j}")
                         for j, t in enumerate(terms)]
                level += 1
            total = terms[0]
            mode_d = delay(m, en, mode, stages, f"fixed8_p{k}")
            low = total[:shift].as_signed()
            high = total[shift:].as_signed()
            borrow = total[shift - 1]
            with m.If(en & valid):
                lo_next = (Mux(first, 0, lo_acc[k]) + Mux(mode_d, total, low))[:acc_bits]
                hi_next = (Mux(first, 0, hi_acc[k]) + Mux(mode_d, 0, high)
                           + (borrow & ~mode_d))[:acc_bits]
                m.d.sync += [lo_acc[k].eq(lo_next), hi_acc[k].eq(hi_next)]
                with m.If(last):
                    m.d.sync += [self.o.payload[2 * k].eq(lo_next),
                                 self.o.payload[2 * k + 1].eq(hi_next)]

        with m.If(en):
            m.d.sync += self.o.valid.eq(valid & last)
        return m
