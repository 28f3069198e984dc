"""The PoT array: PoT-4 filters as shift-and-negate MACs in LUT fabric, with no multiplier."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .common import (
    act_layout,
    act_width,
    check_config,
    delay,
    register,
    result_layout,
    skid_output,
    tree_depth,
    tree_level,
)
from .config import HwConfig

__all__ = ["PotArray", "pot_input_layout", "pot_latency"]

#: Width of one PoT-4 weight code (bit 3 sign, bits 2..0 exponent code; see quant.contract).
POT_CODE_BITS = 4


def pot_input_layout(cfg: HwConfig) -> data.StructLayout:
    """Input payload of :class:`PotArray`.

    ``act``: the ``vec_len`` unsigned activations of this cycle (shared by every filter);
    ``weight[r][c]``: the PoT-4 code of filter ``r`` for activation ``c``;
    ``first``/``last``: this vector starts/ends a dot product (both set for a one-vector one).
    """
    return data.StructLayout({
        "act": act_layout(cfg),
        "weight": data.ArrayLayout(data.ArrayLayout(unsigned(POT_CODE_BITS), cfg.vec_len),
                                   cfg.pot_rows),
        "first": unsigned(1),
        "last": unsigned(1),
    })


def _term(act: Value, code: Value, mag_bits: int) -> Value:
    """``act * 2**(e - 1)`` (0 for ``e == 0``) in one's complement when the sign bit is set; the
    missing ``+1`` of the negation is a carry-in of the adder tree (also right for 0)."""
    exp, sign = code[0:3], code[3]
    mag = Mux(exp == 0, 0, (act << exp)[1:1 + mag_bits])  # a multiplexer, not a multiplier
    return mag ^ sign.replicate(mag_bits + 1)


def pot_latency(cfg: HwConfig) -> int:
    """Cycles from accepting a ``last`` vector to its result on ``o`` (no stalls)."""
    return max(1, tree_depth(cfg.pot_cols)) + 1


class PotArray(wiring.Component):
    """``pot_rows`` PoT-4 filters times ``pot_cols`` activations per cycle, in LUTs only.

    Each cycle one input vector is taken: every filter multiplies each activation by its PoT-4
    weight (a shift chosen by a multiplexer, then a conditional negate done as one's complement
    plus a carry-in, so there is no ``*`` anywhere and synthesis uses no DSP48E1), sums the
    products through a pipelined adder tree and accumulates the sums from the vector flagged
    ``first`` to the one flagged ``last``. The dot products of all filters then leave on ``o``
    as one payload. Accumulators are ``cfg.acc_bits`` wide, enough for ``max_reduction``.

    Timing: the result of a dot product whose ``last`` vector is accepted in cycle ``t`` is
    valid on ``o`` in cycle ``t + latency`` (``latency = max(1, ceil(log2(pot_cols))) + 1``)
    when ``o`` is not stalled. Backpressure stalls the whole pipeline when a result arrives
    while ``o`` still holds an untaken one: ``i.ready`` and every pipeline clock enable are one
    register, high while the two-entry output buffer (:func:`~rtl.common.skid_output`) has its
    second entry free, so without backpressure one vector is accepted every cycle.
    ``o.valid`` and ``o.payload`` never depend on ``o.ready`` and hold until taken.

    Parameters
    ----------
    cfg : HwConfig
        Sizes (``pot_rows``, ``pot_cols``), activation widths and ``acc_bits``.

    Members
    -------
    i : In(stream.Signature(pot_input_layout(cfg)))
        Activation vector, weight codes, first/last flags.
    o : Out(stream.Signature(ArrayLayout(signed(acc_bits), pot_rows)))
        One dot product per filter, once per ``last`` vector.

    Raises
    ------
    TypeError
        If ``cfg`` is not a :class:`HwConfig`.
    ValueError
        If the configuration has no PoT rows.
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        cfg = check_config(cfg, "PotArray")
        if cfg.pot_rows == 0:
            raise ValueError(f"PotArray needs HwConfig.pot_rows > 0, not {cfg.pot_rows!r}")
        self._cfg = cfg
        super().__init__({
            "i": In(stream.Signature(pot_input_layout(cfg))),
            "o": Out(stream.Signature(result_layout(cfg, cfg.pot_rows))),
        })

    @property
    def cfg(self) -> HwConfig:
        return self._cfg

    @property
    def rows(self) -> int:
        return self._cfg.pot_rows

    @property
    def cols(self) -> int:
        return self._cfg.pot_cols

    @property
    def latency(self) -> int:
        """Cycles from accepting a ``last`` vector to its result on ``o`` (no stalls)."""
        return pot_latency(self._cfg)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self._cfg
        rows, cols, acc_bits = self.rows, self.cols, cfg.acc_bits
        en = Signal()  # every pipeline register moves together (a register: see skid_output)
        m.d.comb += self.i.ready.eq(en)
        take = self.i.valid & en

        mag_bits = act_width(cfg) + (1 << 3) - 2  # largest shift: exponent code 7 -> 2**6
        stages = max(1, tree_depth(cols))
        # Side-band bits travel beside the adder tree. ``valid``/``last`` belong to the sums
        # entering the accumulators; ``valid_in``/``first_in`` to the vector one stage before,
        # the one that enters the accumulator stage when the pipeline next moves.
        valid_in = delay(m, en, take, stages - 1, "valid")
        first_in = delay(m, en, self.i.payload.first, stages - 1, "first")
        valid = register(m, en, valid_in, f"valid_d{stages}")
        last = delay(m, en, self.i.payload.last, stages, "last")

        sums: list[Value] = []
        carries_out: list[Value] = []
        for r in range(rows):
            terms: list[Value] = []
            carries: list[Value] = []
            for c in range(cols):
                act = self.i.payload.act[c]
                code = self.i.payload.weight[r][c]
                term = Signal(signed(mag_bits + 1), name=f"term_r{r}_c{c}")
                m.d.comb += term.eq(_term(act, code, mag_bits))
                terms.append(term)
                carries.append(code[POT_CODE_BITS - 1])
            # Stage 1: products and the first tree level; then one register per level.
            level = 0
            while True:
                if len(terms) > 1:
                    terms, carries = tree_level(terms, carries)
                terms = [register(m, en, t, f"sum_r{r}_l{level}_{j}")
                         for j, t in enumerate(terms)]
                carries = [register(m, en, b, f"cin_r{r}_l{level}_{j}")
                           for j, b in enumerate(carries)]
                level += 1
                if len(terms) == 1:
                    break
            # A tree with n - 1 adders leaves exactly one of the n sign carries for the end.
            sums.append(terms[0])
            carries_out.append(carries[0] if carries else Value.cast(0))

        # The accumulators restart by a synchronous reset in the cycle in which a ``first``
        # vector moves into their stage, so the adder needs no ``first`` multiplexer: its
        # operands are two registers (one LUT per bit and no LUT level in front of the carry
        # chain). The reset wins over the update of the vector leaving the stage, whose sum
        # has already gone to the output if it was a ``last`` one.
        acc = [Signal(signed(acc_bits), name=f"acc_r{r}") for r in range(rows)]
        result = Signal(self.o.payload.shape())
        for r in range(rows):
            nxt = (acc[r] + sums[r] + carries_out[r])[:acc_bits]
            m.d.comb += result[r].eq(nxt)
            with m.If(en & valid):
                m.d.sync += acc[r].eq(nxt)
            with m.If(en & valid_in & first_in):
                m.d.sync += acc[r].eq(0)
        m.d.comb += en.eq(skid_output(m, self.o, valid & last, result))
        return m
