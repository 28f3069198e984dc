"""The DSP array: Fixed-4 filters up to four to a DSP48E1 (packed lanes), Fixed-8 on lane pairs."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .common import (
    act_layout,
    check_config,
    delay,
    register,
    result_layout,
    skid_output,
    tree_depth,
    tree_level,
)
from .config import DSP_A_BITS, LANE_ABS_MAX, LANE_BITS, NIBBLE_BITS, HwConfig

__all__ = ["DSP_B_BITS", "DSP_STAGES", "DspArray", "dsp_input_layout", "dsp_latency",
           "lane_offsets"]

#: Signed width of the DSP48E1's port B (A and D: ``rtl.config.DSP_A_BITS``).
DSP_B_BITS = 18
#: Pipeline registers of each DSP48E1: A/D/B1, AD/B2, M, P.
DSP_STAGES = 4
#: Low bits of every lane product recomputed in LUTs (the "canary") to recover the borrows.
CANARY_BITS = 2


def lane_offsets(cfg: HwConfig) -> tuple[int, ...]:
    """Bit offsets of the ``dsp_pack`` lanes in a DSP48E1's packed operand: ``k * f``."""
    return tuple(k * cfg.dsp_lane_field for k in range(cfg.dsp_pack))


def _has_fixed8(cfg: HwConfig) -> bool:
    return "fixed8" in cfg.weight_formats


