"""Vector units of the layer engine: residual add, max-pool and global average pool."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from quant import contract as C

from .common import check_config, index_bits
from .config import HwConfig
from .interface.descriptor import PostMode
from .postproc import SHIFT_BITS, PostProc
from .window import WindowGen, window_layout

__all__ = [
    "AddUnit",
    "AvgPool",
    "MaxPool",
    "add_input_layout",
    "add_layer_layout",
    "add_output_layout",
    "avgpool_layer_layout",
    "avgpool_output_layout",
    "buffer_read_signature",
    "lane_bits",
    "maxpool_layer_layout",
    "maxpool_output_layout",
]


def lane_bits(cfg: HwConfig) -> int:
    """Width of one element in an act-buffer word: two's complement, wide enough for the
    first layer's pixels and for signed ``s{act_bits+1}`` pre-add values (8 for the presets).

    Unsigned elements are zero-extended to this width, signed ones sign-extended.
    """
    return cfg.buffer_lane_bits


def buffer_read_signature(cfg: HwConfig) -> ReadPort.Signature:
    """A synchronous act-buffer read port (``amaranth.lib.memory.ReadPort.Signature``): word
    ``addr`` appears on ``data`` the cycle after ``en`` is high and holds while ``en`` is low.
    A word holds ``cfg.vec_len`` elements of :func:`lane_bits` bits, element ``i`` at bits
    ``[i * lane_bits, (i + 1) * lane_bits)``; word ``(y * width + x) * chunks + chunk``."""
    return ReadPort.Signature(addr_width=index_bits(cfg.act_buf_depth),
                              shape=cfg.vec_len * lane_bits(cfg))


def _check_tag_bits(tag_bits: object, who: str) -> int:
    if isinstance(tag_bits, bool) or not isinstance(tag_bits, int) or tag_bits < 0:
        raise TypeError(f"{who} tag_bits must be a non-negative integer, not {tag_bits!r}")
    return tag_bits


def _lanes(word: Value, cfg: HwConfig) -> list[Value]:
    w = lane_bits(cfg)
    return [word[i * w:(i + 1) * w] for i in range(cfg.vec_len)]


# ---- residual add ---------------------------------------------------------------------------


def add_layer_layout(cfg: HwConfig) -> data.StructLayout:
    """Residual-add parameters, stable while the layer's vectors are in the unit: per input
    the multiplier, shift and element type (``signed_*`` = 1: ``s{act_bits+1}``, 0:
    ``u{act_bits}``); ``relu`` picks the output clamp (u{act_bits}, else s{act_bits+1})."""
    return data.StructLayout({
        "mult_a": unsigned(C.MULT_BITS), "shift_a": unsigned(SHIFT_BITS), "signed_a": unsigned(1),
        "mult_b": unsigned(C.MULT_BITS), "shift_b": unsigned(SHIFT_BITS), "signed_b": unsigned(1),
        "relu": unsigned(1),
    })


def add_input_layout(cfg: HwConfig, tag_bits: int = 0) -> data.StructLayout:
    """Input of :class:`AddUnit`: the two vectors as raw act-buffer lanes, and a tag."""
    lanes = data.ArrayLayout(unsigned(lane_bits(cfg)), cfg.vec_len)
    return data.StructLayout({"a": lanes, "b": lanes, "tag": unsigned(tag_bits)})


def add_output_layout(cfg: HwConfig, tag_bits: int = 0) -> data.StructLayout:
    """Output of :class:`AddUnit`: ``vec_len`` sums as sign-extended act-buffer lanes (so
    ``value.as_value()`` is the buffer word), and the input's tag."""
    return data.StructLayout({"value": data.ArrayLayout(signed(lane_bits(cfg)), cfg.vec_len),
                              "tag": unsigned(tag_bits)})


