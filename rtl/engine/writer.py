"""The write-back: the out buffer's vectors (or their max-pool) packed into bus words for the
DMA writer."""

from __future__ import annotations

import operator
from functools import reduce

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..common import check_config, index_bits, one_hot_fsm, skid_output, stage
from ..config import HwConfig
from ..dma import DmaCommand
from ..interface.ddr import word_bits, words_per_vector
from ..interface.descriptor import OUT_BITS
from ..vector_units import MaxPool, lane_bits
from ..window import window_layout

__all__ = ["Writer", "out_vector_layout", "write_job_layout"]


def out_vector_layout(cfg: HwConfig) -> data.ArrayLayout:
    """An out-buffer vector: ``V`` lanes of 32 bits (one memory per lane)."""
    return data.ArrayLayout(signed(32), cfg.vec_len)


def write_job_layout(cfg: HwConfig) -> data.StructLayout:
    """A write-back: the DMA command (``addr``, ``words``), the last vector of the out buffer
    it covers, the bus words per vector and the element width (``out_bits``); with ``pool``,
    the max-pool that it writes instead of the vectors: ``window`` walks the out buffer's
    band (``rtl.window.window_layout``: the band's size, the pooled size, ``pad_top``; the
    writer sets the 3 x 3 kernel, the stride 2 and the zero column at the left)."""
    return data.StructLayout({
        "addr": unsigned(cfg.axi_addr_width), "words": unsigned(cfg.axi_addr_width),
        "last": unsigned(index_bits(cfg.out_buf_depth + 1)), "wpv": unsigned(8),
        "bits": unsigned(8), "pool": unsigned(1), "window": window_layout(cfg),
        "stream": unsigned(1),
    })


