"""Pieces shared by the compute arrays and the engine: payload layouts, config checks, pipelined
adder trees, registers."""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterator
from contextlib import contextmanager

from amaranth.hdl import Module, Signal, Value, signed, unsigned
from amaranth.lib import data

from .config import HwConfig

__all__ = [
    "act_layout",
    "act_width",
    "check_config",
    "delay",
    "index_bits",
    "ongoing_any",
    "register",
    "result_layout",
    "skid_output",
    "stage",
    "tree_depth",
    "tree_level",
]


def check_config(cfg: object, who: str) -> HwConfig:
    """Return ``cfg`` if it is a :class:`HwConfig`, else raise a TypeError naming ``who``."""
    if not isinstance(cfg, HwConfig):
        raise TypeError(f"{who} configuration must be a HwConfig, not {cfg!r}")
    return cfg


def act_width(cfg: HwConfig) -> int:
    """Width of one activation on the array inputs (``HwConfig.array_bits``)."""
    return cfg.array_bits


def act_layout(cfg: HwConfig) -> data.ArrayLayout:
    """The activation vector both arrays take in the same cycle: ``vec_len`` unsigned values."""
    return data.ArrayLayout(unsigned(act_width(cfg)), cfg.vec_len)


def result_layout(cfg: HwConfig, rows: int) -> data.ArrayLayout:
    """One signed ``acc_bits`` dot product per row (filter)."""
    return data.ArrayLayout(signed(cfg.acc_bits), rows)


def tree_depth(n: int) -> int:
    """Adder levels that reduce ``n`` terms to one: ``ceil(log2(n))``."""
    return max(n - 1, 0).bit_length()


def tree_level(terms: list[Value], carries: list[Value]) -> tuple[list[Value], list[Value]]:
    """One level of a binary adder tree over signed terms.

    Adjacent terms are summed in pairs (an odd last term passes through). Each pair adder also
    takes one pending 1-bit carry-in from ``carries`` while any is left; the rest are returned
    so the next level (or the accumulator) adds them. Returns ``(sums, carries_left)``.
    """
    out: list[Value] = []
    carries = list(carries)
    for j in range(0, len(terms) - 1, 2):
        a, b = terms[j], terms[j + 1]
        width = max(a.shape().width, b.shape().width) + 1
        total = a + b
        if carries:
            # Two w-bit signed terms plus a 0/1 carry still fit w + 1 signed bits.
            total = total + carries.pop(0)
        out.append(total[:width].as_signed())
    if len(terms) % 2:
        out.append(terms[-1])
    return out, carries


def index_bits(n: int) -> int:
    """Bits of an index below ``n`` (at least one)."""
    return max(1, (n - 1).bit_length())


def stage(m: Module, value: Value, shape: object, name: str) -> Signal:
    """A register of ``shape`` loaded with ``value`` every cycle: one stage of a pipeline of
    quantities derived from registers that stay stable while they are used."""
    reg = Signal(shape, name=name)
    m.d.sync += reg.eq(value)
    return reg


def register(m: Module, en: Value, value: Value, name: str, *, reset_less: bool = False
             ) -> Signal:
    """A register loaded with ``value`` in cycles where ``en`` is high.

    ``reset_less`` for data-path registers whose contents the side-band ``valid`` bits
    qualify: synthesis may then absorb them into DSP48E1 pipeline registers or SRL16s.
    """
    reg = Signal(value.shape(), name=name, reset_less=reset_less)
    with m.If(en):
        m.d.sync += reg.eq(value)
    return reg


def delay(m: Module, en: Value, value: Value, stages: int, name: str, *,
          reset_less: bool = False) -> Value:
    """``value`` delayed by ``stages`` enabled registers (the pipeline's side-band bits)."""
    for k in range(stages):
        value = register(m, en, value, f"{name}_d{k + 1}", reset_less=reset_less)
    return value


def skid_output(m: Module, o: object, push: Value, result: Value, *,
                ready: Signal | None = None, ready_next: Signal | None = None) -> Signal:
    """Drive stream ``o`` from a pipeline through a two-entry output buffer; return the
    pipeline's enable, a register.

    The pipeline advances in every cycle where the returned enable is high and offers ``result``
    when ``push`` is high in such a cycle. ``o.payload`` is the older entry, so a result reaches
    ``o`` in the cycle after it is pushed, as from a plain output register. The enable is high
    exactly when the second entry (``skid``) is free, so a result pushed in any enabled cycle has
    room. It is a register of its own (no combinational path from ``o.ready`` into the
    thousands of pipeline clock enables, nor to ``i.ready``), and the buffer's control logic
    reads the low-fan-out ``skid_valid`` instead of it. When ``o`` is always ready the pipeline
    never stops.

    ``ready``, when given, is driven with the enable's value for the pipeline's input stream,
    from ``skid_valid`` (inverted), not from the enable: whatever waits on the input's ready
    then sees a flip-flop of a few loads, not one that drives every pipeline register.
    ``ready_next``, when given, is driven with the value ``ready`` takes in the next cycle, for
    a user that keeps a register of its own that depends on it.
    """
    en = Signal(init=1, name="pipe_en")
    skid = Signal(o.payload.shape(), name="skid", reset_less=True)
    skid_valid = Signal(name="skid_valid")
    skid_next = Signal(name="skid_valid_next")
    pop = o.valid & o.ready
    push_now = ~skid_valid & push  # ~skid_valid == en
    m.d.comb += skid_next.eq(skid_valid)
    with m.If(pop):
        with m.If(skid_valid):
            m.d.sync += o.payload.eq(skid)
            m.d.comb += skid_next.eq(0)  # the pipeline was stopped: nothing is pushed
        with m.Elif(push_now):
            m.d.sync += o.payload.eq(result)
        with m.Else():
            m.d.sync += o.valid.eq(0)
    with m.Elif(push_now):
        with m.If(o.valid):
            m.d.sync += skid.eq(result)
            m.d.comb += skid_next.eq(1)
        with m.Else():
            m.d.sync += [o.payload.eq(result), o.valid.eq(1)]
    m.d.sync += [skid_valid.eq(skid_next), en.eq(~skid_next)]
    if ready is not None:
        m.d.comb += ready.eq(~skid_valid)
    if ready_next is not None:
        m.d.comb += ready_next.eq(~skid_next)
    return en


@contextmanager
def one_hot_fsm(m: Module, *, name: str) -> Iterator[object]:
    """``m.FSM(name=name)`` whose state synthesis holds one-hot: the ``fsm_encoding``
    attribute on its state register, which both Vivado (``"one_hot"``) and Yosys (an encoding
    it does not name maps to its ``auto``, one-hot for these sizes) take as a state machine to
    extract and recode. Without it Yosys keeps a state machine read from Verilog binary-coded
    (its detection skips a register with an initial value, which Amaranth gives each), and a
    wide machine's next state then waits on a decoder of the state."""
    with m.FSM(name=name) as fsm:
        yield fsm
    fsm.state.attrs["fsm_encoding"] = "one_hot"


def ongoing_any(fsm: object, *names: str) -> Value:
    """Whether ``fsm`` is in any of the states ``names``: an OR of ``fsm.ongoing``.

    A flag that is a function of the state alone is best taken from here rather than set to
    a constant inside the states: Yosys turns a switch over the state that only assigns
    constants into a ROM read at the state (``proc_rom``), which keeps a binary copy of the
    state register alive beside the one-hot machine it extracts, with the whole next-state
    logic encoded into it. Comparisons of the state with constants become the one-hot bits."""
    return functools.reduce(operator.or_, (fsm.ongoing(name) for name in names))