class AddUnit(wiring.Component):
    """Residual add of two vectors, ``vec_len`` lanes per cycle, equal to
    ``quant.contract.residual_add`` (and ``quant.golden.add``) bit for bit.

    Each lane of ``a`` and ``b`` is read as its input's element type (``layer.signed_a`` /
    ``layer.signed_b``: the low ``act_bits + 1`` bits as signed, else the low ``act_bits`` bits
    as unsigned), requantized with its own ``(mult, shift)`` (round half up), the two are
    added and clamped to ``u{act_bits}`` (``layer.relu``) or ``s{act_bits+1}``.

    The unit requantizes ``cfg.add_lanes`` lanes a cycle: a vector takes ``G = vec_len /
    add_lanes`` cycles, lane group ``g`` (lanes ``g * add_lanes`` on) in its ``g``-th, read
    from ``i.payload``, which the stream holds while ``i.valid`` waits; ``i.ready`` rises with
    the last group. A pipeline per lane of a group: (where ``G > 1``, register the group's
    lanes;) multiply (a ``(act_bits+2)``-bit signed lane by the 16-bit multiplier: ``2 *
    add_lanes`` small multipliers, which Yosys ``synth_xilinx`` infers as one DSP48E1 each,
    32 for pynq-z2 and zc706; docs/engine.md lists the counts); round and shift (a shift
    beyond the product's ``act_bits + 17`` bits gives 0 either way, so the shifter is only
    that wide); add and clamp into the group's lanes of the output register.

    Timing: a vector accepted in cycle ``t`` (its last group) leaves on ``o`` in cycle ``t +
    latency(cfg)`` (:data:`LATENCY`, one more where ``G > 1``) when ``o`` is not stalled; a
    vector every ``G`` cycles. Backpressure stalls the whole pipeline (``en = ~o.valid |
    o.ready``); ``o`` holds still while stalled.

    Parameters
    ----------
    cfg : HwConfig
        ``vec_len`` and ``act_bits``.
    tag_bits : int
        Width of a side-band tag that travels with each vector (0: none).

    Members
    -------
    layer : In(add_layer_layout(cfg))
    i : In(stream.Signature(add_input_layout(cfg, tag_bits)))
    o : Out(stream.Signature(add_output_layout(cfg, tag_bits)))

    Raises
    ------
    TypeError
        If ``cfg`` is not a HwConfig or ``tag_bits`` not a non-negative integer.
    """

    #: Latency of a unit that takes a vector in one cycle (``groups`` 1): multiply, round and
    #: shift, add and clamp.
    LATENCY = 3

    @staticmethod
    def groups(cfg: HwConfig) -> int:
        """Cycles a vector takes the unit: ``vec_len / add_lanes``."""
        return cfg.vec_len // cfg.add_lanes

    @classmethod
    def latency(cls, cfg: HwConfig) -> int:
        """Cycles from a vector's acceptance (with its last group) to its leaving on ``o``:
        :data:`LATENCY`, and where the lanes come in groups, the register that picks the
        group's lanes first."""
        return cls.LATENCY + (cls.groups(cfg) > 1)

    def __init__(self, *, cfg: HwConfig, tag_bits: int = 0) -> None:
        self._MustUse__silence = True  # a rejected object is never elaborated; don't warn
        self._cfg = check_config(cfg, "AddUnit")
        self._tag_bits = _check_tag_bits(tag_bits, "AddUnit")
        self._MustUse__silence = False
        super().__init__({
            "layer": In(add_layer_layout(cfg)),
            "i": In(stream.Signature(add_input_layout(cfg, tag_bits))),
            "o": Out(stream.Signature(add_output_layout(cfg, tag_bits))),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg, L, p = self._cfg, self.layer, self.i.payload
        a_bits = cfg.act_bits
        prod_bits = a_bits + 17     # s{a_bits+1} times u16: |product| <= 2**a_bits * 65535
        q, n_groups = cfg.add_lanes, self.groups(cfg)
        grouped = n_groups > 1
        depth = self.latency(cfg)
        en = Signal()
        m.d.comb += en.eq(~self.o.valid | self.o.ready)

        # The group the input presents now; the vector is taken with its last.
        group = Signal(range(n_groups), name="group")
        last = Signal(name="last_group")
        m.d.comb += [last.eq(group == n_groups - 1), self.i.ready.eq(en & last)]
        with m.If(en & self.i.valid):
            m.d.sync += group.eq(Mux(last, 0, group + 1))

        # Per stage before the output register: a group in it and its index; the vector's tag
        # down to the output register, whose valid (``done``) is the vector's completion.
        valid = [Signal(name=f"valid_s{k}") for k in range(depth - 1)]
        gidx = [Signal(range(n_groups), name=f"group_s{k}") for k in range(depth - 1)]
        tag = [Signal(self._tag_bits, name=f"tag_s{k}") for k in range(depth)]
        done = Signal()
        with m.If(en):
            m.d.sync += [valid[0].eq(self.i.valid & (last | grouped)), gidx[0].eq(group),
                         tag[0].eq(p.tag), done.eq(valid[-1] & (gidx[-1] == n_groups - 1))]
            for k in range(1, depth - 1):
                m.d.sync += [valid[k].eq(valid[k - 1]), gidx[k].eq(gidx[k - 1])]
            for k in range(1, depth):
                m.d.sync += tag[k].eq(tag[k - 1])

        # Per-layer constants. For shift >= prod_bits, |prod| <= 2**(prod_bits-1) gives
        # 0 <= prod + 2**(shift-1) < 2**shift, so the result is 0, as it is at prod_bits.
        # Registers: the layer holds still long before its first vector.
        def shift_eff(shift: Value, name: str) -> tuple[Signal, Signal]:
            s = Signal(range(prod_bits + 1), name=f"shift_eff_{name}")
            rnd = Signal(prod_bits, name=f"rounding_{name}")
            eff = Mux(shift > prod_bits, prod_bits, shift)
            m.d.sync += [s.eq(eff), rnd.eq((Const(1, prod_bits + 1) << eff) >> 1)]
            return s, rnd

        sa, rnd_a = shift_eff(L.shift_a, "a")
        sb, rnd_b = shift_eff(L.shift_b, "b")
        hi = (1 << a_bits) - 1
        lo = Mux(L.relu, 0, -(hi + 1))

        def pick(vec: Value, lane: int) -> Value:
            """Lane ``lane`` of the group the input presents."""
            if not grouped:
                return vec[lane]
            return Array(vec[g * q + lane] for g in range(n_groups))[group]

        def requant(raw: Value, is_signed: Value, mult: Value, s: Value, rnd: Value,
                    name: str) -> Signal:
            x = Signal(signed(a_bits + 2), name=f"x_{name}")
            ext = Mux(is_signed, raw[:a_bits + 1].as_signed(), raw[:a_bits])
            if grouped:
                with m.If(en):
                    m.d.sync += x.eq(ext)
            else:
                m.d.comb += x.eq(ext)
            prod = Signal(signed(prod_bits), name=f"prod_{name}")
            r = Signal(signed(prod_bits), name=f"r_{name}")
            with m.If(en):
                m.d.sync += [prod.eq(x * mult), r.eq((prod + rnd) >> s)]
            return r

        for lane in range(q):
            ra = requant(pick(p.a, lane), L.signed_a, L.mult_a, sa, rnd_a, f"a{lane}")
            rb = requant(pick(p.b, lane), L.signed_b, L.mult_b, sb, rnd_b, f"b{lane}")
            total = Signal(signed(prod_bits + 1), name=f"sum_{lane}")
            m.d.comb += total.eq(ra + rb)
            clamped = Mux(total < lo, lo, Mux(total > hi, hi, total))
            for g in range(n_groups):
                out = Signal(signed(lane_bits(cfg)), name=f"out_{g * q + lane}")
                with m.If(en & (gidx[-1] == g)):
                    m.d.sync += out.eq(clamped)
                m.d.comb += self.o.payload.value[g * q + lane].eq(out)
        m.d.comb += [self.o.valid.eq(done), self.o.payload.tag.eq(tag[-1])]
        return m


# ---- scans over the act buffer (max-pool, average pool) ------------------------------------


class _Scan:
    """Read stage shared by the pool units: the sequencer presents one element per cycle
    (``issuing``, ``addr``, ``inside``, ``first``, ``last``, ``tag``); the word read arrives a
    cycle later as stage 1, with padding masked to 0. Stage 1 is consumed (``fire``) unless it
    is a window's last element and the result slot is not free (``slot_free``); the sequencer
    advances (``adv``) whenever stage 1 is empty or consumed."""

    def __init__(self, m: Module, rd: wiring.PureInterface, *, issuing: Value, addr: Value,
                 inside: Value, first: Value, last: Value, tag: Value,
                 slot_free: Value) -> None:
        self.valid, pad = Signal(name="valid1"), Signal(name="pad1")
        self.first, self.last = Signal(name="first1"), Signal(name="last1")
        self.tag = Signal(len(tag), name="tag1")
        self.fire = Signal(name="fire1")
        self.adv = Signal(name="adv")
        m.d.comb += [
            self.fire.eq(self.valid & (~self.last | slot_free)),
            self.adv.eq(~self.valid | self.fire),
            rd.en.eq(self.adv),
            rd.addr.eq(addr[:len(rd.addr)]),
        ]
        with m.If(self.adv):
            m.d.sync += [self.valid.eq(issuing), pad.eq(~Value.cast(inside)), self.first.eq(first),
                         self.last.eq(last), self.tag.eq(tag)]
        self.data = Signal(len(rd.data), name="data1")
        m.d.comb += self.data.eq(Mux(pad, 0, rd.data))


def _run_control(m: Module, start: Value, issue_done: Value, idle: Value,
                 busy_out: Value, done_out: Value) -> None:
    """``busy`` from ``start`` until every result has been taken; ``done`` pulses then."""
    busy = Signal(name="busy_r")
    finished = issue_done & idle
    with m.If(start):
        m.d.sync += busy.eq(1)
    with m.Elif(busy & finished):
        m.d.sync += busy.eq(0)
    m.d.comb += [busy_out.eq(busy), done_out.eq(busy & finished & ~start)]


def maxpool_layer_layout(cfg: HwConfig) -> data.StructLayout:
    """Max-pool parameters, stable from ``start`` until ``done``: the window of
    ``rtl.window.window_layout`` (the same fields and meaning as for a convolution)."""
    return window_layout(cfg)


def maxpool_output_layout(cfg: HwConfig) -> data.StructLayout:
    """One max-pool result: output ``pixel`` (``oy * out_w + ox``), ``chunk``, and the
    ``vec_len`` maxima as act-buffer lanes."""
    return data.StructLayout({
        "pixel": unsigned(2 * index_bits(cfg.max_spatial + 1)),
        "chunk": unsigned(index_bits(cfg.max_channels // cfg.vec_len + 2)),
        "value": data.ArrayLayout(unsigned(lane_bits(cfg)), cfg.vec_len),
    })


class MaxPool(wiring.Component):
    """Max-pool of a feature map in the act buffer, equal to ``quant.golden.maxpool``.

    After ``start`` the unit reads one window element per cycle through ``rd`` in the order
    output pixel ``(oy, ox)``, chunk, ``ky``, ``kx`` (padding positions are not read and
    count as 0, which never wins over unsigned elements), keeps the lane-wise running
    maximum, and puts each window's result on ``o`` tagged with its output pixel and chunk,
    in pixel-major, chunk-minor order (the act buffer's word order). ``done`` pulses when the
    last result has been taken; ``busy`` is high from ``start`` until then. ``start`` is
    ignored while busy. Elements are compared as unsigned lanes (``u{act_bits}`` maps).

    Cycles: ``out_h * out_w * chunks * kernel_h * kernel_w`` read cycles when ``o`` does not
    stall; a window's result is on ``o`` 2 cycles after its last element was read; ``done`` is
    high 3 cycles after the last read (see docs/engine.md). ``o`` holding a result stalls the
    reads only when the next window's last element needs the result slot.

    Parameters
    ----------
    cfg : HwConfig
        ``vec_len``, buffer depth and size limits.

    Members
    -------
    layer : In(maxpool_layer_layout(cfg))
    start : In(1)
    busy, done : Out(1)
    rd : In(buffer_read_signature(cfg))
        Read port of the act buffer (this unit drives ``en`` and ``addr``).
    o : Out(stream.Signature(maxpool_output_layout(cfg)))

    Raises
    ------
    TypeError
        If ``cfg`` is not a HwConfig.
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        self._MustUse__silence = True  # a rejected object is never elaborated; don't warn
        self._cfg = check_config(cfg, "MaxPool")
        self._MustUse__silence = False
        super().__init__({
            "layer": In(maxpool_layer_layout(cfg)),
            "start": In(1), "busy": Out(1), "done": Out(1),
            "rd": In(buffer_read_signature(cfg)),
            "o": Out(stream.Signature(maxpool_output_layout(cfg))),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg, L = self._cfg, self.layer
        m.submodules.window = gen = WindowGen(cfg=cfg)
        m.d.comb += gen.layer.eq(L)
        pix = Signal(len(self.o.payload.pixel), name="pix")
        ch = Signal(len(L.chunks), name="ch")

        slot_free = ~self.o.valid | self.o.ready
        scan = _Scan(m, self.rd, issuing=gen.valid, addr=gen.addr, inside=gen.inside,
                     first=gen.win_first, last=gen.win_last, tag=Cat(ch, pix),
                     slot_free=slot_free)
        m.d.comb += [gen.start.eq(self.start & ~self.busy), gen.adv.eq(scan.adv)]
        # The tag's pixel and chunk follow the generator's walk.
        with m.If(self.start & ~self.busy):
            m.d.sync += [pix.eq(0), ch.eq(0)]
        with m.Elif(gen.valid & scan.adv & gen.win_last):
            m.d.sync += ch.eq(ch + 1)
            with m.If(gen.chunk_last):
                m.d.sync += [ch.eq(0), pix.eq(pix + 1)]

        # Stage 2: running maximum; a window's last element goes to the result slot.
        run_max = [Signal(lane_bits(cfg), name=f"max_{i}") for i in range(cfg.vec_len)]
        with m.If(scan.fire):
            for i, (acc, elem) in enumerate(zip(run_max, _lanes(scan.data, cfg), strict=True)):
                new = Mux(scan.first | (elem > acc), elem, acc)
                m.d.sync += acc.eq(new)
                with m.If(scan.last):
                    m.d.sync += self.o.payload.value[i].eq(new)
        ch_bits = len(L.chunks)
        with m.If(scan.fire & scan.last):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.chunk.eq(scan.tag[:ch_bits]),
                         self.o.payload.pixel.eq(scan.tag[ch_bits:])]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        _run_control(m, self.start, gen.done, ~scan.valid & ~self.o.valid, self.busy,
                     self.done)
        return m


# ---- global average pool --------------------------------------------------------------------


def avgpool_layer_layout(cfg: HwConfig) -> data.StructLayout:
    """Global average pool parameters, stable from ``start`` until ``done``: ``pixels`` =
    ``H * W`` of the input map in the act buffer, ``chunks`` = ``ceil(C / V)``, and the
    pool's requantization ``mult``/``shift``."""
    return data.StructLayout({
        "pixels": unsigned(index_bits(cfg.act_buf_depth + 1)),
        "chunks": unsigned(index_bits(cfg.max_channels // cfg.vec_len + 2)),
        "mult": unsigned(C.MULT_BITS), "shift": unsigned(SHIFT_BITS),
    })


def avgpool_output_layout(cfg: HwConfig) -> data.StructLayout:
    """One average-pool result: ``chunk`` and its ``vec_len`` pooled values as act-buffer
    lanes (``u{act_bits}``, zero-extended)."""
    return data.StructLayout({
        "chunk": unsigned(index_bits(cfg.max_channels // cfg.vec_len + 2)),
        "value": data.ArrayLayout(unsigned(lane_bits(cfg)), cfg.vec_len),
    })


class AvgPool(wiring.Component):
    """Global average pool of a feature map in the act buffer, equal to
    ``quant.golden.avgpool`` (``quant.contract.avgpool_requant`` of the channel sums).

    After ``start`` the unit reads, chunk by chunk, every pixel's vector of that chunk
    through ``rd`` (one per cycle) and sums the unsigned lanes exactly. A finished chunk's
    sums move to a slot, from which one lane per cycle goes through a single
    :class:`PostProc` (``lanes = 1``, bias 0, mode RELU, the layer's ``mult``/``shift``: that
    is ``clamp(requantize(sum, mult, shift), 0, 2**act_bits - 1)``) while the next chunk is
    being summed; the results are gathered into one vector per chunk, which leaves on ``o``
    tagged with its chunk. One multiplier instead of ``vec_len``: the pool needs only
    ``chunks * vec_len`` requantizations, against ``chunks * pixels`` reads. ``done`` pulses
    when the last result has been taken; ``busy`` is high from ``start`` until then; ``start``
    is ignored while busy.

    Cycles: ``chunks * pixels`` read cycles when ``pixels > vec_len`` and ``o`` does not stall
    (ResNet-18: 7 x 7 = 49 pixels); smaller maps wait for the requantization, about
    ``vec_len + 1`` cycles per chunk. The last chunk's result is on ``o``
    ``vec_len + PostProc.LATENCY + 2`` cycles after the last read, ``done`` one cycle after
    it is taken. The sums need ``bit_length((2**lane_bits - 1) * act_buf_depth)`` bits (20
    for pynq-z2), since a map in the buffer has at most ``act_buf_depth`` vectors.

    Parameters
    ----------
    cfg : HwConfig
        ``vec_len``, ``act_bits``, buffer depth.

    Members
    -------
    layer : In(avgpool_layer_layout(cfg))
    start : In(1)
    busy, done : Out(1)
    rd : In(buffer_read_signature(cfg))
        Read port of the act buffer (this unit drives ``en`` and ``addr``).
    o : Out(stream.Signature(avgpool_output_layout(cfg)))

    Raises
    ------
    TypeError
        If ``cfg`` is not a HwConfig.
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        self._cfg = check_config(cfg, "AvgPool")
        # HwConfig.acc_bits leaves room for the sum of a full act buffer, with its sign.
        self._sum_bits = (((1 << lane_bits(cfg)) - 1) * cfg.act_buf_depth).bit_length()
        super().__init__({
            "layer": In(avgpool_layer_layout(cfg)),
            "start": In(1), "busy": Out(1), "done": Out(1),
            "rd": In(buffer_read_signature(cfg)),
            "o": Out(stream.Signature(avgpool_output_layout(cfg))),
        })

    @property
    def sum_bits(self) -> int:
        return self._sum_bits

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg, L, v = self._cfg, self.layer, self._cfg.vec_len
        ch_bits = len(L.chunks)
        # The sums are unsigned sum_bits wide: the requantizer's accumulator needs a bit more.
        m.submodules.post = post = PostProc(cfg=cfg, lanes=1, tag_bits=ch_bits,
                                            acc_bits=self._sum_bits + 1)

        ch = Signal(ch_bits, name="ch")
        px = Signal(len(L.pixels), name="px")
        addr = Signal(index_bits(cfg.act_buf_depth) + 1, name="addr")
        issuing, issue_done = Signal(), Signal()
        # The last indices are registers (the layer holds still from ``start`` on).
        px_last, ch_last = Signal.like(px, name="px_last"), Signal.like(ch, name="ch_last")
        m.d.sync += [px_last.eq(L.pixels - 1), ch_last.eq(L.chunks - 1)]
        last_px, last_ch = px == px_last, ch == ch_last

        # The slot is freed as its last lane enters PostProc.
        slot_valid = Signal(name="slot_valid")
        lane = Signal(range(v), name="lane")
        lane_last = Signal(name="lane_last", init=v == 1)   # lane == v - 1, a register
        slot_free = ~slot_valid | (post.i.ready & lane_last)
        scan = _Scan(m, self.rd, issuing=issuing, addr=addr, inside=1, first=px == 0,
                     last=last_px, tag=ch, slot_free=slot_free)

        # Stage 2: running sums; a chunk's last pixel moves them to the slot.
        sums = [Signal(self._sum_bits, name=f"sum_{i}") for i in range(v)]
        slot = Signal(data.ArrayLayout(self._sum_bits, v), name="slot")
        slot_tag = Signal(ch_bits, name="slot_tag")
        # The slot moves on by a lane as each goes into PostProc, so PostProc takes lane 0:
        # no multiplexer over the lanes on the way into its multiplier. (A chunk's last pixel
        # loads the slot below, after this, in the cycle its last lane goes.)
        with m.If(slot_valid & post.i.ready):
            m.d.sync += slot.eq(slot.as_value()[self._sum_bits:])
        with m.If(scan.fire):
            for i, (acc, elem) in enumerate(zip(sums, _lanes(scan.data, cfg), strict=True)):
                new = Mux(scan.first, elem, acc + elem)
                m.d.sync += acc.eq(new)
                with m.If(scan.last):
                    m.d.sync += slot[i].eq(new)

        # Serializer: one lane per cycle into PostProc.
        with m.If(slot_valid & post.i.ready):
            m.d.sync += [lane.eq(lane + 1), lane_last.eq(lane == v - 2)]
            with m.If(lane_last):
                m.d.sync += [lane.eq(0), lane_last.eq(v == 1), slot_valid.eq(0)]
        with m.If(scan.fire & scan.last):
            m.d.sync += [slot_valid.eq(1), slot_tag.eq(scan.tag)]
        m.d.comb += [post.i.valid.eq(slot_valid), post.i.payload.acc[0].eq(slot[0]),
                     post.i.payload.bias[0].eq(0), post.i.payload.mult[0].eq(L.mult),
                     post.i.payload.shift[0].eq(L.shift),
                     post.i.payload.mode.eq(PostMode.RELU), post.i.payload.tag.eq(slot_tag)]

        # Collector: lanes arrive in order; a full vector waits on o, holding PostProc.
        got = Signal(range(v), name="got")
        m.d.comb += post.o.ready.eq(~self.o.valid)
        with m.If(post.o.valid & ~self.o.valid):
            for i in range(v):
                with m.If(got == i):
                    m.d.sync += self.o.payload.value[i].eq(post.o.payload.value[0])
            m.d.sync += got.eq(got + 1)
            with m.If(got == v - 1):
                m.d.sync += [got.eq(0), self.o.valid.eq(1),
                             self.o.payload.chunk.eq(post.o.payload.tag)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM(name="issue"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [ch.eq(0), px.eq(0), addr.eq(0), issue_done.eq(0)]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += issuing.eq(1)
                with m.If(scan.adv):
                    m.d.sync += [px.eq(px + 1), addr.eq(addr + L.chunks)]
                    with m.If(last_px):
                        m.d.sync += [px.eq(0), ch.eq(ch + 1), addr.eq(ch + 1)]
                        with m.If(last_ch):
                            m.d.sync += issue_done.eq(1)
                            m.next = "IDLE"

        # Lanes inside PostProc or the collector: counted, so done waits for the last one.
        inflight = Signal(range(v + PostProc.LATENCY + 2), name="inflight")
        m.d.sync += inflight.eq(inflight + (post.i.valid & post.i.ready)
                                - (self.o.valid & self.o.ready) * v)
        _run_control(m, self.start, issue_done,
                     ~scan.valid & ~slot_valid & (inflight == 0), self.busy, self.done)
        return m
