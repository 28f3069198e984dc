"""The layer engine: the sequencer of a chain of descriptors, the act and out buffers, the
conv core and vector units, the prefetch of the next row tile (docs/engine.md).

One START runs ``DESC_COUNT`` consecutive descriptors: the row tiles of a layer
(``rtl.interface.tiling``) or a whole network. Each descriptor's input band and output band must
fit the on-chip buffers (else LAYER_TOO_LARGE). Conv weights are double-buffered: pass
``p + 1`` streams into one bank while pass ``p`` computes from the other. Weights come over
their own AXI4 masters (``HwConfig.weight_ports``), so a conv's first pass loads while its
input band loads over the feature-map master. A descriptor's write-back drains while the next
one runs, and while a conv or max-pool computes, the next row tile of the layer is fetched
and its band loaded into the other half of the act buffer (docs/engine.md, "Overlap").
"""

from __future__ import annotations

import functools
import operator
from contextlib import contextmanager
from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..axil import register_signature
from ..common import index_bits as _bits
from ..common import one_hot_fsm, ongoing_any, skid_output, stage
from ..config import HwConfig
from ..conv_core import ConvCore
from ..descriptor import descriptor_layout
from ..dma import AxiSignature, Dma, DmaReader
from ..interface.ddr import pass_block_words, row_words, word_bits
from ..interface.descriptor import DESC_MAGIC, Op, PostMode, descriptor_bytes
from ..interface.regmap import ErrorCode, RegisterMap
from ..vector_units import AddUnit, AvgPool, MaxPool, lane_bits
from ..window import rows_all, rows_shape, window_layout
from .check import CHECK_CYCLES, DescriptorCheck
from .loader import WeightLoader
from .unpack import MapReader, Unroller, vector_layout
from .writer import Writer

__all__ = ["AHEAD_CYCLES", "ELIG_CYCLES", "Engine", "weight_buses"]

#: Cycles the prefetch spends deciding whether the next descriptor's band loads early.
ELIG_CYCLES = 4
#: Cycles from the loader taking the next conv's fields to its going on with their passes
#: (the loader's rows per port settle; ``rtl.engine.loader.WeightLoader.follow``).
AHEAD_CYCLES = 5
#: Sums of a conv-add on their way from the adder's input to its write-back: the FIFO between
#: them holds this many (more than the round trip of a sum, so one flows every cycle).
FUSE_DEPTH = 8


def _pick(hits: list, values: list):
    """The value whose hit is set (at most one is): an OR of ANDs."""
    return functools.reduce(operator.or_, [Mux(h, x, 0) for h, x in zip(hits, values,
                                                                          strict=True)])


def weight_buses(cfg: HwConfig) -> dict[str, wiring.Member]:
    """The weight masters ``wbus0`` .. of the engine and the accelerator."""
    return {f"wbus{j}": Out(AxiSignature(addr_width=cfg.axi_addr_width,
                                         data_width=cfg.axi_data_width))
            for j in range(cfg.weight_ports)}


