"""The PoT array: PoT-4 filters as shift-and-negate MACs in LUT fabric, with no multiplier."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
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
from .config import NIBBLE_BITS, HwConfig

__all__ = ["PotArray", "pot_input_layout", "pot_latency"]

#: Width of one PoT-4 weight code (bit 3 sign, bits 2..0 exponent code; see quant.contract).
POT_CODE_BITS = 4


def pot_input_layout(cfg: HwConfig) -> data.StructLayout:
    """Input payload of :class:`PotArray`.

    ``act``: the ``vec_len`` unsigned activations of this cycle (shared by every filter);
    ``weight[r][c]``: the PoT-4 code of filter ``r`` for activation ``c``;
    ``first``/``last``: this vector starts/ends a dot product (both set for a one-vector one);
    ``hi`` (only if ``cfg.split_input``): this vector holds high nibbles of first-layer pixels,
    so its products count 16 times (it may change from vector to vector of a dot product).
    """
    fields: dict[str, object] = {
        "act": act_layout(cfg),
        "weight": data.ArrayLayout(data.ArrayLayout(unsigned(POT_CODE_BITS), cfg.vec_len),
                                   cfg.pot_rows),
        "first": unsigned(1),
        "last": unsigned(1),
    }
    if cfg.split_input:
        fields["hi"] = unsigned(1)
    return data.StructLayout(fields)


#: Columns summed by one chain of pipelined adders (see :class:`PotArray`); chains of at most
#: this many columns keep the PoT array's latency below the DSP array's.
CHAIN = 8


def _term(m: Module, act: Value, exp: Value, invert: Value, mag_bits: int, name: str
          ) -> Value:
    """``mag = act * 2**(exp - 1)`` (0 for ``exp == 0``), every bit inverted when ``invert`` is
    set: ``mag`` or ``~mag = -mag - 1``, as a signed ``mag_bits + 1``-bit value.

    Two selections, no multiplier: ``y = act << exp[1:0]`` (a 4:1 multiplexer per bit), then bit
    ``p`` of ``mag`` is ``y[p - 3]`` for ``exp >= 4`` (shift ``exp - 1 = 3 + exp[1:0]``) and
    ``y[p + 1]`` for ``1 <= exp <= 3`` (shift ``exp[1:0] - 1``), 0 for ``exp == 0``. The second
    selection and the inversion are a function of five signals per bit, which a subtractor
    whose minuend is a register absorbs into the LUT in front of its carry chain.
    """
    y = Signal(len(act) + 3, name=f"{name}_y")
    m.d.comb += y.eq(act << exp[0:2])
    low = Signal(name=f"{name}_low")  # 1 <= exp <= 3
    m.d.comb += low.eq(~exp[2] & (exp[0:2] != 0))
    bits = []
    for p in range(mag_bits):
        hi = y[p - 3] if 0 <= p - 3 < len(y) else Const(0)
        lo = y[p + 1] if p + 1 < len(y) else Const(0)
        bits.append(Mux(exp[2], hi, low & lo))
    return Cat(Cat(*bits) ^ invert.replicate(mag_bits), invert).as_signed()


def _chain_groups(cols: int) -> list[range]:
    """The columns of each adder chain: consecutive runs of ``min(cols, CHAIN)``."""
    size = min(cols, CHAIN)
    return [range(g, min(g + size, cols)) for g in range(0, cols, size)]


def _sum_stages(cols: int) -> int:
    """Registered adder stages: ``chain - 1`` chain stages, then a tree over the chains."""
    groups = _chain_groups(cols)
    return max(1, len(groups[0]) - 1 + tree_depth(len(groups)))


def pot_latency(cfg: HwConfig) -> int:
    """Cycles from accepting a ``last`` vector to its result on ``o`` (no stalls)."""
    return _sum_stages(cfg.pot_cols) + 1


class PotArray(wiring.Component):
    """``pot_rows`` PoT-4 filters times ``pot_cols`` activations per cycle, in LUTs only.

    Each cycle one input vector is taken: every filter multiplies each activation by its PoT-4
    weight (shifts chosen by multiplexers and a conditional inversion, so there is no ``*``
    anywhere and synthesis uses no DSP48E1), sums the products and accumulates the sums from
    the vector flagged ``first`` to the one flagged ``last``. The dot products of all filters
    then leave on ``o`` as one payload. Accumulators are ``cfg.acc_bits`` wide, enough for
    ``max_reduction``. With ``cfg.split_input`` a vector flagged ``hi`` (high nibbles of
    first-layer pixels) adds its sums times 16: ``16 * (sum + c)`` through the accumulator
    adder's operand ``Cat(c, c, c, c, sum)`` and its unchanged carry-in ``c``, one 2:1
    multiplexer per accumulator bit.

    The columns are summed in chains of up to :data:`CHAIN` columns: stage 1 adds a chain's
    first two columns, stage ``j`` subtracts the (inverted) product of column ``j`` from the
    registered running sum, so the product's last multiplexer level shares the LUT in front of
    each carry-chain bit; a registered adder tree then sums the chains. The weight codes and
    activations of column ``j`` wait ``j - 1`` cycles in registers. See docs/arrays.md for the
    arithmetic and why it is exact.

    Timing: the result of a dot product whose ``last`` vector is accepted in cycle ``t`` is
    valid on ``o`` in cycle ``t + latency`` when ``o`` is not stalled, ``latency =
    max(1, chain - 1 + ceil(log2(chains))) + 1`` with ``chain = min(pot_cols, CHAIN)`` and
    ``chains = ceil(pot_cols / chain)`` (:func:`pot_latency`; 9 for 16 columns, 10 for 32,
    always below :func:`~rtl.dsp_array.dsp_latency`). Backpressure stalls the whole pipeline
    when a result arrives while ``o`` still holds an untaken one: ``i.ready`` and every
    pipeline clock enable are high while the two-entry output buffer
    (:func:`~rtl.common.skid_output`) has its second entry free (the enables from one register,
    ``i.ready`` from the buffer's own flag, of few loads), so without backpressure one
    vector is accepted every cycle. ``o.valid`` and ``o.payload`` never depend on ``o.ready``
    and hold until taken.

    Parameters
    ----------
    cfg : HwConfig
        Sizes (``pot_rows``, ``pot_cols``), activation widths and ``acc_bits``.

    Members
    -------
    i : In(stream.Signature(pot_input_layout(cfg)))
        Activation vector, weight codes, first/last flags (and ``hi`` with split_input).
    o : Out(stream.Signature(ArrayLayout(signed(acc_bits), pot_rows)))
        One dot product per filter, once per ``last`` vector.
    ready_next : Out(1)
        The value ``i.ready`` takes in the next cycle (a user's register copy of it is then
        exact).

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
            "ready_next": Out(1),
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
        take = self.i.valid & en

        mag_bits = act_width(cfg) + (1 << 3) - 2  # largest shift: exponent code 7 -> 2**6
        groups = _chain_groups(cols)
        links = len(groups[0]) - 1  # chain stages
        stages = _sum_stages(cols)
        # Side-band bits travel beside the adders. ``valid``/``last`` belong to the sums
        # entering the accumulators; ``valid_in``/``first_in`` to the vector one stage before,
        # the one that enters the accumulator stage when the pipeline next moves.
        valid_in = delay(m, en, take, stages - 1, "valid")
        first_in = delay(m, en, self.i.payload.first, stages - 1, "first")
        valid = register(m, en, valid_in, f"valid_d{stages}")
        last = delay(m, en, self.i.payload.last, stages, "last")
        # ``hi`` (split_input only) belongs to the sums entering the accumulators, like ``last``.
        hi = delay(m, en, self.i.payload.hi, stages, "hi") if cfg.split_input else None

        # Column ``j`` of a chain (j >= 1) is added in chain stage ``j``, ``j - 1`` cycles after
        # the vector was taken: its activation (once per column, for every row) and its weight
        # codes wait in registers until then. Data registers keep a reset so that synthesis
        # counts them as flip-flops rather than mapping them to LUT shift registers.
        def late(c: int) -> int:
            return max(0, c % len(groups[0]) - 1)

        acts = [delay(m, en, self.i.payload.act[c], late(c), f"act_c{c}") for c in range(cols)]

        sums: list[Value] = []
        carries_out: list[Value] = []
        for r in range(rows):
            def code(c: int, r: int = r) -> Value:
                return delay(m, en, self.i.payload.weight[r][c], late(c), f"code_r{r}_c{c}")

            # Chains. Stage 1 starts from the first column's term in one's complement, ``t =
            # mag ^ s`` (``= w * a - s``): its sign carry ``s`` is left over for the tree below
            # or the accumulator. Stage j subtracts column j from the running sum, a register:
            # Yosys maps a two-operand subtraction with the minuend as the carry chain's DI
            # operand, so the subtrahend's last selection merges into the LUT in front of the
            # chain. The subtrahend is ``n = mag ^ ~s``: ``mag`` for a negative weight and
            # ``~mag = -mag - 1`` for a positive one, so ``-n`` is ``w * a`` plus ``1 - s``; an
            # extra low bit (``s`` in the minuend, 1 in the subtrahend) borrows exactly that
            # ``1 - s`` and the running sum stays exact.
            chain_sums: list[Value] = []
            carries: list[Value] = []
            for g, cols_g in enumerate(groups):
                w0 = code(cols_g[0])
                running = _term(m, acts[cols_g[0]], w0[0:3], w0[3], mag_bits,
                                f"term_r{r}_c{cols_g[0]}")
                count = 1
                carries.append(w0[3])
                for j in range(1, links + 1):
                    if j < len(cols_g):
                        c = cols_g[j]
                        wj = code(c)
                        sign = wj[3]
                        n = _term(m, acts[c], wj[0:3], ~sign, mag_bits, f"term_r{r}_c{c}")
                        count += 1
                        width = mag_bits + 1 + tree_depth(count)
                        diff = Cat(sign, running).as_signed() - Cat(Const(1, 1), n).as_signed()
                        running = diff[1:1 + width].as_signed()
                    running = register(m, en, running, f"chain_r{r}_g{g}_s{j}")
                carries[-1] = delay(m, en, carries[-1], links, f"cin_r{r}_g{g}")
                chain_sums.append(running)
            # Then one registered tree level at a time over the chains' sums.
            terms, level = chain_sums, 0
            if links == 0 and len(terms) == 1:
                terms = [register(m, en, terms[0], f"sum_r{r}")]
                carries = [register(m, en, carries[0], f"cin_r{r}")]
            while len(terms) > 1:
                terms, carries = tree_level(terms, carries)
                terms = [register(m, en, t, f"sum_r{r}_l{level}_{j}")
                         for j, t in enumerate(terms)]
                carries = [register(m, en, b, f"cin_r{r}_l{level}_{j}")
                           for j, b in enumerate(carries)]
                level += 1
            # n terms, n - 1 adders with a carry-in each: one sign carry is left for the end.
            sums.append(terms[0])
            carries_out.append(carries[0])

        # The accumulators restart by a synchronous reset in the cycle in which a ``first``
        # vector moves into their stage, so the adder needs no ``first`` multiplexer: its
        # operands are two registers (one LUT per bit and no LUT level in front of the carry
        # chain). The reset wins over the update of the vector leaving the stage, whose sum
        # has already gone to the output if it was a ``last`` one.
        # A ``hi`` vector (split_input) adds ``16 * (sum + c)``: the operand ``Cat(c, c, c, c,
        # sum)`` is ``16 * sum + 15 * c`` and the carry-in ``c`` stays the same, so the
        # accumulator adder gets one 2:1 multiplexer per bit on its sum operand (it merges into
        # the LUT in front of the carry chain, whose other operand stays a register).
        acc = [Signal(signed(acc_bits), name=f"acc_r{r}") for r in range(rows)]
        result = Signal(self.o.payload.shape())
        for r in range(rows):
            c = carries_out[r]
            if hi is None:
                operand = sums[r]
            else:
                operand = Mux(hi, Cat(c.replicate(NIBBLE_BITS), sums[r]).as_signed(), sums[r])
            nxt = (acc[r] + operand + c)[:acc_bits]
            m.d.comb += result[r].eq(nxt)
            with m.If(en & valid):
                m.d.sync += acc[r].eq(nxt)
            with m.If(en & valid_in & first_in):
                m.d.sync += acc[r].eq(0)
        m.d.comb += en.eq(skid_output(m, self.o, valid & last, result, ready=self.i.ready,
                                       ready_next=self.ready_next))
        return m