def dsp_input_layout(cfg: HwConfig) -> data.StructLayout:
    """Input payload of :class:`DspArray`.

    ``act``: the ``vec_len`` unsigned activations of this cycle (the same field as the PoT
    array's); ``weight[r][c]``: the signed 4-bit weight of lane ``r`` for activation ``c``;
    ``fixed8[k]`` (only if the config supports Fixed-8): lanes ``2k`` and ``2k + 1`` form one
    Fixed-8 filter whose weight ``w`` arrives as ``weight[2k][c] = w & 15`` (the low nibble's
    bits) and ``weight[2k+1][c] = w >> 4``; it must stay the same from ``first`` to ``last``;
    ``first``/``last``: this vector starts/ends a dot product; ``hi`` (only if
    ``cfg.split_input``): this vector holds high nibbles of first-layer pixels, so its products
    count 16 times (it may change from vector to vector of a dot product).
    """
    fields: dict[str, object] = {
        "act": act_layout(cfg),
        "weight": data.ArrayLayout(data.ArrayLayout(signed(LANE_BITS), cfg.vec_len),
                                   cfg.dsp_rows),
    }
    if _has_fixed8(cfg):
        fields["fixed8"] = data.ArrayLayout(unsigned(1), cfg.dsp_rows // 2)
    fields["first"] = unsigned(1)
    fields["last"] = unsigned(1)
    if cfg.split_input:
        fields["hi"] = unsigned(1)
    return data.StructLayout(fields)


def dsp_latency(cfg: HwConfig) -> int:
    """Cycles from accepting a ``last`` vector to its result on ``o`` (no stalls)."""
    return DSP_STAGES + tree_depth(cfg.dsp_cols) + 2


def _groups(cfg: HwConfig) -> list[list[int]]:
    """Lanes of each DSP48E1 row: ``dsp_pack`` consecutive lanes (the last row may hold fewer)."""
    n = cfg.dsp_pack
    return [list(range(g, min(g + n, cfg.dsp_rows))) for g in range(0, cfg.dsp_rows, n)]


class DspArray(wiring.Component):
    """``dsp_rows`` fixed-point lanes times ``dsp_cols`` activations per cycle on DSP48E1s.

    Lanes are packed ``n = cfg.dsp_pack`` to a DSP48E1 per column (lanes ``g*n .. g*n+n-1``
    form DSP row ``g``), lane ``i`` of a DSP at bit ``o_i = i * f`` (``f = cfg.dsp_lane_field``).
    Each DSP48E1 computes ``P = a * (D - S)`` with its pre-adder: ``D`` holds the lanes' low
    four weight bits at ``o_i``, ``S`` their sign bits at ``o_i + 4``, so ``D - S = sum_i
    w_i * 2**o_i`` with no fabric adder; the activation ``a`` is on port B. All four DSP48E1
    pipeline registers are used (A/D/B, AD, M, P). The lanes are then split out of ``P`` in
    fabric: field ``i`` holds ``p_i + q_{i-1}`` modulo ``2**f`` where ``q_{i-1}`` in [-2, 1] is
    the borrow from the lanes below; ``q_i`` is recovered from the two lowest bits of field
    ``i + 1`` and the same two bits of ``a * w_{i+1}`` computed in a LUT (the canary). Each lane
    then sums ``Cat(field_i, q_i)`` over the columns in a pipelined adder tree, subtracts the
    sum of ``q_{i-1}``, and accumulates from ``first`` to ``last`` in ``cfg.acc_bits`` bits.
    ``docs/arrays.md`` gives the width argument. ``ceil(dsp_rows / n) * dsp_cols`` DSP48E1 do
    all the multiplications.

    Fixed-8 mode (``fixed8[k]`` set): with ``lo`` the low nibble read as signed and ``hi`` the
    high nibble, ``w = lo + 16 * (hi + lo[3])``; lane ``2k`` multiplies by ``lo`` and lane
    ``2k + 1`` by ``hi + lo[3]`` (in [-8, 8], hence 5-bit lanes), and lane ``2k`` accumulates
    ``sum_lo + 16 * sum_hi`` while lane ``2k + 1`` outputs 0. A Fixed-8 filter thus runs at
    full rate on the two lanes that could hold two Fixed-4 filters.

    Split input (``cfg.split_input``): the activations are ``act_bits`` wide (a pixel's nibble
    at most 15, so four lanes fit a DSP48E1) and a vector flagged ``hi`` counts 16 times: the
    lane-total registers take its totals shifted left by four (one 2:1 multiplexer per bit),
    so the accumulators and the Fixed-8 combination add ``16 *`` its products unchanged.

    Timing: the result of a dot product whose ``last`` vector is accepted in cycle ``t`` is
    valid on ``o`` in cycle ``t + latency`` (``latency = 6 + ceil(log2(dsp_cols))``) when ``o``
    is not stalled. Backpressure stalls the whole pipeline when a result arrives
    while ``o`` still holds an untaken one: ``i.ready`` and every pipeline clock enable are
    high while the two-entry output buffer (:func:`~rtl.common.skid_output`) has its second
    entry free (the enables from one register, ``i.ready`` from the buffer's own flag, of few
    loads), so without backpressure one vector is accepted every cycle.

    Parameters
    ----------
    cfg : HwConfig
        Sizes (``dsp_rows``, ``dsp_cols``, ``dsp_pack``), activation widths, ``acc_bits``,
        weight formats.

    Members
    -------
    i : In(stream.Signature(dsp_input_layout(cfg)))
        Activation vector, lane weights, Fixed-8 pair modes, first/last flags (and ``hi``
        with split_input).
    o : Out(stream.Signature(ArrayLayout(signed(acc_bits), dsp_rows)))
        One dot product per lane, once per ``last`` vector.
    ready_next : Out(1)
        The value ``i.ready`` takes in the next cycle (a user's register copy of it is then
        exact).

    Raises
    ------
    TypeError
        If ``cfg`` is not a :class:`HwConfig`.

    Every ``HwConfig`` can be built: it refuses more lanes per DSP48E1 than its activation width
    allows (``HwConfig.dsp_max_pack``) when it is made.
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        cfg = check_config(cfg, "DspArray")
        self._cfg = cfg
        super().__init__({
            "i": In(stream.Signature(dsp_input_layout(cfg))),
            "o": Out(stream.Signature(result_layout(cfg, cfg.dsp_rows))),
            "ready_next": Out(1),
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
    def offsets(self) -> tuple[int, ...]:
        """Bit offsets of the lanes in each DSP48E1's packed operand."""
        return lane_offsets(self._cfg)

    @property
    def dsp_count(self) -> int:
        """Multipliers (DSP48E1) of the array: one per DSP row (``dsp_pack`` lanes) and column."""
        return len(_groups(self._cfg)) * self.cols

    @property
    def latency(self) -> int:
        """Cycles from accepting a ``last`` vector to its result on ``o`` (no stalls)."""
        return dsp_latency(self._cfg)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self._cfg
        cols, acc_bits = self.cols, cfg.acc_bits
        f, offs = cfg.dsp_lane_field, self.offsets
        has8 = _has_fixed8(cfg)
        pairs = cfg.dsp_rows // 2 if has8 else 0
        a_max = cfg.max_array_input  # what the multipliers see (a pixel's nibble if split)
        en = Signal()  # every pipeline register moves together (a register: see skid_output)
        take = self.i.valid & en
        pay = self.i.payload

        depth = tree_depth(cols)
        stages = DSP_STAGES + depth + 1  # DSP pipeline, tree levels, lane totals
        valid = delay(m, en, take, stages, "valid")
        first = delay(m, en, pay.first, stages, "first")
        last = delay(m, en, pay.last, stages, "last")
        modes = [delay(m, en, pay.fixed8[k], stages, f"fixed8_p{k}") for k in range(pairs)]
        # ``hi`` (split_input only) reaches the lane-total stage, one stage before the
        # accumulators, where it shifts the lane totals by four.
        hi = delay(m, en, pay.hi, stages - 1, "hi") if cfg.split_input else None

        def data_reg(value: Value, name: str) -> Signal:
            return register(m, en, value, name, reset_less=True)

        def lane_weight(lane: int, c: int) -> Value:
            """The 5-bit signed value lane ``lane`` multiplies activation ``c`` by."""
            w = pay.weight[lane][c]
            w5 = Signal(signed(LANE_BITS + 1), name=f"w_l{lane}_c{c}")
            if has8 and lane % 2 == 1 and lane // 2 < pairs:
                carry = pay.weight[lane - 1][c][LANE_BITS - 1] & pay.fixed8[lane // 2]
                m.d.comb += w5.eq(w + carry)
            else:
                m.d.comb += w5.eq(w)
            return w5

        # The borrows need the two low bits of each activation at the P stage.
        a_low = [delay(m, en, pay.act[c][:CANARY_BITS], DSP_STAGES, f"alow_c{c}",
                       reset_less=True) for c in range(cols)]
        # Lane values (p_i + q_{i-1}, at most 8 * a_max + 2 in magnitude) fit f + 2 signed bits.
        lane_vals: dict[int, list[Value]] = {}
        lane_borrows: dict[int, list[Value]] = {}
        for g, lanes in enumerate(_groups(cfg)):
            n = len(lanes)
            w_max = LANE_ABS_MAX * sum(1 << o for o in offs[:n])
            p_bits = (a_max * w_max).bit_length() + 1
            for j in lanes:
                lane_vals[j], lane_borrows[j] = [], []
            for c in range(cols):
                d_bits: list[Value] = [Const(0, 1)] * DSP_A_BITS
                s_bits: list[Value] = [Const(0, 1)] * DSP_A_BITS
                w_low = []
                for i, j in enumerate(lanes):
                    w5 = lane_weight(j, c)
                    for b in range(LANE_BITS):
                        d_bits[offs[i] + b] = w5[b]
                    s_bits[offs[i] + LANE_BITS] = w5[LANE_BITS]
                    w_low.append(delay(m, en, w5[:CANARY_BITS], DSP_STAGES, f"wlow_l{j}_c{c}",
                                       reset_less=True))
                # DSP48E1 row g, column c: D, A (= S) and B registers, pre-adder (AD) and second
                # B register, multiplier (M) and output (P) registers.
                d_reg = data_reg(Cat(*d_bits), f"d_g{g}_c{c}")
                s_reg = data_reg(Cat(*s_bits), f"s_g{g}_c{c}")
                b_reg = data_reg(pay.act[c], f"b_g{g}_c{c}")
                ad_reg = data_reg((d_reg - s_reg)[:DSP_A_BITS].as_signed(), f"ad_g{g}_c{c}")
                b2_reg = data_reg(b_reg, f"b2_g{g}_c{c}")
                m_reg = data_reg((ad_reg * b2_reg)[:p_bits].as_signed(), f"m_g{g}_c{c}")
                p = data_reg(m_reg, f"p_g{g}_c{c}")
                # Split: q[i] is the borrow lane i passes to lane i + 1.
                q: list[Value] = []
                for i in range(1, n):
                    low = p[offs[i]:offs[i] + CANARY_BITS]
                    a0, a1 = a_low[c][0], a_low[c][1]
                    w0, w1 = w_low[i][0], w_low[i][1]
                    c0 = a0 & w0
                    c1 = (a1 & w0) ^ (a0 & w1)
                    d0 = low[0] ^ c0
                    d1 = low[1] ^ c1 ^ (~low[0] & c0)
                    q.append(Cat(d0, d1).as_signed())
                for i, j in enumerate(lanes):
                    if i < n - 1:
                        val = Cat(p[offs[i]:offs[i + 1]], q[i]).as_signed()
                    else:
                        top = min(p_bits, offs[i] + f + 2)
                        val = p[offs[i]:top].as_signed()
                    lane_vals[j].append(val)
                    if i > 0:
                        lane_borrows[j].append(q[i - 1])

        def reduce(terms: list[Value], name: str) -> Value:
            level = 0
            while len(terms) > 1:
                terms, _ = tree_level(terms, [])
                terms = [data_reg(t, f"{name}_l{level}_{k}") for k, t in enumerate(terms)]
                level += 1
            return terms[0]

        # Lane totals. For a ``hi`` vector (split_input) the lane total register takes the
        # total times 16, one 2:1 multiplexer per bit: the accumulators, and a Fixed-8 pair's
        # ``lo + 16 * hi`` combination, then add 16 times the vector's products unchanged.
        bound = LANE_ABS_MAX * a_max * cols
        total_bits = bound.bit_length() + 1
        totals: list[Signal] = []
        for j in range(cfg.dsp_rows):
            vsum = reduce([Value.cast(v).as_signed() for v in lane_vals[j]], f"vsum_l{j}")
            if lane_borrows[j]:
                total = vsum - reduce(lane_borrows[j], f"qsum_l{j}")
            else:
                total = vsum
            total = total[:total_bits].as_signed()
            if hi is not None:
                total = Mux(hi, Cat(Const(0, NIBBLE_BITS), total).as_signed(), total)
            totals.append(data_reg(total, f"lane_l{j}"))

        acc = [Signal(signed(acc_bits), name=f"acc_l{j}") for j in range(cfg.dsp_rows)]
        result = Signal(self.o.payload.shape())
        for j in range(cfg.dsp_rows):
            base = Mux(first, 0, acc[j])
            if j // 2 < pairs and j % 2 == 0:
                nxt = base + totals[j] + Mux(modes[j // 2], totals[j + 1] << LANE_BITS, 0)
            elif j // 2 < pairs:
                nxt = base + Mux(modes[j // 2], 0, totals[j])
            else:
                nxt = base + totals[j]
            nxt = nxt[:acc_bits]
            m.d.comb += result[j].eq(nxt)
            with m.If(en & valid):
                m.d.sync += acc[j].eq(nxt)
        m.d.comb += en.eq(skid_output(m, self.o, valid & last, result, ready=self.i.ready,
                                       ready_next=self.ready_next))
        return m