class Engine(wiring.Component):
    """Runs a chain of descriptors in DDR per START with the components of this package.

    Members
    -------
    regs : In(register_signature(regmap))
        The core side of the AXI4-Lite register slave.
    bus : Out(AxiSignature)
        The AXI4 master to DDR for descriptors, feature maps and results.
    wbus0, wbus1, ... : Out(AxiSignature)
        ``HwConfig.weight_ports`` AXI4 masters that read conv pass blocks (their write
        channels stay idle); port ``j`` reads its contiguous share of each pass block
        (``rtl.interface.ddr.port_span``).
    irq : Out(1)
        ``IRQ_STATUS & IRQ_ENABLE`` is not zero.
    """

    def __init__(self, *, cfg: HwConfig, regmap: RegisterMap) -> None:
        word_bits(cfg)  # raises for a bus width the DDR layouts do not support
        if cfg.vec_len & (cfg.vec_len - 1):
            raise ValueError(f"the engine needs a power-of-two vector length, not "
                             f"{cfg.vec_len} (HwConfig.pot_cols)")
        self._cfg, self._regmap = cfg, regmap
        super().__init__({
            "regs": In(register_signature(regmap)),
            "bus": Out(AxiSignature(addr_width=cfg.axi_addr_width,
                                    data_width=cfg.axi_data_width)),
            **weight_buses(cfg),
            "irq": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg, regs, v = self._cfg, self.regs, self._cfg.vec_len
        lb = lane_bits(cfg)
        word = word_bits(cfg)

        m.submodules.dma = dma = Dma(cfg=cfg)
        m.submodules.core = core = ConvCore(cfg=cfg)
        m.submodules.maxpool = maxpool = MaxPool(cfg=cfg)
        m.submodules.avgpool = avgpool = AvgPool(cfg=cfg)
        m.submodules.adder = adder = AddUnit(cfg=cfg, tag_bits=_bits(cfg.act_buf_depth + 1))
        wiring.connect(m, dma.bus, wiring.flipped(self.bus))
        m.d.comb += [dma.window_base.eq(regs.window_base.value),
                     dma.window_size.eq(regs.window_size.value)]
        n_ports = cfg.weight_ports
        wdmas = []
        for j in range(n_ports):
            m.submodules[f"wdma{j}"] = wd = DmaReader(cfg=cfg)
            wiring.connect(m, wd.bus, wiring.flipped(getattr(self, f"wbus{j}")))
            m.d.comb += [wd.window_base.eq(regs.window_base.value),
                         wd.window_size.eq(regs.window_size.value)]
            wdmas.append(wd)

        # ---- descriptor ------------------------------------------------------------------
        desc = Signal(descriptor_layout())
        desc_words = descriptor_bytes() * 8 // word
        d = desc

        def reg(expr, shape, name):
            return stage(m, expr, shape, name)

        # The quantities derived from the descriptor and the check's verdicts: a pipeline of
        # registers behind ``desc``; CHECK waits CHECK_CYCLES for its last stage, and they stay
        # stable while the descriptor runs.
        m.submodules.check = chk = DescriptorCheck(cfg=cfg)
        m.d.comb += [chk.desc.eq(desc), chk.window_base.eq(regs.window_base.value),
                     chk.window_size.eq(regs.window_size.value)]
        is_fused, is_conv, is_add = chk.is_fused, chk.is_conv, chk.is_add
        is_max, is_avg = chk.is_max, chk.is_avg
        chunks_in, chunks_out, in_pixels = chk.chunks_in, chk.chunks_out, chk.in_pixels
        wpv_in, wpv_out, pass_words = chk.wpv_in, chk.wpv_out, chk.pass_words
        in_vecs, row_stride = chk.in_vecs, chk.row_stride
        in_words, in2_words, out_words = chk.in_words, chk.in2_words, chk.out_words
        out_last = chk.out_last
        in_end, in2_end, out_end = chk.in_end, chk.in2_end, chk.out_end
        sgn = cfg.act_bits + 1

        base, limit = regs.window_base.value, chk.window_limit

        def inside(addr, words):
            return (addr >= base) & (addr + words * 8 <= limit) & (words != 0)

        def desc_bad(addr):
            # Whether a descriptor at ``addr`` is misaligned or outside the window: registered
            # where the pointer is set, so DESC_CMD tests flags.
            return Cat(addr[:3] != 0, ~inside(addr, desc_words))

        check_wait = Signal(range(CHECK_CYCLES + 1))

        # ---- the act buffer, shared by the conv core, the pools and the adder --------------
        m.submodules.act_mem = act_mem = Memory(shape=v * lb, depth=cfg.act_buf_depth, init=[])
        act_wr, act_rd = act_mem.write_port(), act_mem.read_port()
        own_addr, own_en = Signal.like(act_rd.addr), Signal()
        # A conv's or max-pool's band sits at act_base: 0, or, when it was loaded while the
        # previous row tile computed, where the prefetch put it (the buffer is a ring: the
        # addresses from act_base wrap at its power-of-two depth).
        act_base = Signal.like(act_rd.addr)
        for unit in (core, maxpool, avgpool):
            m.d.comb += unit.rd.data.eq(act_rd.data)
        m.d.comb += [
            act_rd.addr.eq(Mux(is_conv, core.rd.addr + act_base,
                               Mux(is_max, maxpool.rd.addr + act_base,
                                                          Mux(is_avg, avgpool.rd.addr,
                                                              own_addr)))),
            act_rd.en.eq(Mux(is_conv, core.rd.en, Mux(is_max, maxpool.rd.en,
                                                      Mux(is_avg, avgpool.rd.en, own_en)))),
        ]

        # ---- the out buffer: one memory per lane, so conv results land in several lanes at
        # their own addresses in one cycle; the vector units write all lanes of one word ------
        out_mems = [Memory(shape=32, depth=cfg.out_buf_depth, init=[]) for _ in range(v)]
        # Each lane's write port takes its address, data and enable from registers, a cycle
        # after the results and vectors below choose them (``out_wrs``): no path from the
        # conv core's output buffer through the lane matching into the block RAMs. A write only
        # ever lands later than its interlock allowed, and every read of a written vector
        # comes at least two cycles after it.
        out_wrs, out_rds = [], []
        for lane, mem in enumerate(out_mems):
            m.submodules[f"out_mem_{lane}"] = mem
            port = mem.write_port()
            wr = SimpleNamespace(en=Signal(name=f"out_wr_en_{lane}"),
                                 addr=Signal.like(port.addr, name=f"out_wr_addr_{lane}"),
                                 data=Signal.like(port.data, name=f"out_wr_data_{lane}"))
            m.d.comb += [port.en.eq(stage(m, wr.en, 1, f"out_we_{lane}")),
                         port.addr.eq(stage(m, wr.addr, len(port.addr), f"out_wa_{lane}")),
                         port.data.eq(stage(m, wr.data, len(port.data), f"out_wd_{lane}"))]
            out_wrs.append(wr)
            out_rds.append(mem.read_port())
        out_rd_addr, out_rd_en = Signal.like(out_rds[0].addr), Signal()
        for rd in out_rds:
            m.d.comb += [rd.addr.eq(out_rd_addr), rd.en.eq(out_rd_en)]

        m.d.comb += [avgpool.o.ready.eq(1), adder.o.ready.eq(1)]
        # Max-pool results come in the out buffer's vector order (pixel-major, chunk-minor):
        # a counter gives their address (and the one after it, for the interlock below).
        mp_addr = Signal.like(out_wrs[0].addr)
        mp_next = Signal(len(mp_addr) + 1)
        with m.If(maxpool.start):
            m.d.sync += [mp_addr.eq(0), mp_next.eq(1)]
        with m.Elif(maxpool.o.valid & maxpool.o.ready):
            m.d.sync += [mp_addr.eq(mp_next), mp_next.eq(mp_next + 1)]
        vec_addr, vec_en = Signal.like(out_wrs[0].addr), Signal()
        vec_data = Signal(data.ArrayLayout(signed(32), v))
        with m.If(is_max):
            p = maxpool.o.payload
            m.d.comb += [vec_addr.eq(mp_addr), vec_en.eq(maxpool.o.valid & maxpool.o.ready)]
            m.d.comb += [vec_data[i].eq(p.value[i]) for i in range(v)]
        with m.Elif(is_avg):
            p = avgpool.o.payload
            m.d.comb += [vec_addr.eq(p.chunk), vec_en.eq(avgpool.o.valid)]
            m.d.comb += [vec_data[i].eq(p.value[i]) for i in range(v)]
        with m.Else():
            p = adder.o.payload
            m.d.comb += [vec_addr.eq(p.tag), vec_en.eq(adder.o.valid)]
            m.d.comb += [vec_data[i].eq(p.value[i].as_signed()) for i in range(v)]
        r = core.o.payload
        conv_base = Signal.like(vec_addr)
        m.d.comb += conv_base.eq(r.base)        # pixel * chunks_out, counted in the core
        # A conv runs while the previous descriptor's write-back drains: a result waits until
        # the write-back has read its pixel's vectors (out_idx: vectors read so far).
        conv_end = Signal(len(conv_base) + 1)
        m.d.comb += conv_end.eq(r.end)
        fusing = Signal()              # a conv-add's residual add runs on the out buffer
        conv_fire = core.o.valid & core.o.ready
        # A result's value fits ``act_bits + 1`` bits, signed, but on a logits layer, whose
        # beats hold one result each (``rtl.conv_core.result_layout``): the lanes pick only
        # those low bits from the beat's results, and a logits value's high bits come from
        # one multiplexer shared by every lane. A full-width pick per lane was 64 x 32 bits
        # of 16-way multiplexers on zc706.
        low = cfg.act_bits + 1
        wide = stage(m, core.layer.mode == PostMode.LOGITS, 1, "out_wide")
        high = Signal(len(out_wrs[0].data) - low)
        m.d.comb += high.eq(_pick([r.valid[i] for i in range(cfg.result_lanes)],
                                  [r.value[i][low:] for i in range(cfg.result_lanes)]))
        for lane, wr in enumerate(out_wrs):
            # The core never puts two valid results for one lane in a beat, sums each
            # result's address and tells each lane which result is its own (``hit``, ``src``,
            # registers): the lane selects by that index.
            value = r.value.as_value().word_select(r.src[lane], len(r.value[0]))[:low]
            with m.If(is_conv):            # (a conv-add's sums go to its write-back)
                m.d.comb += [wr.en.eq(conv_fire & r.hit[lane]),
                             wr.addr.eq(r.addr.as_value().word_select(r.src[lane],
                                                                      len(r.addr[0]))),
                             wr.data.eq(Cat(value, Mux(wide, high,
                                                       value[-1].replicate(len(high)))))]
            with m.Else():
                m.d.comb += [wr.en.eq(vec_en), wr.addr.eq(vec_addr), wr.data.eq(vec_data[lane])]
        # ---- control state ----------------------------------------------------------------
        start = regs.ctrl.strobe & regs.ctrl.value.start
        busy = Signal()
        abort = Signal()               # soft reset asked: stop at the next safe point
        with m.If(regs.ctrl.strobe & regs.ctrl.value.soft_reset & busy):
            m.d.sync += abort.eq(1)
        done_flag = Signal()
        code = Signal(8)
        cycles = Signal(64)
        stalls = Signal(32)
        word_count = Signal(48)       # words taken from the read stream in this load
        act_addr = Signal(_bits(cfg.act_buf_depth) + 1)
        # The add's second input comes over weight port 0 while the first loads: each of its
        # vectors meets its partner in the act buffer once that has come.
        b_active = Signal()            # the second input streams
        b_ready = Signal()             # weight port 0 may hand over a word of it (a register)
        b_idx = Signal.like(act_addr)  # second-input vectors completed
        b_tag = Signal.like(act_addr)  # the one waiting for the adder
        b_fin = Signal()               # all of it has come
        b_err = Signal()               # with an error response
        a_err = Signal()               # the first input came with an error response
        b_pending = Signal()           # a full second-input vector waits for the adder
        add_clear = Signal()           # and the write-back under way has read its vector
        partner_in = Signal()          # the partner of vector b_idx is in the act buffer
        b_vec = Signal(vector_layout(cfg))
        adds_in_flight = Signal(4)
        desc_ptr = Signal(cfg.axi_addr_width)   # the descriptor being run
        desc_idx = Signal(16)                   # its index in the chain
        ptr_bad = Signal(2)            # desc_ptr is misaligned (bit 0), out of the window (1)
        next_bad = Signal(2)           # the same for desc_ptr + one descriptor (registered)
        pre_ptr_bad = Signal(2)        # the same for pre_ptr
        last_desc = Signal()           # desc_idx is the chain's last (registered)
        run_idx = Signal(16)           # conv pass the core runs next
        run_last = Signal()            # run_idx + 1 == passes (registered)
        running = Signal()             # the core runs pass run_idx
        # run_idx + 2 == passes, a register: a pass ends at least two cycles after run_idx
        # last changed (start, then done) and long after the descriptor did (CHECK), so it is
        # current by then and the adder and comparison reach no state logic.
        # (As run_idx == passes - 2, the subtraction a register of its own.)
        next_last = stage(m, run_idx == stage(m, d.passes - 2, len(d.passes), "passes_m2"), 1,
                          "next_last")
        conv_go = Signal()             # starts the loader on this descriptor's passes
        # Pass p of a descriptor is in bank p[0] ^ (the bank of its pass 0): the loader
        # (its bank0) and the core (run_bank0) agree on it; after the last pass of a row tile
        # the loader goes on with the next tile's passes (same weights) when that tile is
        # prefetched (carried), so they follow on in the banks.
        m.submodules.loader = loader = WeightLoader(cfg=cfg)
        full, load_code, carried = loader.full, loader.code, loader.carried
        loader_busy = loader.busy      # the loader takes a burst
        run_bank0 = Signal()
        ahead = Signal()               # the loader has the next descriptor's fields
        stop_loader = Signal()
        hold_loader = Signal()         # weight port 0 carries a conv-add's second input
        hold_r = Signal()              # the same a cycle later, as the loader sees it
        fuse_wait = Signal()           # a conv-add's second input is to start (a register)
        act_bad = Signal()             # a conv's input band came with an error response
        # A conv's band streams in while its first pass computes: ``live`` while it loads,
        # ``band_rows`` its complete rows so far, which the window generator waits for row by
        # row (``row_end``: the next vector ends a row; ``row_left``: vectors of the row
        # after the next one).
        live = Signal()
        band_rows = Signal(rows_shape(cfg))
        row_left = Signal.like(row_stride)
        row_end = Signal()
        conv_over = Signal()           # the last pass is done
        # A plain conv's write-back starts while its last pass computes: ``wb_own`` once the
        # writer has taken this descriptor's job, ``wb_hold`` while the last pass still runs;
        # ``wb_mark`` the out-buffer vectors before the pixel whose results the last pass
        # sends (final), ``wb_avail`` the same a cycle later (the out buffer's writes are
        # registered).
        wb_own, wb_hold = Signal(), Signal()
        wb_hold_late = Signal()        # wb_hold a cycle later, as wb_avail follows wb_mark
        early_go = Signal()            # the writer is offered this conv's job early
        out_go = Signal()              # the writer is offered the job in OUT_CMD (a register)
        wb_mark = Signal(_bits(cfg.out_buf_depth + 1) + 1)
        wb_avail = Signal.like(wb_mark)
        # The write-back of a descriptor's output drains on its own (its own copy of what it
        # needs) while the next descriptor of the chain is fetched and its input loaded.
        m.submodules.writer = writer = Writer(cfg=cfg)
        wiring.connect(m, writer.cmd, dma.wr_cmd)
        wiring.connect(m, writer.o, dma.wr_data)
        m.d.comb += [writer.done.eq(dma.wr_done), writer.error.eq(dma.wr_error),
                     writer.rd_data.eq(Cat(*[rd.data for rd in out_rds])),
                     writer.i.payload.addr.eq(d.out_addr), writer.i.payload.words.eq(out_words),
                     writer.i.payload.last.eq(out_last), writer.i.payload.wpv.eq(wpv_out),
                     writer.i.payload.bits.eq(d.out_bits), writer.i.payload.stream.eq(is_fused)]
        # A pooled conv: the writer walks the band in the out buffer (its kernel, stride and
        # left padding are the writer's own).
        wjob = writer.i.payload
        m.d.comb += [wjob.pool.eq(chk.is_pool), wjob.window.height.eq(d.out_h),
                     wjob.window.width.eq(d.out_w), wjob.window.chunks.eq(chunks_out),
                     wjob.window.row_stride.eq(chk.out_row), wjob.window.out_h.eq(chk.pool_h),
                     wjob.window.out_w.eq(chk.pool_w), wjob.window.pad_top.eq(chk.pool_top)]
        wb_busy = writer.busy          # a write-back is under way
        wb_err = writer.err            # a write-back came with an error response
        out_idx = writer.idx           # the out-buffer vectors it has read
        wb_lo = Signal(cfg.axi_addr_width + 2)      # bytes [wb_lo, wb_hi) being written
        wb_hi = Signal(cfg.axi_addr_width + 2)
        # Whether this descriptor's input maps overlap those bytes: a register (stage 5 behind
        # desc, like window_ok; wb_lo and wb_hi are set in OUT_CMD, before the descriptor).
        wb_hazard = reg(((d.in_addr < wb_hi) & (in_end > wb_lo))
                        | (is_add & (d.in2_addr < wb_hi) & (in2_end > wb_lo)), 1, "wb_hazard")
        # The next descriptor is fetched while a conv computes, and when it is the next row
        # tile of the same layer, its band is loaded into the other half of the act buffer.
        ndesc = Signal(descriptor_layout())
        in_conv = Signal()             # the engine is in CONV
        computing = Signal()           # in CONV, or pooling a max-pool
        armed = Signal()               # the prefetch may start for this descriptor
        pre_ptr = Signal(cfg.axi_addr_width)
        pre_base = Signal.like(act_base)
        pre_have = Signal()            # ndesc holds the next descriptor
        pre_band = Signal()            # and its band is in the act buffer at pre_base
        pre_bad = Signal()             # that band came with an error response
        pre_busy = Signal()            # the prefetch is reading
        pre_ready = Signal()           # the prefetch has finished
        pre_known = Signal()           # it has looked at the next descriptor (ELIG is over)
        pre_clear = Signal()           # the engine takes (or drops) what it prefetched
        filling = Signal()             # an input band loads into the act buffer (the
                                       # engine's or the prefetch's ACT_DATA)
        use_pre = Signal()             # the descriptor being checked came prefetched

        m.d.comb += [
            regs.status.value.busy.eq(busy), regs.status.value.done.eq(done_flag),
            regs.status.value.error.eq(code != ErrorCode.NONE),
            regs.error_code.value.eq(code),
            regs.cycles_lo.value.eq(cycles[:32]), regs.cycles_hi.value.eq(cycles[32:]),
            regs.stall_cycles.value.eq(stalls),
            regs.desc_done.value.eq(writer.count),
            self.irq.eq((regs.irq_status.value.as_value() & regs.irq_enable.value.as_value())
                        != 0),
        ]
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
        # Registered a cycle behind desc_ptr and desc_idx; read only once they have settled.
        # (DESC_COUNT - 1 and whether it is 0 are registers too: the count is written before
        # START, and stays.)
        count_m1 = stage(m, regs.desc_count.value - 1, len(regs.desc_count.value), "count_m1")
        count_zero = stage(m, regs.desc_count.value == 0, 1, "count_zero")
        # (Two stages: the next pointer, then its flags; they are read only at the next
        # advance or prefetch, long after desc_ptr moved.)
        next_ptr = stage(m, desc_ptr + descriptor_bytes(), len(desc_ptr) + 1, "next_ptr")
        m.d.sync += [next_bad.eq(desc_bad(next_ptr)), last_desc.eq(desc_idx == count_m1)]

        # Layer parameters of the units come from the descriptor.
        window = Signal(window_layout(cfg))
        m.d.comb += [window.height.eq(d.in_h), window.width.eq(d.in_w),
                     window.chunks.eq(chunks_in), window.row_stride.eq(row_stride),
                     window.out_h.eq(d.out_h), window.out_w.eq(d.out_w),
                     window.kernel_h.eq(d.kernel_h), window.kernel_w.eq(d.kernel_w),
                     window.stride.eq(d.stride),
                     window.pad_top.eq(d.pad_top), window.pad_left.eq(d.pad_left)]
        for name in window_layout(cfg).members:
            m.d.comb += getattr(core.layer, name).eq(getattr(window, name))
        m.d.comb += [core.layer.mode.eq(Mux(is_fused, PostMode.SIGNED, d.mode)),
                     core.layer.out_chunks.eq(chunks_out), core.layer.split.eq(chk.is_split),
                     maxpool.layer.eq(window)]
        ap = avgpool.layer
        m.d.comb += [ap.pixels.eq(in_pixels), ap.chunks.eq(chunks_in), ap.mult.eq(d.mult_a),
                     ap.shift.eq(d.shift_a)]
        ad = adder.layer
        m.d.comb += [ad.mult_a.eq(d.mult_a), ad.shift_a.eq(d.shift_a),
                     ad.signed_a.eq(is_fused | (d.in_bits == sgn)), ad.mult_b.eq(d.mult_b),
                     ad.shift_b.eq(d.shift_b), ad.signed_b.eq(d.in2_bits == sgn),
                     ad.relu.eq(d.mode == PostMode.RELU)]

        rd_word = dma.rd_data.payload
        # The engine's and the prefetch's data states cover every transfer of the reader
        # (from the command's cycle to ``rd_done``), so the read stream is always taken.
        m.d.comb += dma.rd_data.ready.eq(1)
        rd_take = dma.rd_data.valid

        # An input band (the engine's or the prefetch's) into the act buffer, one vector as
        # its last word comes; act_addr counts from the band's base (0, or pre_base).
        m.submodules.map_in = map_in = MapReader(cfg=cfg)
        m.d.comb += [map_in.bits.eq(d.in_bits), map_in.words.eq(wpv_in),
                     map_in.i.valid.eq(rd_take & filling),
                     map_in.i.payload.eq(rd_word)]
        # A pixel map that the engine unrolls (``unroll``) passes the unroller, which puts each
        # pixel beside the ones before it in its row; any other map passes it unchanged.
        band_in = map_in.o
        if cfg.tap_lanes:
            m.submodules.unroller = unroller = Unroller(cfg=cfg)
            m.d.comb += [unroller.on.eq(chk.is_unroll), unroller.row.eq(d.in_w),
                         unroller.i.valid.eq(map_in.o.valid),
                         unroller.i.payload.eq(map_in.o.payload),
                         map_in.o.ready.eq(unroller.i.ready)]
            band_in = unroller.o
        m.d.comb += band_in.ready.eq(1)
        # The write is a register behind the reader (no path from its unpacking into the
        # block RAM's data pins): a vector lands a cycle after it is counted, still before
        # any reader may ask for it (the row count and the add's partner flag are registers
        # behind the count, and a read's address is taken a cycle after it is asked).
        m.d.sync += [act_wr.addr.eq(act_addr), act_wr.data.eq(band_in.payload),
                     act_wr.en.eq(band_in.valid)]
        with m.If(band_in.valid):
            m.d.sync += act_addr.eq(act_addr + 1)
            with m.If(live):
                with m.If(row_end):
                    m.d.sync += [band_rows.eq(band_rows + 1), row_left.eq(row_stride - 1),
                                 row_end.eq(row_stride == 1)]
                with m.Else():
                    m.d.sync += [row_left.eq(row_left - 1), row_end.eq(row_left == 1)]
        m.d.comb += core.rows.eq(Mux(live, band_rows, rows_all(cfg)))
        with m.If(live & dma.rd_done):
            # The band is in: the prefetch may start, an error is reported from CONV.
            m.d.sync += [live.eq(0), act_bad.eq(dma.rd_error), armed.eq(~last_desc)]
        with m.If(dma.rd_done):
            m.d.sync += filling.eq(0)

        # The reader's commands come from four states (the engine's and the prefetch's
        # DESC_CMD and ACT_CMD); each asks with ``valid`` alone, and what it asks for is
        # chosen once, by state, after both machines (``rd_cmd_payload``), so that the
        # payload is a shallow multiplexer, not a chain of every state's conditions.
        def band_read(at) -> None:
            # Start reading an input band into the act buffer from vector ``at``.
            m.d.comb += dma.rd_cmd.valid.eq(1)
            with m.If(dma.rd_cmd.ready):
                m.d.comb += map_in.start.eq(1)
                if cfg.tap_lanes:
                    m.d.comb += unroller.start.eq(1)
                m.d.sync += [act_addr.eq(at), filling.eq(1)]

        # A descriptor (the engine's or the prefetch's) over the same reader, word by word.
        def desc_read() -> None:
            m.d.comb += dma.rd_cmd.valid.eq(1)
            with m.If(dma.rd_cmd.ready):
                m.d.sync += word_count.eq(0)

        def desc_take(target) -> None:
            with m.If(rd_take):
                m.d.sync += [target.as_value().word_select(word_count[:4], word).eq(rd_word),
                             word_count.eq(word_count + 1)]

        # The adder takes a second-input vector with its partner read from the act buffer.
        # Input a: from the act buffer (an add), or a conv-add's result from the out buffer
        # (its lanes' low bits: the signed result fits them).
        out_a = Cat(*[rd.data[:lb] for rd in out_rds])
        m.d.comb += [adder.i.payload.a.eq(Mux(fusing, out_a, act_rd.data)),
                     adder.i.payload.b.eq(b_vec), adder.i.payload.tag.eq(b_tag)]
        add_in = adder.i.valid & adder.i.ready
        add_out = adder.o.valid & adder.o.ready
        m.d.sync += adds_in_flight.eq(adds_in_flight + add_in - add_out)
        # A conv-add's sums go straight to its write-back (a ``stream`` job, taken as the
        # second input starts), which never reads the out buffer meanwhile, through a FIFO of
        # FUSE_DEPTH: the adder cannot wait, so no more sums are in it and the FIFO than the
        # FIFO holds (``fuse_ahead``, a register: a sum counts from the adder's input to its
        # leaving the FIFO, about six cycles, so a sum a cycle flows).
        m.submodules.fuse_fifo = fuse_fifo = SyncFIFOBuffered(width=v * lb, depth=FUSE_DEPTH)
        fuse_ahead = Signal(range(FUSE_DEPTH + 1))
        # A conv-add's second input starts once its last pass runs (or once the conv is over,
        # in FUSE), the write-back before has drained, the loader is held and idle and weight
        # port 0's reader and the writer take commands: a register (all of it only moves that
        # way meanwhile), so the second input's command and the write-back's job are given
        # from it, outside the state machine; it counts while ``fuse_wait`` still stands (an
        # error the conv reports meanwhile clears that).
        fuse_go = Signal()
        m.d.sync += fuse_go.eq(fuse_wait & hold_r & ~fuse_go & ~abort & ~wb_err & ~wb_busy
                               & ~loader_busy & wdmas[0].cmd.ready & writer.i.ready)
        # (Not once the run is finishing: an error clears ``fuse_wait`` there, a cycle after
        # it is found, so that the flag waits on no error condition. ``finishing`` is the
        # first cycle in FINISH, a register set as the state moves there (and the cycle before
        # a conv leaves on an error); from the next cycle ``fuse_wait`` is low: no decoded
        # state on the way to the writer's job.)
        finishing = Signal()
        m.d.sync += finishing.eq(0)
        conv_fail = Signal()           # the conv leaves on an error next cycle (CONV, below)
        fuse_start = fuse_go & fuse_wait & ~finishing
        fuse_pop = fuse_fifo.r_rdy & fuse_fifo.r_en
        m.d.sync += fuse_ahead.eq(fuse_ahead + (add_in & fusing) - fuse_pop)
        # The loader holds off weight port 0 from then until the adds are over.
        m.d.comb += hold_loader.eq(fuse_wait | fusing)
        # The second input's words come from weight port 0 through a two-entry buffer of their
        # own, whose ready is a register: the partner and adder interlocks behind the map
        # reader's ready reach the buffer, not the DMA reader's wide output register. (It
        # takes words only while the second input streams; any left when it stops on an
        # error are dropped.)
        b_words = stream.Signature(word_bits(cfg)).create()
        m.d.comb += b_ready.eq(skid_output(m, b_words, b_active & wdmas[0].o.valid,
                                           wdmas[0].o.payload))
        # (The DMA reader is done once its last word is in the second input's buffer: the
        # buffer, emptied into the map reader, holds no word then either.)
        add_over = (b_fin & ~b_words.valid & ~b_pending & (adds_in_flight == 0)
                    & ~adder.o.valid)
        with m.If(fusing & add_over):
            m.d.sync += [b_active.eq(0), fusing.eq(0)]
        with m.If(fuse_start):
            m.d.sync += [b_active.eq(1), fusing.eq(1), fuse_wait.eq(0), b_idx.eq(0),
                         b_pending.eq(0), b_fin.eq(0), b_err.eq(0), a_err.eq(0),
                         fuse_ahead.eq(0), wb_own.eq(1), wb_lo.eq(d.out_addr),
                         wb_hi.eq(out_end)]
        m.d.comb += [fuse_fifo.w_data.eq(adder.o.payload.value.as_value()),
                     fuse_fifo.w_en.eq(adder.o.valid & fusing),
                     writer.vin.valid.eq(fuse_fifo.r_rdy),
                     writer.vin.payload.eq(fuse_fifo.r_data),
                     fuse_fifo.r_en.eq(writer.vin.ready)]
        # The second input: a vector completes once its partner is in the act buffer (read
        # that cycle) and the previous one has gone to the adder, which writes its result once
        # the write-back under way has read that vector of the out buffer.
        m.submodules.map_in2 = map_in2 = MapReader(cfg=cfg)
        m.d.comb += [
            map_in2.bits.eq(d.in2_bits), map_in2.words.eq(chk.wpv_in2),
            map_in2.i.payload.eq(b_words.payload),
            map_in2.i.valid.eq(b_active & b_words.valid),
            b_words.ready.eq(~b_active | map_in2.i.ready),
            map_in2.o.ready.eq(partner_in & (~b_pending | add_in)),
            adder.i.valid.eq(b_pending & add_clear),
        ]
        with m.If(fuse_start):
            m.d.comb += [wdmas[0].cmd.valid.eq(1), map_in2.start.eq(1), writer.i.valid.eq(1)]
        with m.If(add_in):
            m.d.sync += b_pending.eq(0)
        # The partner of vector b_idx is read whenever the one read before is no longer
        # needed (none waits for the adder, or the adder takes it): so it is read in the cycle
        # the vector completes, and held while the vector waits.
        with m.If(b_active & (~b_pending | add_in)):
            with m.If(fusing):
                m.d.comb += [out_rd_addr.eq(b_idx), out_rd_en.eq(1)]
            with m.Else():
                m.d.comb += [own_addr.eq(b_idx), own_en.eq(1)]
        b_take = map_in2.o.valid & map_in2.o.ready
        with m.If(b_take):
            m.d.sync += [b_vec.eq(map_in2.o.payload), b_pending.eq(1), b_tag.eq(b_idx),
                         b_idx.eq(b_idx + 1)]
        # The adder's interlock with the write-back under way, from registers of the cycle
        # before (no path from the write-back's counter into weight port 0's ready): whether
        # the waiting vector (b_tag, or b_idx when a vector was taken in that cycle) had been
        # read by then. While the second input streams, the write-back only moves on and
        # ``wb_busy`` only falls (the add's own write-back starts after it), so the register
        # is at worst a cycle late, never early. A conv-add's own write-back reads none of the
        # out buffer; its adder waits instead for room in the FIFO, from the count of the
        # cycle before with one sum of margin (it grows by at most one a cycle).
        tag_clear, idx_clear, took = Signal(), Signal(), Signal()
        room = fuse_ahead < FUSE_DEPTH - 1
        m.d.sync += [tag_clear.eq(Mux(is_fused, room, ~wb_busy | (b_tag < out_idx))),
                     idx_clear.eq(Mux(is_fused, room, ~wb_busy | (b_idx < out_idx))),
                     took.eq(b_take)]
        m.d.comb += add_clear.eq(Mux(took, idx_clear, tag_clear))
        # Likewise whether the partner of vector b_idx is there, from the cycle before: b_idx
        # then, or the one after it when a vector was taken. An add's partner is in the act
        # buffer once the first input has come that far (it only grows while the second
        # streams; both clear as the second input starts, when the act buffer's count starts
        # again from 0); a conv-add's is in the out buffer once the last pass has marked it
        # final (``wb_avail``, which only grows while the pass runs, or all once it is over).
        idx_in, next_in = Signal(), Signal()

        def partner(j):
            return Mux(is_fused, ~wb_hold_late | (j < wb_avail), j < act_addr)

        m.d.sync += [idx_in.eq(partner(b_idx)), next_in.eq(partner(b_idx + 1))]
        m.d.comb += partner_in.eq(Mux(took, next_in, idx_in))
        with m.If(b_active & wdmas[0].done):
            m.d.sync += [b_fin.eq(1), b_err.eq(wdmas[0].error)]

        # The run ends in FINISH, or, on an error, in a copy of it of the state that found the
        # error (``FAIL_<state>``: the same body, below). Each of these one-hot state bits then
        # waits on one state's exit conditions, not on those of every state (whose union was
        # the engine's deepest path).
        here = SimpleNamespace(state="IDLE")
        fail_states: list[str] = []

        @contextmanager
        def state(name: str):
            here.state = name
            with m.State(name):
                yield

        def fail(error: ErrorCode) -> None:
            m.d.sync += [code.eq(error), finishing.eq(1)]
            exit_state = f"FAIL_{here.state}"
            if exit_state not in fail_states:
                fail_states.append(exit_state)
            m.next = exit_state

        def advance() -> None:
            # The output is handed to the write-back: on to the next descriptor of the chain.
            m.d.sync += wb_own.eq(0)
            with m.If(~last_desc):
                m.d.sync += [desc_idx.eq(desc_idx + 1),
                             desc_ptr.eq(desc_ptr + descriptor_bytes()), ptr_bad.eq(next_bad)]
                m.next = "DESC_CMD"
            with m.Else():
                m.d.sync += finishing.eq(1)
                m.next = "FINISH"

        def finish() -> None:
            # The run ends when the last write-back has drained. A conv-add's second input that
            # had yet to start never does.
            m.d.sync += fuse_wait.eq(0)
            final = Mux(code != ErrorCode.NONE, code,
                        Mux(wb_err, ErrorCode.AXI_RESPONSE, ErrorCode.NONE))
            with m.If(~wb_busy & ~pre_busy & ~loader_busy):
                m.d.comb += pre_clear.eq(1)
                m.d.sync += [busy.eq(0), done_flag.eq(1), code.eq(final)]
                m.d.comb += [regs.irq_status.set.done.eq(1),
                             regs.irq_status.set.error.eq(final != ErrorCode.NONE)]
                m.next = "IDLE"

        with one_hot_fsm(m, name="engine") as engine_fsm:
            with state("IDLE"):
                m.d.comb += [writer.clear.eq(start), loader.clear.eq(start)]
                with m.If(start):
                    m.d.sync += [busy.eq(1), done_flag.eq(0), code.eq(ErrorCode.NONE),
                                 cycles.eq(0), stalls.eq(0), desc_idx.eq(0), abort.eq(0),
                                 desc_ptr.eq(regs.desc_addr.value),
                                 ptr_bad.eq(desc_bad(regs.desc_addr.value)),
                                 armed.eq(0), use_pre.eq(0),
                                 fuse_wait.eq(0), live.eq(0), conv_over.eq(0),
                                 wb_own.eq(0), wb_hold.eq(0), ahead.eq(0),
                                 fusing.eq(0), b_active.eq(0)]
                    m.next = "DESC_CMD"
                    with m.If(count_zero):
                        fail(ErrorCode.BAD_DESCRIPTOR)
            with state("DESC_CMD"):
                with m.If(abort):
                    fail(ErrorCode.ABORTED)
                with m.Elif(pre_busy):
                    m.d.sync += stalls.eq(stalls + 1)         # the prefetch is reading it
                with m.Elif(pre_ready & pre_have):
                    m.d.comb += pre_clear.eq(1)
                    m.d.sync += [desc.eq(ndesc), use_pre.eq(pre_band), check_wait.eq(0)]
                    m.next = "CHECK"
                with m.Elif(ptr_bad[0]):
                    fail(ErrorCode.MISALIGNED_ADDR)
                with m.Elif(ptr_bad[1]):
                    fail(ErrorCode.ADDR_OUT_OF_WINDOW)
                with m.Else():
                    m.d.comb += pre_clear.eq(1)
                    desc_read()
                    with m.If(dma.rd_cmd.ready):
                        m.d.sync += use_pre.eq(0)
                        m.next = "DESC_DATA"
            with state("DESC_DATA"):
                m.d.sync += stalls.eq(stalls + 1)
                desc_take(desc)
                with m.If(dma.rd_done):
                    m.d.sync += check_wait.eq(0)
                    m.next = "CHECK"
                    with m.If(dma.rd_error):
                        fail(ErrorCode.AXI_RESPONSE)
            with state("CHECK"):
                m.d.sync += check_wait.eq(check_wait + 1)
                # An add's second-input state starts afresh (nothing streams now): here, not
                # as it starts in ACT_CMD, so that the wide counter's reset waits on no more
                # than this state.
                m.d.sync += [b_idx.eq(0), b_pending.eq(0), b_fin.eq(0), b_err.eq(0),
                             a_err.eq(0)]
                with m.If(check_wait != CHECK_CYCLES - 1):
                    pass
                with m.Elif(~chk.shape_ok):
                    fail(ErrorCode.BAD_DESCRIPTOR)
                with m.Elif(~chk.size_ok):
                    fail(ErrorCode.LAYER_TOO_LARGE)
                with m.Elif(~chk.aligned):
                    fail(ErrorCode.MISALIGNED_ADDR)
                with m.Elif(~chk.window_ok):
                    fail(ErrorCode.ADDR_OUT_OF_WINDOW)
                with m.Else():
                    m.next = "ACT_CMD"
            with state("ACT_CMD"):
                # The loader's fields are this descriptor's again (the same as the next's it
                # may have taken: this is that one, checked).
                m.d.sync += [act_bad.eq(0), ahead.eq(0)]
                with m.If(use_pre):
                    # The band is in already (the prefetch checked it is the next row tile of
                    # the same layer, a conv or a max-pool).
                    m.d.sync += [act_base.eq(pre_base), act_bad.eq(pre_bad), use_pre.eq(0),
                                 run_idx.eq(0), run_last.eq(d.passes == 1), running.eq(0),
                                 armed.eq(~last_desc)]
                    with m.If(is_conv):
                        # The weights start loading, unless the loader carried on with them.
                        m.d.comb += [conv_go.eq(~abort & ~carried), loader.clear.eq(1)]
                        m.d.sync += run_bank0.eq(Mux(carried, loader.bank0, 0))
                        m.next = "CONV"
                    with m.Else():
                        m.next = "POOL"
                # A map that the write-back under way still writes (a chain through a
                # network: this layer reads the last one's output) waits for it.
                with m.Elif(wb_busy & wb_hazard):
                    m.d.sync += stalls.eq(stalls + 1)
                with m.Elif(is_add & ~wdmas[0].cmd.ready):
                    m.d.sync += stalls.eq(stalls + 1)
                with m.Else():
                    m.next = "ACT_GO"
            with state("ACT_GO"):
                # The band's read is asked in a state of its own, a cycle after the waits
                # above: the read command, the loader's start and an add's second input then
                # wait on the reader's ready and abort, not on a chain of every condition.
                # The band's row counters start here whatever the reader says (no band of the
                # engine streams now), so their next value waits on no handshake.
                m.d.sync += [band_rows.eq(0), row_left.eq(row_stride - 1),
                             row_end.eq(row_stride == 1)]
                with m.If(is_add & ~wdmas[0].cmd.ready):
                    m.d.sync += stalls.eq(stalls + 1)
                with m.Else():
                    m.d.sync += [act_base.eq(0), run_bank0.eq(Mux(carried, loader.bank0, 0))]
                    with m.If(abort):
                        fail(ErrorCode.ABORTED)
                    with m.Else():
                        band_read(0)
                        with m.If(dma.rd_cmd.ready & is_conv):
                            # The passes start while the band streams in.
                            m.d.sync += [live.eq(1), conv_over.eq(0),
                                         run_idx.eq(0), run_last.eq(d.passes == 1),
                                         running.eq(0)]
                            m.next = "CONV"
                        with m.Elif(dma.rd_cmd.ready):
                            m.next = "ACT_DATA"
                    # A conv's weights load over their own masters while its input band loads;
                    # an add's second input comes over weight port 0 at the same time.
                    # (unless the loader went on with them from the descriptor before).
                    m.d.comb += [conv_go.eq(is_conv & ~abort & dma.rd_cmd.ready & ~carried),
                                 loader.clear.eq(is_conv & dma.rd_cmd.ready)]
                    b_go = is_add & ~abort & dma.rd_cmd.ready
                    m.d.comb += wdmas[0].cmd.valid.eq(b_go)
                    with m.If(b_go):
                        m.d.comb += map_in2.start.eq(1)
                        m.d.sync += [b_active.eq(1), idx_in.eq(0), next_in.eq(0), took.eq(0)]
            with state("ACT_DATA"):
                m.d.sync += stalls.eq(stalls + 1)
                with m.If(dma.rd_done):
                    with m.If(is_add):
                        # Reported once the second input has come too.
                        m.d.sync += a_err.eq(dma.rd_error)
                        m.next = "B_DRAIN"
                    with m.Else():
                        m.d.sync += armed.eq(is_max & ~last_desc)
                        m.next = "POOL"
                    with m.If(dma.rd_error & ~is_add):
                        fail(ErrorCode.AXI_RESPONSE)
            # -- a conv-add: once the out buffer is the conv's alone (the write-back before has
            # drained) and weight port 0 is free, the second input streams in over it, each of
            # its vectors is added to the conv's result, and the sums go to the write-back,
            # whose job is taken at once --
            with state("FUSE"):
                with m.If(wb_own | fuse_start):     # (its commands and job: above)
                    m.next = "B_DRAIN"
                with m.Elif(abort):
                    fail(ErrorCode.ABORTED)
                with m.Elif(wb_err):
                    fail(ErrorCode.AXI_RESPONSE)
                with m.Else():
                    m.d.sync += stalls.eq(stalls + 1)
            # -- residual add: the rest of the second input, then the adder drains --
            with state("B_DRAIN"):
                m.d.sync += stalls.eq(stalls + 1)
                with m.If(add_over):
                    m.d.sync += [b_active.eq(0), fusing.eq(0)]
                    with m.If(a_err | b_err):
                        fail(ErrorCode.AXI_RESPONSE)
                    with m.Else():
                        m.next = "OUT_CMD"
            # -- pools --
            with state("POOL"):
                m.d.comb += computing.eq(is_max)
                # The average pool writes the out buffer once the previous write-back is done
                # (a max-pool's results wait until it has read their vectors).
                with m.If(wb_err):
                    fail(ErrorCode.AXI_RESPONSE)
                with m.Elif(wb_busy & is_avg):
                    m.d.sync += stalls.eq(stalls + 1)
                with m.Else():
                    m.d.comb += [maxpool.start.eq(is_max), avgpool.start.eq(is_avg)]
                    m.next = "POOL_WAIT"
            with state("POOL_WAIT"):
                m.d.comb += computing.eq(is_max)
                with m.If((is_max & maxpool.done) | (is_avg & avgpool.done)):
                    m.next = "OUT_CMD"
            # -- convolution: the core runs the passes the loader has put in the banks --
            with state("CONV"):
                m.d.comb += computing.eq(1)
                bank = run_idx[0] ^ run_bank0
                m.d.comb += core.bank.eq(bank)
                with m.If(~core.busy):
                    m.d.sync += stalls.eq(stalls + 1)

                def conv_next() -> None:
                    # (OUT_CMD goes on at once when the write-back is under way already; a
                    # conv-add's second input may stream already, or wait to.)
                    with m.If(is_fused):
                        with m.If(~fuse_wait & ~wb_own):    # (wb_own: it started already)
                            m.d.sync += fuse_wait.eq(1)
                        m.next = "FUSE"
                    with m.Else():
                        m.next = "OUT_CMD"

                # The conv ends the cycle after its last pass (a register: the core's done
                # reaches no state logic), and not before its band is in (a stride may leave
                # the last rows unread).
                # A conv-add's second input starts streaming over weight port 0 as its last
                # pass starts, once the write-back before has drained (the loader holds off
                # from then on; the pass marks vectors final for the adder as it goes).
                with m.If(running & run_last & is_fused & ~fuse_wait & ~fusing & ~wb_own
                          & ~wb_busy & ~abort & ~act_bad & ~wb_err
                          & (load_code == ErrorCode.NONE)):
                    m.d.sync += fuse_wait.eq(1)
                # An error (a loader error while it carries the next descriptor's passes is
                # that one's) holds the conv here: what runs finishes, the loader ends its
                # burst and the band comes, then it is reported. That verdict is a register
                # (``conv_fail``, with ``finishing``, so that a conv-add's second input does
                # not start meanwhile): the state leaves on it a cycle later, so the exits'
                # logic waits on it instead of on every unit's busy flag. (Every error is
                # sticky, and nothing starts once one stands.)
                error = ((load_code != ErrorCode.NONE) & ~carried) | abort | act_bad | wb_err
                with m.If(conv_over & ~live & ~error):
                    m.d.sync += conv_over.eq(0)
                    conv_next()
                with m.If(conv_fail):
                    m.d.sync += conv_fail.eq(0)
                    fail(Mux(abort, ErrorCode.ABORTED,
                             Mux(act_bad | wb_err, ErrorCode.AXI_RESPONSE, load_code)))
                with m.Elif(error):
                    with m.If(~running & ~core.busy & ~loader_busy & ~live & ~fusing
                              & ~fuse_start):
                        m.d.sync += [conv_fail.eq(1), finishing.eq(1)]
                with m.Elif(~running & ~conv_over & ~core.busy & full.bit_select(bank, 1)):
                    m.d.comb += core.start.eq(1)
                    m.d.sync += [running.eq(1), wb_hold.eq(run_last)]
                with m.If(running & core.done):
                    m.d.sync += wb_hold.eq(0)
                    m.d.comb += [loader.release.eq(1), loader.release_bank.eq(bank)]
                    m.d.sync += [running.eq(0), run_idx.eq(run_idx + 1),
                                 run_last.eq(next_last)]
                    with m.If(run_last):
                        m.d.sync += conv_over.eq(1)
            # -- hand the out buffer to the write-back, then go on with the chain --
            with state("OUT_CMD"):
                with m.If(out_go):       # the job is given (below)
                    m.d.sync += [wb_lo.eq(d.out_addr), wb_hi.eq(out_end)]
                    advance()
                with m.Elif(abort):
                    fail(ErrorCode.ABORTED)
                with m.Elif(wb_err):
                    fail(ErrorCode.AXI_RESPONSE)
                with m.Elif(wb_own):
                    advance()            # its write-back is under way
                with m.Else():
                    m.d.sync += stalls.eq(stalls + 1)
            for name in ["FINISH", *fail_states]:
                with m.State(name):
                    finish()
        m.d.comb += [in_conv.eq(engine_fsm.ongoing("CONV")),
                     stop_loader.eq(ongoing_any(engine_fsm, "FINISH", *fail_states))]

        # A max-pool result waits for the write-back under way to have read its vector: a
        # register, from the cycle before, that asks for the vector after it (which covers a
        # result taken in that cycle; the write-back only moves on meanwhile).
        mp_clear = Signal()
        m.d.sync += mp_clear.eq(~wb_busy | (mp_next < out_idx))
        # The last pass's results (pixel by pixel) mark the vectors before theirs final for
        # this descriptor's own write-back, which they do not wait for.
        with m.If(core.start):
            m.d.sync += [wb_mark.eq(0), wb_avail.eq(0)]
        with m.Else():
            with m.If(wb_hold & core.o.valid & core.o.ready):
                m.d.sync += wb_mark.eq(conv_base)
            m.d.sync += wb_avail.eq(wb_mark)
        m.d.sync += wb_hold_late.eq(wb_hold)
        m.d.comb += writer.avail.eq(Mux(wb_hold_late, wb_avail,
                                        (1 << len(writer.avail)) - 1))
        # A conv's last pass runs: once the write-back before has drained, this one starts
        # (a plain conv's; no error pending, the band in, the first pixel sent). The verdict is
        # a register (what it reads only moves one way meanwhile; a job taken as the pass ends
        # is met in OUT_CMD), and the job is offered outside the state machine (``running``
        # holds the engine in CONV).
        early = stage(m, in_conv & running & run_last & ~wb_own & ~wb_busy & ~is_fused
                      & ~chk.is_pool & ~live & ~act_bad & ~abort & ~wb_err
                      & (load_code == ErrorCode.NONE) & (wb_avail != 0), 1, "wb_early")
        # OUT_CMD gives the write-back its job once no write-back is under way and the writer
        # takes one: a register (in OUT_CMD only the write-back moves, and only towards
        # that), from which the job is offered outside the state machine.
        m.d.sync += out_go.eq(engine_fsm.ongoing("OUT_CMD") & ~out_go & ~abort & ~wb_err
                              & ~wb_own & ~wb_busy & writer.i.ready)
        with m.If(out_go):
            m.d.comb += writer.i.valid.eq(1)
        m.d.comb += early_go.eq(early & running & ~wb_own)
        with m.If(early_go):
            m.d.comb += writer.i.valid.eq(1)
            with m.If(writer.i.ready):
                m.d.sync += [wb_own.eq(1), wb_lo.eq(d.out_addr), wb_hi.eq(out_end)]
        m.d.comb += [core.o.ready.eq(~wb_busy | wb_own | (conv_end <= out_idx)),
                     maxpool.o.ready.eq(mp_clear)]

        # ---- the prefetch: while a conv computes, the next descriptor of the chain, and when
        # it is the next row tile of the same layer (same input width, channels and format),
        # its band into the act buffer right after this one's (a ring: the addresses wrap),
        # where both fit. A band that begins inside this one (the rows that the tiles'
        # windows share) is read from where this one ends: its first rows are those in the
        # buffer already. A band that this conv's output or the write-back under way covers
        # is not read early. ----
        nd = ndesc
        depth = cfg.act_buf_depth
        # A pipeline of registers behind ndesc, as behind desc: ELIG waits ELIG_CYCLES for it.
        dp = _bits(depth) + 2                    # the act-buffer counts' low bits compared
        # Narrow enough for a descriptor the check accepts (rows at most max_spatial < 2**16,
        # byte ends at most the window's limit, ``ew`` bits): the next descriptor is only
        # looked at here; one that these widths wrap fails its check when the engine takes it,
        # and its band, read from wherever, is never used.
        ew = cfg.axi_addr_width + 2
        n_in_vecs = reg(nd.in_h[:16] * row_stride, 16 + len(row_stride), "next_in_vecs")
        n_small = reg(n_in_vecs <= depth, 1, "next_small")
        # Its words: an unrolled map's rows are T - 1 pixels longer in DDR than in the buffer.
        n_read_vecs = n_in_vecs
        if cfg.tap_lanes:
            read_stride = reg(row_stride + Mux(chk.is_unroll, cfg.unroll_taps - 1, 0),
                              len(row_stride) + 1, "read_stride")
            n_read_vecs = reg(nd.in_h[:16] * read_stride, 16 + len(read_stride),
                              "next_read_vecs")
        n_in_words = reg(n_read_vecs * wpv_in, len(n_read_vecs) + 8, "next_in_words")
        n_in_end = reg(nd.in_addr + n_in_words * 8, ew, "next_in_end")

        def clear_of(lo, hi):
            return (nd.in_addr >= hi[:ew]) | (n_in_end <= lo[:ew])

        # Its terms as registers of their own, ANDed after them: each a shallow tree.
        # (Without an unroller, ``unroll`` is 0 in every descriptor the check lets run.)
        same_unroll = (nd.unroll == d.unroll) if cfg.tap_lanes else 1
        # (Wide comparisons: each a register, their AND the next stage.)
        same_rows = reg(reg(Cat(nd.magic == DESC_MAGIC, nd.in_w == d.in_w, nd.in_c == d.in_c,
                                (nd.in_bits == d.in_bits) & same_unroll, nd.in_h != 0),
                            5, "elig_rows_terms").all(), 1, "elig_rows")
        clear = (reg(clear_of(d.out_addr, out_end), 1, "elig_clear")
                 & reg(~wb_busy | clear_of(wb_lo, wb_hi), 1, "elig_wb"))
        eligible = (same_rows & reg((nd.op == d.op) & (is_conv | is_max), 1, "elig_same")
                    & n_small & reg(in_vecs[:dp] + n_in_vecs[:dp] <= depth, 1, "elig_fits")
                    & clear)
        # The next band begins inside this one (or where it ends) and ends at or after it:
        # only its part past this one is read, and only if that part is whole vectors (the
        # map reader says so once it is in) is the band used.
        overlap = (reg((nd.in_addr >= d.in_addr) & (nd.in_addr <= in_end[:ew]), 1, "ovl_begin")
                   & reg(n_in_end >= in_end[:ew], 1, "ovl_end"))
        # ... and ends where this one does: all of it is in the buffer already.
        within = reg(n_in_end == in_end[:ew], 1, "ovl_within")
        pre_ovl = Signal()             # the prefetch reads the part past this band
        # A conv whose band is the first rows of this conv's (the same map from the same
        # address: ResNet's downsample after its block's first conv, firmware's run order)
        # computes from this band as it stands in the act buffer: nothing is read.
        reuse = (same_rows & clear
                 & reg(reg(Cat(is_conv & ((nd.op == Op.CONV) | (nd.op == Op.CONV_ADD))
                               & (nd.split == d.split), nd.in_addr == d.in_addr,
                               nd.in_h[:16] <= d.in_h[:16]), 3, "elig_reuse_terms").all(),
                       1, "elig_reuse"))
        # What the prefetch reads, and where the band begins in the ring.
        pre_addr = Signal(cfg.axi_addr_width)
        pre_words = Signal.like(dma.rd_cmd.payload.words)
        after = Signal.like(act_base)            # the first vector after this band
        m.d.sync += after.eq(act_base + in_vecs)
        # (Two stages: the address's comparison, then the AND; read only once the prefetch
        # knows the next descriptor, ELIG_CYCLES after it came.)
        same_weights = reg(reg(nd.weight_addr == d.weight_addr, 1, "same_waddr")
                           & reg((nd.passes == d.passes) & (nd.steps == d.steps), 1,
                                 "same_wshape"), 1, "same_weights")
        # Whether the loader may go on with the next descriptor's passes: a conv whose passes
        # fit the banks (its other faults are the check's to report when it runs; an error of
        # its passes is reported there too).
        next_conv = reg(((nd.op == Op.CONV) | (nd.op == Op.CONV_ADD)) & (nd.magic == DESC_MAGIC)
                        & (nd.steps != 0) & (nd.steps <= cfg.max_pass_rows)
                        & (nd.passes != 0) & (nd.weight_addr[:3] == 0), 1, "next_conv")
        # (Its product and its sum each end at a register: two of the ELIG_CYCLES.)
        next_pass_words = reg(pass_block_words(cfg, 0)
                              + reg(nd.steps * row_words(cfg), 32, "next_step_words"), 32,
                              "next_pass_words")
        elig_wait = Signal(range(ELIG_CYCLES + 1))
        with one_hot_fsm(m, name="prefetch") as prefetch_fsm:
            with m.State("IDLE"):
                with m.If(computing & armed & ~live & ~abort):
                    m.d.sync += [armed.eq(0), pre_ptr.eq(desc_ptr + descriptor_bytes()),
                                 pre_ptr_bad.eq(next_bad),
                                 pre_have.eq(0), pre_band.eq(0), pre_bad.eq(0)]
                    m.next = "DESC_CMD"
            with m.State("DESC_CMD"):
                with m.If(abort | (pre_ptr_bad != 0)):
                    m.next = "READY"       # the engine fetches it itself and reports
                with m.Else():
                    desc_read()
                    with m.If(dma.rd_cmd.ready):
                        m.next = "DESC_DATA"
            with m.State("DESC_DATA"):
                desc_take(nd)
                with m.If(dma.rd_done):
                    m.d.sync += [pre_have.eq(~dma.rd_error), elig_wait.eq(0)]
                    m.next = "ELIG"
            with m.State("ELIG"):
                m.d.sync += elig_wait.eq(elig_wait + 1)
                with m.If(elig_wait != ELIG_CYCLES - 1):
                    pass
                with m.Elif(pre_have & reuse & ~abort):
                    m.d.sync += [pre_band.eq(1), pre_base.eq(act_base), pre_bad.eq(act_bad)]
                    m.next = "READY"
                with m.Elif(pre_have & eligible & ~abort):
                    with m.If(overlap):
                        nw = len(pre_words)
                        m.d.sync += [pre_addr.eq(in_end), pre_ovl.eq(1),
                                     pre_words.eq(n_in_end[3:3 + nw] - in_end[3:3 + nw])]
                        with m.If(within):
                            m.d.sync += [pre_band.eq(1), pre_bad.eq(act_bad),
                                         pre_base.eq(after - n_in_vecs)]
                            m.next = "READY"
                        with m.Else():
                            m.next = "ACT_CMD"
                    with m.Else():
                        m.d.sync += [pre_addr.eq(nd.in_addr), pre_words.eq(n_in_words),
                                     pre_base.eq(after), pre_ovl.eq(0)]
                        m.next = "ACT_CMD"
                with m.Else():
                    m.next = "READY"
            with m.State("ACT_CMD"):
                with m.If(abort):
                    m.next = "READY"
                with m.Else():
                    band_read(after)
                    with m.If(dma.rd_cmd.ready):
                        m.next = "ACT_DATA"
            with m.State("ACT_DATA"):
                with m.If(dma.rd_done):
                    m.d.sync += [pre_band.eq(~pre_ovl), pre_bad.eq(dma.rd_error)]
                    with m.If(pre_ovl):
                        m.next = "PLACE"
                    with m.Else():
                        m.next = "READY"
            with m.State("PLACE"):
                # The part past this band is in (its last vector written): the band ends
                # where the writes did. It is used only if that part was whole vectors.
                m.d.sync += [pre_band.eq(map_in.whole), pre_base.eq(act_addr - n_in_vecs)]
                m.next = "READY"
            with m.State("READY"):
                with m.If(pre_clear):
                    m.next = "IDLE"
        m.d.comb += [pre_ready.eq(prefetch_fsm.ongoing("READY")),
                     pre_known.eq(ongoing_any(prefetch_fsm, "ACT_CMD", "ACT_DATA", "PLACE",
                                              "READY")),
                     pre_busy.eq(~ongoing_any(prefetch_fsm, "IDLE", "READY"))]

        # What the reader is asked for (see band_read): the prefetch asks only while it is
        # busy, and the engine only while it is not (DESC_CMD waits for it; ACT_CMD follows a
        # DESC_CMD and comes before the conv that starts the prefetch).
        pre_desc, eng_desc = prefetch_fsm.ongoing("DESC_CMD"), engine_fsm.ongoing("DESC_CMD")
        m.d.comb += [
            dma.rd_cmd.payload.addr.eq(Mux(pre_busy, Mux(pre_desc, pre_ptr, pre_addr),
                                           Mux(eng_desc, desc_ptr, d.in_addr))),
            dma.rd_cmd.payload.words.eq(Mux(pre_busy, Mux(pre_desc, desc_words, pre_words),
                                            Mux(eng_desc, desc_words, in_words))),
        ]

        # The write-back reads the out buffer while it is busy (a conv-add's adder reads it
        # only while no write-back is under way but its own, which reads none of it).
        with m.If(wb_busy & ~fusing):
            m.d.comb += [out_rd_addr.eq(writer.rd_addr), out_rd_en.eq(writer.rd_en)]

        # ---- the weight loader: pass blocks into the free bank over the weight masters, while
        # the input band loads and the core computes ----
        # Once this conv's passes are all loaded and the next descriptor is a conv, the
        # loader goes on with its passes: at once when they are these (the next row tile),
        # else once the loader has taken the next one's fields (``ahead``, AHEAD_CYCLES);
        # while the next band loads too (over the map port: the weights have their own).
        may_follow = in_conv & pre_known & pre_have & next_conv & ~abort & ~act_bad & ~live
        with m.If(may_follow & ~same_weights & loader.idle & ~carried
                  & (load_code == ErrorCode.NONE)):
            m.d.sync += ahead.eq(1)
        ahead_ok = ahead
        for k in range(AHEAD_CYCLES):
            ahead_ok = stage(m, ahead_ok & ahead, 1, f"ahead_{k}")
        m.d.comb += [loader.weight_addr.eq(Mux(ahead, nd.weight_addr, d.weight_addr)),
                     loader.steps.eq(Mux(ahead, nd.steps, d.steps)),
                     loader.passes.eq(Mux(ahead, nd.passes, d.passes)),
                     loader.pass_words.eq(Mux(ahead, next_pass_words, pass_words)),
                     # (a cycle after the band's command: a register, no path from the
                     # engine's state into the loader's)
                     loader.start.eq(stage(m, conv_go, 1, "conv_go_r")),
                     loader.follow.eq(may_follow & (same_weights | (ahead_ok & ahead))),
                     # Registers (no path from the engine's state into the loader's): the
                     # hold (a conv-add's second input from its wait to its end); a command
                     # the loader takes as a stop comes is waited for (FINISH, the conv's
                     # error path).
                     loader.stop.eq(stage(m, abort | act_bad | stop_loader, 1, "stop_loader_r")),
                     loader.hold.eq(hold_r)]
        m.d.sync += hold_r.eq(hold_loader)
        for name in loader.banks.signature.members:
            m.d.comb += getattr(core, name).eq(getattr(loader.banks, name))
        for j, wd in enumerate(wdmas):
            port = getattr(loader, f"port{j}")
            m.d.comb += [port.cmd.ready.eq(wd.cmd.ready), port.data.valid.eq(wd.o.valid),
                         port.data.payload.eq(wd.o.payload), port.done.eq(wd.done),
                         port.error.eq(wd.error)]
            if j:
                m.d.comb += [wd.cmd.valid.eq(port.cmd.valid), wd.cmd.payload.eq(port.cmd.payload),
                             wd.o.ready.eq(port.data.ready)]
        # Weight port 0 also carries an add's or a conv-add's second input (the loader never
        # runs then): its command is chosen by registers, so that the reader's registers follow
        # it while idle, and its words go to the second input while that streams. A conv-add's
        # is chosen only once the loader sees its hold (``hold_r``: no command of the loader
        # can start then), not as ``fuse_wait`` rises, when a pass the loader carries on with
        # may still start, and would read from the second input's address.
        b_cmd = is_add | (fuse_wait & hold_r)
        m.d.comb += [
            wdmas[0].cmd.payload.addr.eq(Mux(b_cmd, d.in2_addr, loader.port0.cmd.payload.addr)),
            wdmas[0].cmd.payload.words.eq(Mux(b_cmd, in2_words,
                                              loader.port0.cmd.payload.words)),
            wdmas[0].o.ready.eq(Mux(b_active, b_ready, loader.port0.data.ready)),
        ]
        with m.If(loader.port0.cmd.valid):
            m.d.comb += wdmas[0].cmd.valid.eq(1)
        return m
