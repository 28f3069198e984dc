"""Post-processing of dot products: bias, per-channel requantization, ReLU and clamp."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from quant import contract as C

from .common import skid_output
from .config import HwConfig
from .interface.descriptor import PostMode

__all__ = ["OUT_BITS", "SHIFT_BITS", "PostProc", "postproc_input_layout",
           "postproc_output_layout"]

#: Width of a requantization shift field (shifts 0..SHIFT_MAX).
SHIFT_BITS = C.SHIFT_MAX.bit_length()
#: Width of one post-processed value: wide enough for the signed 32-bit logits.
OUT_BITS = C.LOGIT_BITS


def postproc_input_layout(cfg: HwConfig, lanes: int, tag_bits: int = 0,
                          acc_bits: int | None = None) -> data.StructLayout:
    """Input payload of :class:`PostProc`: per lane the accumulator and its channel's
    ``bias`` (limited to ``|bias| <= cfg.max_abs_dot``, so it fits ``acc_bits``), ``mult``
    and ``shift``; one ``mode`` for the whole vector; a ``tag`` passed through unchanged.
    ``acc_bits`` is ``cfg.acc_bits`` unless given."""
    acc_bits = cfg.acc_bits if acc_bits is None else acc_bits
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(acc_bits), lanes),
        "bias": data.ArrayLayout(signed(acc_bits), lanes),
        "mult": data.ArrayLayout(unsigned(C.MULT_BITS), lanes),
        "shift": data.ArrayLayout(unsigned(SHIFT_BITS), lanes),
        "mode": unsigned(2),
        "tag": unsigned(tag_bits),
    })


def postproc_output_layout(lanes: int, tag_bits: int = 0) -> data.StructLayout:
    """Output payload of :class:`PostProc`: the values and the input's tag."""
    return data.StructLayout({"value": data.ArrayLayout(signed(OUT_BITS), lanes),
                              "tag": unsigned(tag_bits)})


