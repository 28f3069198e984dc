"""The conv datapath: one pass of a conv/fc layer from on-chip buffers through both arrays and
the requantization unit, results scattered by original output channel (docs/engine.md)."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from quant import contract as C

from .common import act_width, check_config, index_bits
from .config import HwConfig
from .dsp_array import DspArray
from .interface.ddr import weight_row_bits
from .interface.descriptor import PostMode
from .postproc import OUT_BITS, SHIFT_BITS, PostProc
from .pot_array import PotArray
from .vector_units import buffer_read_signature, lane_bits
from .window import WindowGen, rows_all, rows_shape, window_layout

__all__ = ["ConvCore", "WeightBanks", "conv_layer_layout", "result_layout", "slot_layout"]


def conv_layer_layout(cfg: HwConfig) -> data.StructLayout:
    """Layer parameters of one pass; stable from ``start`` until ``done``: the window of
    ``rtl.window.window_layout`` (map, output size, kernel, stride, padding at the top and
    the left), ``mode``, a :class:`PostMode`, ``out_chunks``, the output's vectors per
    pixel (only the results' ``base`` and ``end`` use it), and ``split``: the input's odd
    chunks are high nibbles (a ``split_input`` build only)."""
    return data.StructLayout({**dict(window_layout(cfg).members), "mode": unsigned(2),
                              "out_chunks": window_layout(cfg).members["chunks"],
                              "split": unsigned(1)})


def slot_layout(cfg: HwConfig) -> data.StructLayout:
    """One result slot (PoT rows first, then DSP lanes): where it lands and its requant."""
    return data.StructLayout({
        "valid": unsigned(1),
        "channel": unsigned(index_bits(cfg.max_channels)),
        "bias": signed(cfg.acc_bits),
        "mult": unsigned(C.MULT_BITS),
        "shift": unsigned(SHIFT_BITS),
    })


def result_layout(cfg: HwConfig) -> data.StructLayout:
    """Up to ``result_lanes`` output elements of one pixel (index ``oy * out_w + ox``): per
    lane whether it holds a result, its original channel and its value. The valid lanes of
    one beat never share ``channel % vec_len``, and a logits layer's beats (mode ``LOGITS``)
    hold one valid lane each; in other modes every value fits ``act_bits + 1`` bits,
    signed. ``base`` is ``pixel * out_chunks`` (the
    pixel's first vector in the out buffer) and ``end`` ``base + out_chunks``, counted as
    the pixels go so that no multiplier sits on the result path; ``addr``: each lane's
    out-buffer vector, ``base + channel // vec_len`` (modulo the buffer's depth); ``hit[L]``:
    a valid lane of the beat goes to out-buffer lane ``L`` (``channel % vec_len == L``),
    ``src[L]`` which one. The addresses and the matching are worked out beside the
    requantizer's arithmetic (its second stage), so that no adder sits behind the result's
    valid and each out-buffer lane only selects by a register."""
    lanes = cfg.result_lanes
    vec_bits = index_bits(cfg.out_buf_depth + 1) + 1
    return data.StructLayout({
        "pixel": unsigned(2 * index_bits(cfg.max_spatial + 1)),
        "base": unsigned(vec_bits),
        "end": unsigned(vec_bits),
        "valid": data.ArrayLayout(unsigned(1), lanes),
        "channel": data.ArrayLayout(unsigned(index_bits(cfg.max_channels)), lanes),
        "value": data.ArrayLayout(signed(OUT_BITS), lanes),
        "addr": data.ArrayLayout(unsigned(index_bits(cfg.out_buf_depth)), lanes),
        "hit": unsigned(cfg.vec_len),
        "src": data.ArrayLayout(unsigned(index_bits(lanes)), cfg.vec_len),
    })


class WeightBanks(wiring.Component):
    """Two banks, each holding one conv pass for ``rows`` filter rows: the weight rows (one
    per step, ``4 * vec_len * rows`` bits), the result slots and the Fixed-8 pair flags.

    Writes (``w_*``, ``slot_*``, ``fixed8_*``) go to bank ``w_bank``; reads come from bank
    ``rd_bank``: weight row ``rd_addr`` on ``rd_data`` a cycle after ``rd_en`` (held while
    ``rd_en`` is low). A row address reaches past the bank's depth into the other bank (row
    ``weight_buf_depth + r`` of a pass in bank ``b`` is row ``r`` of bank ``1 - b``), so a long
    pass (``HwConfig.long_pass``) spans both. The ``result_lanes`` slots of group ``group`` (slots
    ``group * result_lanes + i``) on ``slots`` at once, the flags on ``fixed8``;
    ``group_valid[k]``: the valid flags of every group ``k``'s slots, ``group_conflict[k]``:
    two valid slots of group ``k`` share an output-buffer lane (``channel % vec_len``), from a
    register set as the slots are written: a pass writes the slots of a group one after
    another, its slot 0 first (as ``rtl.engine.loader`` does: every slot, in order), and the
    flag holds two cycles after the group's last slot is written. The slots' fields but
    their valid flags are in distributed RAM, one memory per result lane. Its own component
    so that the build's estimate can count it for the array rows (the whole banks less the
    core's rows).
    """

    def __init__(self, *, cfg: HwConfig, rows: int, fixed8_pairs: int) -> None:
        self._cfg, self._rows, self._pairs = cfg, rows, fixed8_pairs
        self._wbits = 4 * cfg.vec_len * rows
        self._groups = -(-rows // cfg.result_lanes)
        addr = index_bits(cfg.max_pass_rows)
        members = {
            "w_bank": In(1),
            "w_we": In(1), "w_waddr": In(addr), "w_wdata": In(self._wbits),
            "slot_we": In(1), "slot_waddr": In(index_bits(rows)),
            "slot_wdata": In(slot_layout(cfg)),
            "rd_bank": In(1), "rd_en": In(1), "rd_addr": In(addr), "rd_data": Out(self._wbits),
            "group": In(index_bits(self._groups + 1)),
            "slots": Out(data.ArrayLayout(slot_layout(cfg), cfg.result_lanes)),
            "group_valid": Out(data.ArrayLayout(unsigned(cfg.result_lanes), self._groups)),
            "group_conflict": Out(self._groups),
        }
        if fixed8_pairs:
            members["fixed8_we"] = In(1)
            members["fixed8_wdata"] = In(data.ArrayLayout(unsigned(1), fixed8_pairs))
            members["fixed8"] = Out(data.ArrayLayout(unsigned(1), fixed8_pairs))
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        depth = self._cfg.weight_buf_depth
        m.submodules.w_mem = w_mem = Memory(shape=self._wbits, depth=2 * depth, init=[])
        wr, rd = w_mem.write_port(), w_mem.read_port()
        abits = index_bits(depth)

        def row(addr: Value, bank: Value) -> Value:     # a long pass's rows wrap to the other
            return Cat(addr[:abits], bank ^ addr[abits])

        m.d.comb += [wr.en.eq(self.w_we), wr.addr.eq(row(self.w_waddr, self.w_bank)),
                     wr.data.eq(self.w_wdata), rd.en.eq(self.rd_en),
                     rd.addr.eq(row(self.rd_addr, self.rd_bank)), self.rd_data.eq(rd.data)]
        # A slot's fields but its valid flag live in distributed RAM, one memory per lane of
        # a group (word ``bank * 2**gbits + group``), read asynchronously like the registers
        # they replace: a read is a LUT level where a register file was a wide multiplexer
        # of every group of both banks. The valid flags and the channels' out-buffer lanes
        # stay in registers: the conflicts and the serializer read them all.
        cfg = self._cfg
        lanes, groups = cfg.result_lanes, self._groups
        lane_bits = (lanes - 1).bit_length()
        gbits = index_bits(groups)
        fields = {name: shape for name, shape in slot_layout(cfg).members.items()
                  if name != "valid"}
        payload = data.StructLayout(fields)
        w_lane = self.slot_waddr[:lane_bits] if lane_bits else Const(0)
        w_group = self.slot_waddr[lane_bits:]
        for i in range(lanes):
            mem = Memory(shape=payload, depth=2 << gbits, init=[])
            m.submodules[f"slot_mem{i}"] = mem
            wr, rd = mem.write_port(), mem.read_port(domain="comb")
            m.d.comb += [wr.en.eq(self.slot_we & (w_lane == i)),
                         wr.addr.eq(Cat(w_group[:gbits], self.w_bank)),
                         wr.data.eq(Cat(*[getattr(self.slot_wdata, n) for n in fields])),
                         rd.addr.eq(Cat(self.group[:gbits], self.rd_bank))]
            for n in fields:
                m.d.comb += getattr(self.slots[i], n).eq(getattr(rd.data, n))
        lane_bits_v = (cfg.vec_len - 1).bit_length()
        valid = Signal(data.ArrayLayout(data.ArrayLayout(data.ArrayLayout(unsigned(1), lanes),
                                                         groups), 2))
        with m.If(self.slot_we):
            m.d.sync += valid[self.w_bank][w_group][w_lane].eq(self.slot_wdata.valid)
        # A group's conflict flag is found as its slots are written: a pass writes a group's
        # slots one after another, slot 0 first, so each valid slot is compared with the
        # out-buffer lanes of the slots before it in the group, kept in registers of their
        # own (``written``, no multiplexer over the groups and banks); the flag is updated a
        # cycle later from registers. Comparing every pair of every group of both banks in
        # every cycle cost 500 LUTs a group on zc706, and was its second-longest path.
        flag = data.StructLayout({"valid": unsigned(1), "lane": unsigned(lane_bits_v)})
        written = Signal(data.ArrayLayout(flag, lanes))
        new_lane = self.slot_wdata.channel[:lane_bits_v]
        earlier = Cat(*[(w_lane > k) & written[k].valid & (written[k].lane == new_lane)
                        for k in range(lanes - 1)])
        conflicts = Signal(data.ArrayLayout(data.ArrayLayout(unsigned(1), groups), 2))
        upd, hit, first = Signal(), Signal(), Signal()
        upd_bank, upd_group = Signal(), Signal.like(w_group)
        m.d.sync += upd.eq(self.slot_we)
        with m.If(self.slot_we):
            m.d.sync += [written[w_lane].eq(Cat(self.slot_wdata.valid, new_lane)),
                         hit.eq(self.slot_wdata.valid & earlier.any()), first.eq(w_lane == 0),
                         upd_bank.eq(self.w_bank), upd_group.eq(w_group)]
        with m.If(upd):
            m.d.sync += conflicts[upd_bank][upd_group].eq(
                Mux(first, 0, conflicts[upd_bank][upd_group]) | hit)
        for i in range(lanes):
            m.d.comb += self.slots[i].valid.eq(valid[self.rd_bank][self.group][i])
        for gi in range(groups):
            m.d.comb += [
                self.group_valid[gi].eq(valid[self.rd_bank][gi].as_value()),
                self.group_conflict[gi].eq(conflicts[self.rd_bank][gi])]
        if self._pairs:
            flags = Signal(data.ArrayLayout(data.ArrayLayout(unsigned(1), self._pairs), 2))
            with m.If(self.fixed8_we):
                m.d.sync += flags[self.w_bank].eq(self.fixed8_wdata)
            m.d.comb += self.fixed8.eq(flags[self.rd_bank])
        return m


class ConvCore(wiring.Component):
    """Runs passes of a convolution (or fc, as 1x1) over the act buffer's input map.

    The act buffer is outside, shared with the vector units: ``rd`` is its read port (word
    ``(y * width + x) * chunks + chunk``, lane ``i`` at bits ``[i * lane_bits, ...)``, see
    ``rtl.vector_units.buffer_read_signature``). ``rows`` (all ones unless driven) counts the
    map rows in it: a pass may start while the map still loads, and each output row waits
    until the rows its windows reach are in (``rtl.window.WindowGen``).

    Weights are double-buffered: two banks, each holding one pass (weight rows ``w_*``, one
    per step, laid out as ``rtl.interface.ddr`` says; result slots ``slot_*``; Fixed-8 pair
    flags ``fixed8_*``), written into bank ``w_bank``. ``start`` runs the pass in bank ``bank``;
    the other bank may be written meanwhile (writing the running bank is not allowed); a long
    pass (more steps than ``weight_buf_depth``) runs on into the other bank, which then stays
    unwritten until it is done. The
    core issues one activation vector per cycle to both arrays (zeros in the padding), and
    every output pixel's ``pot_rows + dsp_rows`` dot products leave requantized on ``o``,
    ``result_lanes`` slots a beat (a group of slots whose channels share ``channel %
    vec_len``, i.e. an output-buffer lane, and every group of a logits layer go one slot a
    beat), tagged with pixel and
    original channels. ``done`` pulses when the last result has been taken; the bank is free
    from then on.

    The pass takes ``out_h * out_w * kernel_h * kernel_w * chunks`` issue cycles when neither the
    arrays nor ``o`` stall; the result path stalls the arrays on layers with fewer steps per
    pixel than its beats per pixel: ``ceil((pot_rows + dsp_rows) / result_lanes)``, plus
    ``result_lanes - 1`` for each group whose slots share an output-buffer lane, or for every
    group of a logits layer (``rtl.cycle_model.result_beats``).
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        cfg = check_config(cfg, "ConvCore")
        self._cfg = cfg
        self._slots = cfg.slots
        self._wbits = weight_row_bits(cfg)
        members = {
            "layer": In(conv_layer_layout(cfg)),
            "start": In(1), "bank": In(1),
            "rows": In(rows_shape(cfg), init=rows_all(cfg)),
            "busy": Out(1),
            "done": Out(1),
            "rd": In(buffer_read_signature(cfg)),
            "w_bank": In(1),
            "w_we": In(1), "w_waddr": In(index_bits(cfg.max_pass_rows)),
            "w_wdata": In(self._wbits),
            "slot_we": In(1), "slot_waddr": In(index_bits(self._slots)),
            "slot_wdata": In(slot_layout(cfg)),
            "o": Out(stream.Signature(result_layout(cfg))),
        }
        if "fixed8" in cfg.weight_formats:
            members["fixed8_we"] = In(1)
            members["fixed8_wdata"] = In(data.ArrayLayout(unsigned(1), cfg.dsp_rows // 2))
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg, v = self._cfg, self._cfg.vec_len
        aw = act_width(cfg)
        L = self.layer

        m.submodules.pot = pot = PotArray(cfg=cfg)
        m.submodules.dsp = dsp = DspArray(cfg=cfg)
        pix_bits = 2 * index_bits(cfg.max_spatial + 1)
        vec_bits = len(self.o.payload.base)
        addr_bits = index_bits(cfg.out_buf_depth)
        logv = index_bits(v) if v > 1 else 0
        lanes = cfg.result_lanes
        sbits = index_bits(lanes)
        # The requantizer carries a beat's result fields but the values (``tag``). The
        # serializer gives their pixel, slots and channels; the out-buffer addresses and which
        # slot goes to each out-buffer lane are worked out from those in the requantizer's
        # second stage (``place``), from registers: straight from the slots' distributed RAM
        # the lane matching was the core's longest path.
        tag_layout = data.StructLayout({name: shape for name, shape
                                        in result_layout(cfg).members.items() if name != "value"})

        def place(tag: Value) -> Value:
            t = data.View(tag_layout, tag)
            addr = [(t.base + (t.channel[i] >> logv))[:addr_bits] for i in range(lanes)]
            # Which slot of the beat goes to each out-buffer lane (the beat's valid slots
            # have distinct lanes): an OR of the matches per lane, and per bit of its index.
            hit, src = [], []
            for lane in range(v):
                match = [t.valid[i] & ((t.channel[i] & (v - 1)) == lane) for i in range(lanes)]
                hit.append(Cat(*match).any())
                src.append(Cat(*[Cat(*[match[i] for i in range(lanes) if i >> b & 1]).any()
                                 for b in range(sbits)]))
            fields = {"addr": Cat(*addr), "hit": Cat(*hit), "src": Cat(*src)}
            return Cat(*[fields.get(name, t[name]) for name in tag_layout.members])

        m.submodules.post = post = PostProc(cfg=cfg, lanes=lanes, tag_bits=tag_layout.size,
                                            tag_map=place)
        m.submodules.window = gen = WindowGen(cfg=cfg)
        for name in window_layout(cfg).members:
            m.d.comb += getattr(gen.layer, name).eq(getattr(L, name))
        m.d.comb += gen.rows.eq(self.rows)

        # ---- buffers: two banks of weight rows, slots and Fixed-8 flags --------------------
        pairs = cfg.dsp_rows // 2 if "fixed8" in cfg.weight_formats else 0
        m.submodules.banks = banks = WeightBanks(cfg=cfg, rows=self._slots, fixed8_pairs=pairs)
        names = ["w_bank", "w_we", "w_waddr", "w_wdata", "slot_we", "slot_waddr", "slot_wdata"]
        if pairs:
            names += ["fixed8_we", "fixed8_wdata"]
        for name in names:
            m.d.comb += getattr(banks, name).eq(getattr(self, name))
        act_rd = self.rd
        run_bank = Signal()
        busy = Signal()
        with m.If(~busy):
            m.d.sync += run_bank.eq(self.bank)
        m.d.comb += banks.rd_bank.eq(run_bank)

        # ---- issue: the window generator walks (oy, ox, chunk, ky, kx) --------------------
        step = Signal(index_bits(cfg.max_pass_rows), name="step")
        first = gen.chunk_first & gen.win_first
        last = gen.chunk_last & gen.win_last

        # Stage 1: the act buffer's data for the vector issued the cycle before. Stage 2: that
        # vector from a register (the act buffer's block RAMs, and the multiplexer after them
        # where it is deeper than one, end there rather than in the arrays' first adders),
        # beside its weight row, read from the banks as the vector enters stage 2. A split
        # input's odd chunks hold high nibbles: the arrays take their products times 16
        # (``hi``).
        valid1, pad1, first1, last1 = Signal(), Signal(), Signal(), Signal()
        valid2, first2, last2 = Signal(), Signal(), Signal()
        hi1, hi2 = Signal(), Signal()
        step1 = Signal.like(step)
        both_ready = pot.i.ready & dsp.i.ready
        adv2 = ~valid2 | both_ready
        adv = ~valid1 | ~valid2 | both_ready     # ~valid1 | adv2, one level from the readies
        # The window generator steps on a register that always equals ``adv``, computed from
        # the next values of what ``adv`` is made of: its counters' clock enables then wait on
        # one flip-flop, not on the arrays' readies through the issue's bubbles.
        adv_reg = Signal(init=1, name="adv_reg")
        m.d.sync += adv_reg.eq(~Mux(adv, gen.valid, valid1) | ~Mux(adv2, valid1, valid2)
                               | (pot.ready_next & dsp.ready_next))
        m.d.comb += [gen.start.eq(self.start & ~busy), gen.adv.eq(adv_reg),
                     act_rd.en.eq(adv), banks.rd_en.eq(adv2),
                     act_rd.addr.eq(gen.addr), banks.rd_addr.eq(step1)]
        with m.If(adv):
            m.d.sync += [valid1.eq(gen.valid), pad1.eq(~gen.inside), first1.eq(first),
                         last1.eq(last), step1.eq(step)]
            if cfg.split_input:
                m.d.sync += hi1.eq(L.split & gen.chunk_odd)
        with m.If(~busy):
            m.d.sync += step.eq(0)
        with m.Elif(gen.valid & adv):
            m.d.sync += step.eq(Mux(last, 0, step + 1))

        # Buffer lanes are lane_bits wide; activations into a conv are unsigned act_width.
        lb = lane_bits(cfg)
        act_vec = Signal(v * aw)
        with m.If(adv2):
            m.d.sync += [valid2.eq(valid1), first2.eq(first1), last2.eq(last1), hi2.eq(hi1),
                         act_vec.eq(Mux(pad1, 0, Cat(*[act_rd.data[i * lb:i * lb + aw]
                                                       for i in range(v)])))]
        pot_bits = 4 * v * cfg.pot_rows
        m.d.comb += [
            pot.i.valid.eq(valid2 & both_ready), dsp.i.valid.eq(valid2 & both_ready),
            pot.i.payload.act.eq(act_vec), dsp.i.payload.act.eq(act_vec),
            pot.i.payload.weight.eq(banks.rd_data[:pot_bits]),
            dsp.i.payload.weight.eq(banks.rd_data[pot_bits:]),
            pot.i.payload.first.eq(first2), pot.i.payload.last.eq(last2),
            dsp.i.payload.first.eq(first2), dsp.i.payload.last.eq(last2),
        ]
        if pairs:
            m.d.comb += dsp.i.payload.fixed8.eq(banks.fixed8)
        if cfg.split_input:
            m.d.comb += [pot.i.payload.hi.eq(hi2), dsp.i.payload.hi.eq(hi2)]

        # ---- results: each array's output is taken as soon as it comes (the two latencies
        # differ), a pixel's results are joined, then requantized ``result_lanes`` slots a
        # beat; a group whose valid slots share an output-buffer lane goes one slot a beat.
        groups = -(-self._slots // lanes)
        acc = signed(cfg.acc_bits)
        # The PoT array is faster: its results wait in a FIFO deep enough for the latency
        # difference, so waiting for the DSP half of a pixel never stalls it.
        skew = max(0, dsp.latency - pot.latency)
        m.submodules.pot_fifo = pot_fifo = SyncFIFOBuffered(
            width=len(pot.o.payload.as_value()), depth=skew + 2)
        m.d.comb += [pot_fifo.w_stream.payload.eq(pot.o.payload),
                     pot_fifo.w_stream.valid.eq(pot.o.valid),
                     pot.o.ready.eq(pot_fifo.w_stream.ready)]
        res_pot = Signal(data.ArrayLayout(acc, cfg.pot_rows))
        m.d.comb += res_pot.eq(pot_fifo.r_stream.payload)
        pot_full = pot_fifo.r_stream.valid
        res_dsp = Signal(data.ArrayLayout(acc, cfg.dsp_rows))
        dsp_full = Signal()
        m.d.comb += dsp.o.ready.eq(~dsp_full)
        # A pixel's results, a shift register of groups: the serialized group is at its
        # head (no multiplexer over the groups between it and the requantizer).
        res = Signal(data.ArrayLayout(data.ArrayLayout(acc, lanes), groups))
        ser_busy = Signal()
        g = Signal(index_bits(groups + 1))
        # The slot of a conflicting group that the next beat sends (the beat's own, plus one),
        # one-hot (bit i: slot i; none once past the last): a register that shifts, so that
        # the next beat's enables wait on no adder and no comparison.
        sub_next = Signal(lanes + 1)
        first = Const(1, lanes + 1)             # slot 0: a group's first beat
        first_next = Const(0b10, lanes + 1)     # slot 1: the beat after it
        pixel = Signal(pix_bits)
        pix_base = Signal(vec_bits)     # pixel * out_chunks
        pix_end = Signal(vec_bits)      # pix_base + out_chunks

        m.d.comb += banks.group.eq(g)
        slot = banks.slots
        # The valid flags of group g's slots and whether they share a lane are registers here:
        # group 0's follow the banks (the slots are written long before the pass reads them);
        # the later groups' are loaded with a pixel into a shift register that moves on a
        # group at each group's end, so the next group's are always at its head (no
        # multiplexer over the groups, which grow with the rows).
        # A logits layer (mode LOGITS) sends every group one slot a beat, as if its slots
        # shared a lane: the out buffer's lanes then take a result's bits above the
        # activations' from one shared multiplexer (``rtl.engine.sequencer``).
        one_a_beat = Signal(groups)
        m.d.comb += one_a_beat.eq(banks.group_conflict
                                  | (L.mode == PostMode.LOGITS).replicate(groups))
        cur_valid, cur_conflict = Signal(lanes), Signal()
        g0_valid, g0_conflict = Signal(lanes), Signal()
        m.d.sync += [g0_valid.eq(banks.group_valid[0]), g0_conflict.eq(one_a_beat[0])]
        later = max(groups - 1, 1)
        ahead_valid = Signal(data.ArrayLayout(unsigned(lanes), later))
        ahead_conflict = Signal(later)
        # The slots that go in this beat (``enable``), whether there are none, and whether
        # this is the group's or the pixel's last beat are registers too, set with sub_next,
        # cur_valid and cur_conflict: the beat's end then waits only on the requantizer's
        # ready.
        def enables(valid, conflict, sub_at):
            return Cat(*[valid[i] & (~conflict | sub_at[i]) for i in range(lanes)])

        def last_beat(conflict, sub_at):
            return ~conflict | sub_at[lanes - 1]

        enable = Signal(lanes)
        none_enabled = Signal()          # enable == 0
        group_end = Signal()             # the group's last beat
        g_last = Signal()                # g == groups - 1
        pixel_end = Signal()             # group_end & g_last: the pixel's last beat
        beat_go = none_enabled | post.i.ready
        beat_done = ser_busy & beat_go
        pixel_done = beat_done & pixel_end
        load = pot_full & dsp_full & (~ser_busy | (pixel_end & beat_go))

        def beat_state(valid, conflict, sub_next, g_last_next):
            en = enables(valid, conflict, sub_next)
            ends = last_beat(conflict, sub_next)
            m.d.sync += [enable.eq(en), none_enabled.eq(en == 0), group_end.eq(ends),
                         g_last.eq(g_last_next), pixel_end.eq(ends & g_last_next)]

        m.d.comb += pot_fifo.r_stream.ready.eq(load)
        with m.If(dsp.o.valid & ~dsp_full):
            m.d.sync += [res_dsp.eq(dsp.o.payload), dsp_full.eq(1)]
        with m.If(beat_done):
            with m.If(group_end):
                m.d.sync += [sub_next.eq(first_next), g.eq(g + 1),
                             cur_valid.eq(ahead_valid[0]), cur_conflict.eq(ahead_conflict[0]),
                             ahead_valid.eq(ahead_valid.as_value() >> lanes),
                             ahead_conflict.eq(ahead_conflict >> 1),
                             res.eq(res.as_value() >> (lanes * cfg.acc_bits))]
                beat_state(ahead_valid[0], ahead_conflict[0], first, g == groups - 2)
            with m.Else():
                m.d.sync += sub_next.eq(sub_next << 1)
                beat_state(cur_valid, cur_conflict, sub_next, g_last)
        with m.If(pixel_done):
            m.d.sync += [ser_busy.eq(0), pixel.eq(pixel + 1),
                         pix_base.eq(pix_end), pix_end.eq(pix_end + L.out_chunks)]
        with m.If(load):
            m.d.sync += [res.eq(Cat(res_pot, res_dsp)), ser_busy.eq(1), g.eq(0),
                         sub_next.eq(first_next), dsp_full.eq(0), cur_valid.eq(g0_valid),
                         cur_conflict.eq(g0_conflict)]
            if groups > 1:
                m.d.sync += [ahead_valid.eq(Cat(*[banks.group_valid[k]
                                                  for k in range(1, groups)])),
                             ahead_conflict.eq(one_a_beat[1:])]
            beat_state(g0_valid, g0_conflict, first, groups == 1)

        tag_in = Signal(tag_layout)
        m.d.comb += [tag_in.pixel.eq(pixel), tag_in.base.eq(pix_base), tag_in.end.eq(pix_end),
                     tag_in.valid.eq(enable),
                     *[tag_in.channel[i].eq(slot[i].channel) for i in range(lanes)]]
        m.d.comb += [post.i.valid.eq(ser_busy & ~none_enabled), post.i.payload.mode.eq(L.mode),
                     post.i.payload.tag.eq(tag_in)]
        for i in range(lanes):
            m.d.comb += [post.i.payload.acc[i].eq(res[0][i]),
                         post.i.payload.bias[i].eq(slot[i].bias),
                         post.i.payload.mult[i].eq(slot[i].mult),
                         post.i.payload.shift[i].eq(slot[i].shift)]
        out = Signal.like(self.o.payload)
        tag_out = data.View(tag_layout, post.o.payload.tag)
        m.d.comb += [getattr(out, name).eq(tag_out[name]) for name in tag_layout.members]
        for i in range(lanes):
            m.d.comb += out.value[i].eq(post.o.payload.value[i])
        # The requantizer's output is a two-entry buffer of registers: its stall comes from a
        # flip-flop, not from ``o.ready``, and ``o`` is a register (no multiplexer behind it).
        m.d.comb += [self.o.valid.eq(post.o.valid), self.o.payload.eq(out),
                     post.o.ready.eq(self.o.ready)]

        # ---- completion ---------------------------------------------------------------------
        inflight = Signal(4)
        fire_in = post.i.valid & post.i.ready
        fire_out = post.o.valid & post.o.ready
        m.d.sync += inflight.eq(inflight + fire_in - fire_out)
        # Output pixels the generator has finished and the serializer not yet (``owed``), in
        # thermometer code (``owed_t[k]``: more than ``k`` owed), so that a step is a shift
        # behind the arrays' ready, with no adder, and "none owed" is a flip-flop. A pixel is
        # owed from its last beat's issue until the serializer has sent it; meanwhile that
        # beat holds one of the DSP side's places: stages 1 and 2, the DSP array's pipeline
        # (``latency`` stages and the second entry of its two-entry output buffer),
        # ``res_dsp``, the serializer: that bounds the code's length.
        owed_max = 2 + dsp.latency + 1 + 1 + 1
        owed_t = Signal(owed_max)
        none_owed = ~owed_t[0]
        owed = Signal(range(owed_max + 1))      # the count, for the bench that checks the bound
        m.d.comb += owed.eq(sum(owed_t[k] for k in range(owed_max)))
        self._owed, self._owed_max = owed, owed_max
        inc, dec = gen.valid & adv & last, pixel_done
        with m.If(~busy):
            m.d.sync += [pixel.eq(0), owed_t.eq(0), pix_base.eq(0), pix_end.eq(L.out_chunks)]
        with m.Elif(inc & ~dec):
            m.d.sync += owed_t.eq(Cat(1, owed_t[:-1]))
        with m.Elif(dec & ~inc):
            m.d.sync += owed_t.eq(owed_t[1:])
        finished = gen.done & none_owed & ~ser_busy & (inflight == 0) & \
            ~valid1 & ~valid2 & ~pot.o.valid & ~dsp.o.valid & ~pot_full & ~dsp_full
        with m.If(self.start & ~busy):
            m.d.sync += busy.eq(1)
        with m.Elif(busy & finished):
            m.d.sync += busy.eq(0)
        m.d.comb += [self.busy.eq(busy), self.done.eq(busy & finished)]
        return m