class Writer(wiring.Component):
    """Writes the out buffer back to DDR, one bus word a cycle.

    A job on ``i`` is taken (with its DMA command on ``cmd``, in the same cycle) when no
    write-back is under way and the DMA writer takes the command; ``busy`` rises in the next
    cycle. The writer then reads vectors ``0 .. last`` of the out buffer in order, and packs
    each into ``wpv`` words of ``bits``-bit elements (``rtl.interface.ddr.pack_values``: the
    lanes' low bits) on ``o``: a vector is packed into a shift register as it is taken, and
    its words leave from there through a two-entry output buffer
    (:func:`~rtl.common.skid_output`). The first word leaves four cycles after the job is
    taken; the next vector is read as one goes into the register and taken as its last word
    leaves, so a vector follows the one before without a gap while ``o.ready`` holds. Once
    the DMA writer reports ``done``, the write-back ends (``busy`` falls in the next cycle)
    and ``count`` goes up, or ``err`` is set when the writes came back with an error.

    A job with ``pool`` writes the max-pool (3 x 3, stride 2) of the band instead: a
    :class:`~rtl.vector_units.MaxPool` started two cycles after the job is taken walks the
    out buffer (one element a cycle, ``out_h * out_w * chunks * 9`` reads; the lanes' low
    ``lane_bits``, unsigned: a ReLU band), and each pooled vector comes through a two-entry
    buffer into the shift register and leaves as ``wpv`` words. ``idx`` then moves on by
    whole rows of the band as the pooled rows complete: once pooled row ``r`` has gone into
    the register, the rows before ``2 r + 2 - pad_top`` are free.

    A job with ``stream`` (a conv-add's) writes the ``last + 1`` vectors that come on
    ``vin`` instead of reading the out buffer (the residual adder reads it meanwhile): they
    come through the same two-entry buffer (``vin.ready`` is its room, a register), and
    ``idx`` counts those that have gone into the shift register (``streamed``).

    Parameters
    ----------
    cfg : HwConfig
        The build: ``V``, the bus width, the out buffer's depth.

    Members
    -------
    i : In(stream.Signature(write_job_layout(cfg)))
        The write-backs.
    cmd : Out(stream.Signature(DmaCommand(cfg)))
        Their DMA commands.
    o : Out(stream.Signature(axi_data_width))
        The packed words.
    done, error : In(1)
        The DMA writer has finished the command, with an error response.
    rd_addr, rd_en : Out
        The out buffer's read port (a ``Memory`` read port: ``rd_data`` follows a cycle
        after ``rd_en`` and holds while it is low).
    rd_data : In(out_vector_layout(cfg))
    vin : In(stream.Signature(ArrayLayout(unsigned(lane_bits), V)))
        A ``stream`` job's vectors (the lanes' low bits are packed).
    streamed : Out(1)
        A vector of ``vin`` goes into the shift register.
    avail : In, all ones unless driven
        Vectors of the out buffer that are final (it only grows during a job): a plain job
        reads vector ``j`` only once ``j < avail``, so a conv's write-back can start while
        its last pass still computes (docs/engine.md, "Overlap"). The
        check is a register a cycle behind ``avail``, which is never early while it grows;
        vector 0 must be final when the job is given.
    clear : In(1)
        A run starts: ``err`` and ``count`` clear.
    busy : Out(1)
        A write-back is under way.
    idx : Out
        Vectors of the out buffer this write-back no longer needs: vector ``j`` may be
        overwritten once ``j < idx`` (the interlocks of the results that follow).
    err : Out(1)
        A write-back of this run came back with an error response.
    count : Out(16)
        Write-backs of this run that ended without error.
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        self._cfg = check_config(cfg, "Writer")
        super().__init__({
            "i": In(stream.Signature(write_job_layout(cfg))),
            "cmd": Out(stream.Signature(DmaCommand(cfg))),
            "o": Out(stream.Signature(word_bits(cfg))),
            "done": In(1), "error": In(1),
            "rd_addr": Out(index_bits(cfg.out_buf_depth)), "rd_en": Out(1),
            "rd_data": In(out_vector_layout(cfg)),
            "vin": In(stream.Signature(data.ArrayLayout(unsigned(lane_bits(cfg)),
                                                        cfg.vec_len))),
            "streamed": Out(1),
            "avail": In(index_bits(cfg.out_buf_depth + 1) + 1,
                        init=(1 << (index_bits(cfg.out_buf_depth + 1) + 1)) - 1),
            "clear": In(1),
            "busy": Out(1), "idx": Out(index_bits(cfg.out_buf_depth + 1) + 1),
            "err": Out(1), "count": Out(16),
        })

    @property
    def cfg(self) -> HwConfig:
        return self._cfg

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg, v, word = self._cfg, self._cfg.vec_len, word_bits(self._cfg)
        job = self.i.payload
        last = Signal.like(job.last)             # the job's own copy of what it needs
        most = max(words_per_vector(cfg, b) for b in OUT_BITS)
        last_mark = Signal(most)                 # one-hot: the vector's last word
        width_is = {b: Signal(name=f"width_is_{b}") for b in OUT_BITS}
        marks = Signal(most)                     # last_mark, moved on a bit per word sent
        k_last = marks[0]                        # the word leaving is the vector's last
        busy, idx = Signal(), Signal.like(self.idx)
        ridx = Signal.like(last)                 # the vector in the out buffer's read data
        # ridx + 1 and ridx + 2, registers that move with it: the read address and the
        # comparisons with ``avail`` wait on no adder.
        ridx1, ridx2 = Signal(len(last) + 2), Signal(len(last) + 2)
        pend = Signal()                          # which has not gone into sr yet
        more = Signal()                          # ridx != last: a vector follows ridx
        last_m1 = Signal.like(last)              # last - 1, to compare ridx with
        idx_last = Signal()                      # idx == last, a register (read-back jobs)
        pool_done = Signal()                     # the max-pool has sent its last vector
        streaming = Signal()                     # a stream job: its vectors come on vin
        # All of a stream job's vectors have been taken (a cycle behind idx; 0 in the job's
        # first two cycles, whatever idx held before).
        s_all = stage(m, streaming & (idx > last), 1, "stream_all")
        # ``pend``, and the vector after ridx is final (``avail``) or there is none: one
        # register, from the ridx of the next cycle, so that the read enable (which reaches
        # every lane's block RAM) waits on no comparison and on no more terms than ``pend``.
        go = Signal()
        m.d.comb += [self.busy.eq(busy), self.idx.eq(idx),
                     self.cmd.payload.addr.eq(job.addr), self.cmd.payload.words.eq(job.words),
                     self.cmd.valid.eq(self.i.valid & ~busy),
                     self.i.ready.eq(~busy & self.cmd.ready)]

        # The max-pool of a pooled job walks the band in the out buffer (the lanes' low bits).
        m.submodules.pool = pool = MaxPool(cfg=cfg)
        win = Signal(window_layout(cfg))
        pooling = Signal()
        lb = lane_bits(cfg)
        m.d.comb += [pool.layer.eq(win),
                     pool.rd.data.eq(Cat(*[self.rd_data[i][:lb] for i in range(v)]))]

        # The vector being sent, packed into its words (``rtl.interface.ddr.pack_values``) as
        # it is taken from the out buffer or the max-pool: word 0 leaves first and the register
        # moves on by a word as each leaves, so no word is chosen by a counter on the way out.
        lanes = Signal(out_vector_layout(cfg))
        # The pooled vectors come through a two-entry buffer too: the max-pool's window walk
        # sees a registered ready, not this writer's state and handshakes.
        # A stream job's vectors come through it as well (``streaming``: from vin).
        pooled = stream.Signature(pool.o.payload.shape()).create()
        src = Signal(pool.o.payload.shape())
        m.d.comb += [src.eq(pool.o.payload),
                     src.value.eq(Mux(streaming, self.vin.payload, pool.o.payload.value))]
        room = skid_output(m, pooled, Mux(streaming, self.vin.valid, pool.o.valid), src)
        m.d.comb += [pool.o.ready.eq(room), self.vin.ready.eq(room)]
        for i in range(v):
            m.d.comb += lanes[i].eq(Mux(pooling, pooled.payload.value[i], self.rd_data[i]))
        # The element width as one-hot registers (set with the job): the packing is an AND-OR
        # of the widths' layouts, with no comparison in front of it.
        packed = Signal(most * word)
        layouts = []
        for b in OUT_BITS:
            per = word // b
            words = [Cat(*[lanes[i][:b] for i in range(w * per, min(v, (w + 1) * per))])
                     for w in range(words_per_vector(cfg, b))]
            layouts.append(Mux(width_is[b], Cat(*[Cat(x, Const(0, word - len(x)))
                                                  for x in words]), 0))
        m.d.comb += packed.eq(reduce(operator.or_, layouts))
        sr = Signal(most * word)
        have = Signal()              # sr holds words of a vector still to leave
        # The words leave through a two-entry buffer: the DMA writer's ready reaches only its
        # control (``o_ready`` is a register), not the packing behind it.
        o_ready = skid_output(m, self.o, have, sr[:word])
        send = have & o_ready
        last_send = send & k_last    # a vector's last word leaves
        # sr is free for the next vector (and loads whatever is offered; ``have`` says whether
        # it was one): a signal of its own, so that its fan-out to all of sr stays off the
        # control's paths.
        free = Signal()
        m.d.comb += free.eq(~have | (o_ready & k_last))
        with m.If(free):
            m.d.sync += sr.eq(packed)
        with m.Elif(o_ready):
            m.d.sync += sr.eq(sr[word:])
        take = Signal()              # the next vector (read, or pooled) goes into sr
        with m.If(take):
            m.d.sync += [have.eq(1), marks.eq(last_mark)]
        with m.Elif(send):
            m.d.sync += marks.eq(marks[1:])
            with m.If(k_last):
                m.d.sync += have.eq(0)

        # Pooled rows: the chunk and column of the next pooled vector, and the band's rows
        # that the next pooled row frees (the first: those above its windows).
        p_ch, p_col = Signal.like(win.chunks), Signal.like(win.out_w)
        nxt = Signal.like(idx)
        # Whether they are the row's last chunk and column: registers set with them, from
        # registers set in POOL_GO (whether there is one chunk or column, and the index before
        # the last), so that the counters' step waits on no comparison.
        ch_last, col_last = Signal(), Signal()
        ch_one, col_one = Signal(), Signal()
        ch_m2, col_m2 = Signal.like(win.chunks), Signal.like(win.out_w)

        with m.If(self.clear):
            m.d.sync += [self.err.eq(0), self.count.eq(0)]
        # A pooled vector taken in POOL (``walk``: a register of that state, so the state's
        # decoding stays off these counters' paths): the next one's chunk and column, and
        # at the end of a pooled row the rows it frees, which ``idx`` takes a cycle later
        # (``row_done``, ``row_free``: late is safe, idx only frees).
        walk = Signal()
        # The buffer's vectors go into sr in POOL (``walk``) and STREAM (``streaming``):
        # registers of those states, so the buffer's handshake, which loads its wide
        # payload, never passes through the state's decoding.
        m.d.comb += pooled.ready.eq((walk | streaming) & free)
        # The row's end is a register too (``row_step``): the frees follow a cycle later still,
        # so that the output's ready, through ``free``, reaches only the column counters.
        row_done = Signal()
        row_free = Signal.like(idx)
        row_step = Signal()
        m.d.sync += [row_done.eq(0), row_step.eq(0)]
        with m.If(pooled.valid & free & walk):
            m.d.sync += [p_ch.eq(p_ch + 1), ch_last.eq(p_ch == ch_m2)]
            with m.If(ch_last):
                m.d.sync += [p_ch.eq(0), ch_last.eq(ch_one),
                             p_col.eq(p_col + 1), col_last.eq(p_col == col_m2)]
                with m.If(col_last):
                    m.d.sync += [p_col.eq(0), col_last.eq(col_one), row_step.eq(1)]
        with m.If(row_step):
            m.d.sync += [nxt.eq(nxt + (win.row_stride << 1)), row_done.eq(1),
                         row_free.eq(Mux(nxt > last, last + 1, nxt))]
        with one_hot_fsm(m, name="writeback"):
            with m.State("IDLE"):
                with m.If(self.i.valid & self.i.ready):
                    m.d.sync += [busy.eq(1), idx.eq(0), last.eq(job.last),
                                 last_m1.eq(job.last - 1), idx_last.eq(job.last == 0),
                                 last_mark.eq(Const(1, most) << (job.wpv - 1)[:8]),
                                 *[width_is[b].eq(job.bits == b) for b in OUT_BITS],
                                 pooling.eq(job.pool | job.stream), streaming.eq(job.stream),
                                 win.eq(job.window),
                                 win.kernel_h.eq(3), win.kernel_w.eq(3), win.stride.eq(2),
                                 win.pad_left.eq(1), p_ch.eq(0), p_col.eq(0)]
                    with m.If(job.stream):
                        m.next = "STREAM"
                    with m.Elif(job.pool):
                        m.next = "POOL_GO"
                    with m.Else():
                        m.next = "READ"
            with m.State("READ"):
                m.d.comb += [self.rd_addr.eq(0), self.rd_en.eq(1)]
                m.d.sync += [ridx.eq(0), ridx1.eq(1), ridx2.eq(2), pend.eq(1),
                             more.eq(last != 0),
                             go.eq((self.avail > 1) | (last == 0))]
                m.next = "DATA"
            with m.State("DATA"):
                # The out buffer's read data hold vector ridx while the read enable is low
                # (pend: it has not gone into sr yet); the next one is read as it goes in.
                # Whether one follows is a register (``more``), so the read enable, which
                # fans out to every block RAM of the out buffer, waits on no comparison;
                # it is set by comparing registers (ridx + 1 != last as ridx != last - 1).
                # (``take`` as this state drives it, not through the other states' terms.)
                take_read = go & free
                m.d.comb += [take.eq(take_read), self.rd_addr.eq(ridx1)]
                m.d.sync += go.eq(Mux(take_read,
                                      more & ((ridx2 < self.avail) | (ridx == last_m1)),
                                      pend & ((ridx1 < self.avail) | ~more)))
                with m.If(take_read):
                    m.d.comb += self.rd_en.eq(more)
                    m.d.sync += [ridx.eq(ridx1), ridx1.eq(ridx2), ridx2.eq(ridx2 + 1),
                                 pend.eq(more), more.eq(ridx != last_m1)]
                # Whether idx is the job's last vector is a register set with idx (idx + 1
                # == last as idx == last - 1), so the state waits on no comparison.
                with m.If(last_send):
                    m.d.sync += [idx.eq(idx + 1), idx_last.eq(idx == last_m1)]
                    with m.If(idx_last):
                        m.next = "WAIT"
            with m.State("POOL_GO"):
                m.d.comb += pool.start.eq(1)
                m.d.sync += [nxt.eq(Mux(win.pad_top, win.row_stride, win.row_stride << 1)),
                             ch_m2.eq(win.chunks - 2), col_m2.eq(win.out_w - 2),
                             ch_one.eq(win.chunks == 1), col_one.eq(win.out_w == 1),
                             ch_last.eq(win.chunks == 1), col_last.eq(win.out_w == 1),
                             walk.eq(1)]
                m.next = "POOL"
            with m.State("POOL"):
                m.d.comb += [self.rd_addr.eq(pool.rd.addr), self.rd_en.eq(pool.rd.en),
                             take.eq(pooled.valid & free)]
                # (The pooled vector's chunk and column move on above, from ``walk``.)
                with m.If(row_done & ~pool_done):      # (the pool's end frees them all)
                    m.d.sync += idx.eq(row_free)
                # The pool is done once its last vector has gone into the buffer; the
                # write-back, once that has gone through and left sr.
                with m.If(pool.done):
                    m.d.sync += [idx.eq(last + 1), pool_done.eq(1)]
                with m.If((pool.done | pool_done) & ~pooled.valid & ~have):
                    m.d.sync += [pooling.eq(0), pool_done.eq(0), walk.eq(0)]
                    m.next = "WAIT"
            with m.State("STREAM"):
                # A conv-add's sums, as they come; done once all are taken (a register behind
                # idx, no comparison behind the take) and the last has left sr.
                take_stream = pooled.valid & free
                m.d.comb += [take.eq(take_stream), self.streamed.eq(take_stream)]
                with m.If(take_stream):
                    m.d.sync += idx.eq(idx + 1)
                with m.If(s_all & ~have):
                    m.d.sync += [pooling.eq(0), streaming.eq(0)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(self.done):
                    m.d.sync += busy.eq(0)
                    with m.If(self.error):
                        m.d.sync += self.err.eq(1)
                    with m.Else():
                        m.d.sync += self.count.eq(self.count + 1)
                    m.next = "IDLE"
        return m