class PostProc(wiring.Component):
    """``lanes`` channels per cycle of ``clamp(requantize(acc + bias, mult, shift))``.

    A five-stage pipeline: add the bias; multiply by the unsigned multiplier and add
    ``2**(shift-1)``, as two products that each fit one DSP48E1 (the sum's low
    ``LOW_BITS`` bits, unsigned, with the rounding in the DSP48E1's post-adder, and its high
    bits, signed) with the DSP48E1's output registers; add the two products; shift right
    arithmetically (round half up); clamp by ``mode``. A sum narrow enough for one DSP48E1
    (the average pool's) is one product, and the third stage only registers it. Results equal
    ``quant.contract.activation`` / ``quant.contract.logits`` bit for bit.

    Timing: a vector accepted in cycle ``t`` leaves on ``o`` in cycle ``t + 5`` when ``o`` is
    not stalled. The last stage is a two-entry output buffer (:func:`~rtl.common.skid_output`):
    the pipeline runs while its second entry is free, so ``i.ready`` and the pipeline's enable
    are a register (no path from ``o.ready`` into them); one vector per cycle is taken while
    ``o`` does not stall. ``o`` holds still while stalled.

    Parameters
    ----------
    cfg : HwConfig
        ``acc_bits`` and ``act_bits``.
    lanes : int
        Channels processed per cycle.
    tag_bits : int
        Width of a side-band tag that travels with each vector (0: none).
    tag_map : callable, optional
        A function of the tag (a ``tag_bits``-wide value) giving a value of the same width
        that the tag becomes between the first and the second stage: logic that a user
        needs only with the results (the out-buffer lane a result goes to) then works from
        registers, in a cycle of its own, instead of lengthening the path into the pipeline.
    acc_bits : int, optional
        Width of the accumulators and biases, ``cfg.acc_bits`` by default; a user whose
        values are narrower (the average pool's sums) gives its own, so the product fits
        one DSP48E1 and the rounding adder is shorter.

    Members
    -------
    i : In(stream.Signature(postproc_input_layout(cfg, lanes)))
    o : Out(stream.Signature(postproc_output_layout(lanes, tag_bits)))

    Raises
    ------
    TypeError
        If ``cfg`` is not a HwConfig, ``lanes`` is not a positive integer or ``tag_map`` is
        not callable.
    """

    LATENCY = 5
    #: The low part of a sum too wide for one DSP48E1 multiplier input (25 bits signed):
    #: 17 unsigned bits, so that both products fit a DSP48E1's 25 x 18 multiplier, the
    #: multiplier (16 bits unsigned) on its 18-bit input.
    LOW_BITS = 17
    #: The widest sum that one DSP48E1 multiplies (its signed 25-bit input).
    DSP_A_BITS = 25

    def __init__(self, *, cfg: HwConfig, lanes: int, tag_bits: int = 0,
                 acc_bits: int | None = None, tag_map=None) -> None:
        self._MustUse__silence = True  # a rejected object is never elaborated; don't warn
        if not isinstance(cfg, HwConfig):
            raise TypeError(f"PostProc configuration must be a HwConfig, not {cfg!r}")
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise TypeError(f"PostProc lanes must be a positive integer, not {lanes!r}")
        if isinstance(tag_bits, bool) or not isinstance(tag_bits, int) or tag_bits < 0:
            raise TypeError(f"PostProc tag_bits must be a non-negative integer, not {tag_bits!r}")
        if tag_map is not None and not callable(tag_map):
            raise TypeError(f"PostProc tag_map must be callable, not {tag_map!r}")
        if acc_bits is None:
            acc_bits = cfg.acc_bits
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or acc_bits < 2:
            raise TypeError(f"PostProc acc_bits must be an integer of at least 2, not "
                            f"{acc_bits!r}")
        self._cfg, self._lanes, self._tag_bits = cfg, lanes, tag_bits
        self._acc_bits = acc_bits
        self._tag_map = tag_map
        self._MustUse__silence = False
        super().__init__({
            "i": In(stream.Signature(postproc_input_layout(cfg, lanes, tag_bits, acc_bits))),
            "o": Out(stream.Signature(postproc_output_layout(lanes, tag_bits))),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg, lanes = self._cfg, self._lanes
        en = Signal()
        p = self.i.payload

        # Stages 1 to 4 here; stage 5 is the two-entry output buffer's first entry.
        stages = self.LATENCY - 1
        valid = [Signal(name=f"valid_s{k}") for k in range(stages)]
        mode = [Signal(2, name=f"mode_s{k}") for k in range(stages)]
        tag = [Signal(self._tag_bits, name=f"tag_s{k}") for k in range(stages)]
        result = Signal(postproc_output_layout(lanes, self._tag_bits))
        # The pipeline's enable and i.ready are registers: o.ready reaches only the buffer,
        # and o is a register (no multiplexer behind it).
        m.d.comb += [en.eq(skid_output(m, self.o, valid[-1], result, ready=self.i.ready)),
                     result.tag.eq(tag[-1])]
        with m.If(en):
            m.d.sync += [valid[0].eq(self.i.valid), mode[0].eq(p.mode), tag[0].eq(p.tag)]
            for k in range(1, stages):
                m.d.sync += [valid[k].eq(valid[k - 1]), mode[k].eq(mode[k - 1]),
                             tag[k].eq(tag[k - 1] if k > 1 or self._tag_map is None
                                       else self._tag_map(tag[0]))]

        sum_bits = self._acc_bits + 1
        # |acc + bias| <= 2 * max_abs_dot < 2**(acc_bits - 1), times mult < 2**16.
        prod_bits = sum_bits + C.MULT_BITS
        split = sum_bits > self.DSP_A_BITS
        act_hi = (1 << cfg.act_bits) - 1
        # The clamp is stage 5's input, so it uses the mode travelling with stage 4.
        clamp_lo = Mux(mode[3] == PostMode.RELU, 0,
                       Mux(mode[3] == PostMode.SIGNED, -(act_hi + 1), -(1 << (OUT_BITS - 1))))
        clamp_hi = Mux(mode[3] == PostMode.LOGITS, (1 << (OUT_BITS - 1)) - 1, act_hi)
        for lane in range(lanes):
            total = Signal(signed(sum_bits), name=f"sum_{lane}")
            mult = Signal(C.MULT_BITS, name=f"mult_{lane}")
            shift1 = Signal(SHIFT_BITS, name=f"shift1_{lane}")
            # Stage 2: total * mult + rounding, as low + high products when total is wider
            # than a DSP48E1 input: total = (high << LOW_BITS) + low, low unsigned.
            low = Signal(signed(prod_bits + 1), name=f"prod_lo_{lane}")
            shift2 = Signal(SHIFT_BITS, name=f"shift2_{lane}")
            prod = Signal(signed(prod_bits + 1), name=f"prod_{lane}")   # plus rounding
            shift3 = Signal(SHIFT_BITS, name=f"shift3_{lane}")
            rounded = Signal(signed(prod_bits + 1), name=f"rounded_{lane}")
            # Half of the shift's unit, a register beside total (stage 1): the low product
            # takes it in (the DSP48E1's post-adder), so stage 4 only shifts.
            rounding = Signal(prod_bits + 1, name=f"rounding_{lane}")
            with m.If(en):
                m.d.sync += [
                    total.eq(p.acc[lane] + p.bias[lane]),
                    mult.eq(p.mult[lane]),
                    shift1.eq(p.shift[lane]),
                    rounding.eq((Const(1, prod_bits + 1) << p.shift[lane]) >> 1),
                    shift2.eq(shift1),
                    shift3.eq(shift2),
                    rounded.eq(prod >> shift3),
                ]
                if split:
                    # Stage 3: the high product plus the low one's bits from LOW_BITS up, in
                    # the second DSP48E1's post-adder (C input, or its cascade): no adder in
                    # the fabric. prod = (high * mult + (low >> L)) << L | low[:L], exactly,
                    # as low = total[:L] * mult + rounding >= 0.
                    high = Signal(signed(sum_bits - self.LOW_BITS), name=f"sum_hi_{lane}")
                    mult2 = Signal(C.MULT_BITS, name=f"mult2_{lane}")
                    m.d.sync += [
                        low.eq(total[:self.LOW_BITS] * mult + rounding),
                        high.eq(total[self.LOW_BITS:].as_signed()), mult2.eq(mult),
                        prod.eq(Cat(low[:self.LOW_BITS],
                                    high * mult2 + (low >> self.LOW_BITS))),
                    ]
                else:
                    m.d.sync += [low.eq(total * mult + rounding), prod.eq(low)]
            m.d.comb += result.value[lane].eq(Mux(rounded < clamp_lo, clamp_lo,
                                                  Mux(rounded > clamp_hi, clamp_hi, rounded)))
        return m
