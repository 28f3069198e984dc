"""AXI4 master DMA: burst reads of DDR into a word stream, and a word stream into DDR bursts,
every access checked against the window the host allows."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .common import one_hot_fsm, skid_output, stage
from .config import HwConfig

__all__ = ["MAX_BURST", "MAX_OUTSTANDING", "AxiSignature", "Dma", "DmaCommand", "DmaReader",
           "DmaWriter"]

#: Beats per burst at most (AXI3-compatible length, what the Zynq HP ports take).
MAX_BURST = 16
#: Bursts in flight at once in each direction: read addresses issued ahead of their data,
#: write bursts sent ahead of their responses. It hides the DDR latency (tens of fabric
#: cycles per burst through a Zynq HP port) behind the data of earlier bursts; the HP ports
#: accept more than this.
MAX_OUTSTANDING = 4
_BOUNDARY = 4096  # AXI bursts must not cross a 4 KiB address boundary


class AxiSignature(wiring.Signature):
    """An AXI4 master port (flip it for a slave): the five channels, INCR bursts only.

    Member names are the AXI signal names in lower case (``awaddr``, ``awlen``, ``wdata``,
    ``rlast``, ...), so a flattened top level names them ``m_axi_awaddr`` and so on.
    """

    def __init__(self, *, addr_width: int, data_width: int, id_width: int = 1) -> None:
        if data_width not in (32, 64, 128):
            raise ValueError(f"AXI data width must be 32, 64 or 128, not {data_width!r}")
        self.addr_width, self.data_width, self.id_width = addr_width, data_width, id_width
        super().__init__({
            "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8),
            "awsize": Out(3), "awburst": Out(2), "awcache": Out(4), "awprot": Out(3),
            "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8),
            "arsize": Out(3), "arburst": Out(2), "arcache": Out(4), "arprot": Out(3),
            "arvalid": Out(1), "arready": In(1),
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        })


def DmaCommand(cfg: HwConfig) -> data.StructLayout:
    """A transfer: byte address (word aligned) and length in bus words (at least 1)."""
    return data.StructLayout({"addr": unsigned(cfg.axi_addr_width),
                              "words": unsigned(cfg.axi_addr_width)})


def _window_ok(m: Module, cfg: HwConfig, addr, words, base, size) -> Signal:
    """Whether ``[addr, addr + 8 * words)`` is aligned, non-empty and inside the window.

    ``addr`` and ``words`` are registers (those the command was taken into, or those that
    offer it), and the window's end is a register too (the window is set before any
    command), so the check is an adder and two comparisons behind registers."""
    wb = cfg.axi_data_width // 8
    ok = Signal(name="window_ok")
    end = Signal(cfg.axi_addr_width + 2)
    limit = Signal(cfg.axi_addr_width + 2, name="window_limit")
    m.d.sync += limit.eq(base + size)
    m.d.comb += end.eq(addr + words * wb)
    m.d.comb += ok.eq((addr[: (wb - 1).bit_length()] == 0) & (words != 0) & (addr >= base)
                      & (end <= limit))
    return ok


def _burst_len(m: Module, cfg: HwConfig, addr, remaining, rem_big) -> Signal:
    """Beats of the next burst: at most MAX_BURST, the rest, and up to the 4 KiB boundary.

    A register, computed from ``addr`` and ``remaining`` of the cycle before: it holds the
    right length one cycle after they last changed, so the next address is ``addr`` plus a
    register. ``addr`` is word aligned (the window check refuses others before any burst),
    and MAX_BURST is a power of two that divides a page's words: the boundary is nearer
    than MAX_BURST words only when the word's index in its page has all of its high bits set,
    and it is then ``MAX_BURST`` minus the low bits away: no 12-bit subtraction before the
    register. ``rem_big`` (``remaining >= MAX_BURST``) is a register kept beside
    ``remaining`` (``_Transfer.set_remaining``): no wide zero test before it either."""
    wb = cfg.axi_data_width // 8
    shift = (wb - 1).bit_length()
    low_bits = (MAX_BURST - 1).bit_length()
    in_page = addr[shift:(_BOUNDARY - 1).bit_length()]   # the word's index in its page
    low, high = in_page[:low_bits], in_page[low_bits:]
    near = high == (1 << len(high)) - 1     # (low = 0 there: MAX_BURST away, not nearer)
    to_boundary = Signal(range(MAX_BURST + 1), name="to_boundary")
    m.d.comb += to_boundary.eq(MAX_BURST - low)
    limit = Signal(range(MAX_BURST + 1), name="burst_limit")
    m.d.comb += limit.eq(Mux(rem_big, MAX_BURST, remaining[:low_bits]))
    beats = Signal(range(MAX_BURST + 1), name="beats")
    m.d.sync += beats.eq(Mux(near & (to_boundary < limit), to_boundary, limit))
    return beats


def _dma_members(cfg: HwConfig, data: str, flow) -> dict[str, wiring.Member]:
    """Members shared by the reader and the writer; ``data`` names their word stream."""
    return {
        "cmd": In(stream.Signature(DmaCommand(cfg))),
        data: flow(stream.Signature(cfg.axi_data_width)),
        "bus": Out(AxiSignature(addr_width=cfg.axi_addr_width, data_width=cfg.axi_data_width)),
        "window_base": In(cfg.axi_addr_width), "window_size": In(cfg.axi_addr_width + 1),
        "busy": Out(1), "done": Out(1), "error": Out(1),
    }


class _Transfer:
    """Per-command state both directions use: address, words left, this burst's length and
    the window check (``ok``, combinational) of ``checked``, the ``(addr, words)`` pair of the
    command as it is taken, which each direction registers."""

    def __init__(self, m: Module, unit: wiring.Component, cfg: HwConfig,
                 checked: tuple) -> None:
        self.wb = cfg.axi_data_width // 8
        self.addr = Signal(cfg.axi_addr_width)
        self.remaining = Signal(cfg.axi_addr_width)
        self.rem_big = Signal(name="rem_big")     # remaining >= MAX_BURST
        self.rem_over = Signal(name="rem_over")   # remaining > MAX_BURST
        self.beats = _burst_len(m, cfg, self.addr, self.remaining, self.rem_big)
        self.ok = _window_ok(m, cfg, *checked,
                             unit.window_base, unit.window_size)

    def set_remaining(self, value) -> list:
        """Statements that set ``remaining`` to ``value`` (a command's words), and ``rem_big``
        and ``rem_over`` with it (whether they are at least, and more than, a whole burst)."""
        return [self.remaining.eq(value),
                self.rem_big.eq(value[(MAX_BURST - 1).bit_length():] != 0),
                self.rem_over.eq(value > MAX_BURST)]

    def big_after(self):
        """``rem_big`` once this burst has gone: a comparison (one carry chain), not a
        subtraction and then a wide zero test."""
        return self.remaining >= self.beats + MAX_BURST

    def over_after(self):
        """``rem_over`` once this burst has gone (likewise)."""
        return self.remaining > self.beats + MAX_BURST

    def after_burst(self) -> list:
        """Statements that take this burst's beats off ``remaining`` (and set ``rem_big`` and
        ``rem_over``)."""
        return [self.remaining.eq(self.remaining - self.beats), self.rem_big.eq(self.big_after()),
                self.rem_over.eq(self.over_after())]


def _status(m: Module, fsm, unit: wiring.Component) -> None:
    """Command ready in IDLE, ``done`` for the DONE cycle, ``busy`` in between."""
    m.d.comb += [unit.cmd.ready.eq(fsm.ongoing("IDLE")), unit.done.eq(fsm.ongoing("DONE")),
                 unit.busy.eq(~fsm.ongoing("IDLE") & ~fsm.ongoing("DONE"))]


class DmaReader(wiring.Component):
    """Reads ``words`` bus words from ``addr`` and streams them out in order.

    A command is taken into registers (two cycles; ``cmd.ready`` is a register that falls as
    one is taken), then checked against
    ``[window_base, window_base + window_size)`` (and word alignment) in the next cycle,
    before any bus traffic; a failing one sets ``error`` (held until the next command) and
    finishes without reading. Bursts are INCR, at most 16 beats, never crossing
    a 4 KiB boundary, up to ``MAX_OUTSTANDING`` in flight (same ID, so the data comes back
    in order); the data pass a two-entry buffer whose free entry is ``rready``, so the
    stream's backpressure reaches the bus a cycle later and a word reaches ``o`` a cycle after
    its beat. ``done`` pulses when the last word has left on ``o`` (or at
    once after an error). A read response other than OKAY also sets ``error``.

    Members
    -------
    cmd : In(stream.Signature(DmaCommand(cfg)))
    o : Out(stream.Signature(axi_data_width))
    bus : Out(AxiSignature(...))
    window_base, window_size : In(axi_addr_width)
    busy, done, error : Out(1)
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        self._cfg = cfg
        super().__init__(_dma_members(cfg, "o", Out))

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg, bus = self._cfg, self.bus
        # The command is taken into registers of its own first (below); the window check of
        # those, registered the cycle they move on into the transfer's, is what CHECK reads:
        # its adder and comparisons end at a flip-flop, not at ``arvalid`` and the state.
        cmd_addr = Signal(cfg.axi_addr_width)
        cmd_words = Signal(cfg.axi_addr_width)
        t = _Transfer(m, self, cfg, checked=(cmd_addr, cmd_words))
        wb, addr, remaining, beats = t.wb, t.addr, t.remaining, t.beats
        ok = stage(m, t.ok, 1, "cmd_ok")
        m.d.comb += [bus.arburst.eq(1), bus.arsize.eq((wb - 1).bit_length()),
                     bus.arcache.eq(0b0011), bus.arid.eq(0)]
        # Read data comes only in RUN (after an address, until the last burst's last beat),
        # so the stream follows the bus whatever the state, through a two-entry buffer:
        # ``rready`` is a register, so the consumers' ready reaches only the buffer, not the
        # bursts' bookkeeping or the state.
        rready = skid_output(m, self.o, bus.rvalid, bus.rdata)
        m.d.comb += bus.rready.eq(rready)
        # Valid/ready toward the bus come straight from registers: no combinational path, and
        # a defined value from time zero in any simulator.
        arvalid = Signal()
        m.d.comb += [bus.arvalid.eq(arvalid), bus.araddr.eq(addr), bus.arlen.eq(beats - 1)]
        # Bursts whose address went out and whose last beat has not come back, counted
        # one-hot (bit k: k bursts in flight), so that whether none will be left, and whether
        # another may go out, pick between registers by the bus's handshakes: no adder or
        # comparison behind ``rready``.
        flying = Signal(MAX_OUTSTANDING + 1, name="flying", init=1)
        ar_fire = arvalid & bus.arready
        r_last = bus.rvalid & bus.rready & bus.rlast
        # The words left after this burst, and whether a whole burst's worth remain, from
        # registers only: the address handshake then only chooses (no carry chain behind
        # ``arready``).
        rem_after = Signal.like(remaining)
        rem_next = Signal.like(remaining)
        up, down = Signal(), Signal()
        m.d.comb += [rem_after.eq(remaining - beats), rem_next.eq(Mux(ar_fire, rem_after,
                                                                       remaining)),
                     up.eq(ar_fire & ~r_last), down.eq(r_last & ~ar_fire)]
        fly_next = Signal.like(flying)
        m.d.comb += fly_next.eq(Mux(up, flying << 1, Mux(down, flying >> 1, flying)))
        # fly_next is 0 / below MAX_OUTSTANDING, from the registered one-hot bits.
        none_left = Signal()
        below_max = Signal()
        m.d.comb += [none_left.eq(Mux(down, flying[1], ~up & flying[0])),
                     below_max.eq(~Mux(up, flying[MAX_OUTSTANDING - 1],
                                       ~down & flying[MAX_OUTSTANDING]))]
        # rem_next == 0 without the subtraction: beats never exceeds remaining, so the words
        # run out exactly when remaining is beats (a burst going out) or zero; and never while
        # more than a burst remains (``rem_over``, a register), so only the low bits that
        # hold MAX_BURST are compared (no wide zero test in front of the state).
        low = (MAX_BURST).bit_length()
        rem_zero = Signal()
        m.d.comb += rem_zero.eq(~t.rem_over & (remaining[:low] == Mux(ar_fire, beats, 0)))
        # The command is taken into registers of its own (which follow the payload while
        # idle, so that only the state waits for ``cmd.valid``), and into the transfer's
        # registers a cycle later: the path from whatever chooses the command ends at them.
        # ``cmd.ready`` is a register of its own, which falls as a command is taken: the
        # state moves on from it, not from ``cmd.valid``, and those who offer commands see a
        # flip-flop, not a decoded state.
        ready = Signal(init=1, name="cmd_ready")
        with one_hot_fsm(m, name="dma_rd") as fsm:
            with m.State("IDLE"):
                with m.If(~ready):
                    m.d.sync += [addr.eq(cmd_addr), *t.set_remaining(cmd_words), flying.eq(1)]
                    m.next = "CHECK"
                with m.Else():
                    m.d.sync += [cmd_addr.eq(self.cmd.payload.addr),
                                 cmd_words.eq(self.cmd.payload.words),
                                 ready.eq(~self.cmd.valid)]
            with m.State("CHECK"):
                m.d.sync += [self.error.eq(~ok), arvalid.eq(ok)]
                m.next = "RUN"
                with m.If(~ok):
                    m.next = "DONE"
            with m.State("RUN"):
                m.d.sync += [flying.eq(fly_next), remaining.eq(rem_next),
                             t.rem_big.eq(Mux(ar_fire, t.big_after(), t.rem_big)),
                             t.rem_over.eq(Mux(ar_fire, t.over_after(), t.rem_over))]
                with m.If(ar_fire):
                    m.d.sync += addr.eq(addr + beats * wb)
                # An address stays offered until taken; the next one goes out while fewer
                # than MAX_OUTSTANDING bursts are in flight, not in the cycle right after an
                # address was taken (``beats`` follows the new address a cycle later).
                more = ~rem_zero & below_max
                m.d.sync += arvalid.eq(Mux(arvalid, ~bus.arready, more))
                with m.If(bus.rvalid & rready & (bus.rresp != 0)):
                    m.d.sync += self.error.eq(1)
                with m.If(rem_zero & none_left):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                # The last words leave the buffer.
                with m.If(~self.o.valid):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.sync += ready.eq(1)
                m.next = "IDLE"
        m.d.comb += [self.cmd.ready.eq(ready), self.done.eq(fsm.ongoing("DONE")),
                     self.busy.eq(~ready & ~fsm.ongoing("DONE"))]
        return m


class DmaWriter(wiring.Component):
    """Writes the words of ``i`` to ``words`` bus words from ``addr``.

    Same command, window check, burst rules and ``busy``/``done``/``error`` as
    :class:`DmaReader`: a command outside the window writes nothing. Each burst's address
    is issued first, then its beats (full strobes); the next burst follows without waiting
    for the response while fewer than ``MAX_OUTSTANDING`` responses are awaited. A response
    other than OKAY sets ``error``. ``done`` pulses after the last response.
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        self._cfg = cfg
        super().__init__(_dma_members(cfg, "i", In))

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg, bus = self._cfg, self.bus
        # The window check of the command offered, registered as it is taken: the check's
        # adder and comparisons end at a flip-flop, not at ``awvalid`` and the state.
        t = _Transfer(m, self, cfg, checked=(self.cmd.payload.addr, self.cmd.payload.words))
        wb, addr, remaining, beats = t.wb, t.addr, t.remaining, t.beats
        ok = Signal(name="cmd_ok")
        left = Signal(range(MAX_BURST + 1))
        m.d.comb += [bus.awburst.eq(1), bus.awsize.eq((wb - 1).bit_length()),
                     bus.awcache.eq(0b0011), bus.awid.eq(0),
                     bus.wdata.eq(self.i.payload), bus.wstrb.eq((1 << wb) - 1)]
        awvalid, bready = Signal(), Signal()
        m.d.comb += [bus.awvalid.eq(awvalid), bus.bready.eq(bready), bus.awaddr.eq(addr),
                     bus.awlen.eq(beats - 1)]
        # Bursts whose beats went out and whose response has not come back.
        waiting = Signal(range(MAX_OUTSTANDING + 1), name="waiting")
        fresh = Signal()   # the command was just taken: NEXT checks it first
        w_last = bus.wvalid & bus.wready & bus.wlast
        b_fire = bus.bvalid & bready
        m.d.sync += waiting.eq(waiting + w_last - b_fire)
        with m.If(b_fire & (bus.bresp != 0)):
            m.d.sync += self.error.eq(1)
        with one_hot_fsm(m, name="dma_wr") as fsm:
            with m.State("IDLE"):
                m.d.sync += [addr.eq(self.cmd.payload.addr),
                             *t.set_remaining(self.cmd.payload.words), fresh.eq(1),
                             ok.eq(t.ok)]
                with m.If(self.cmd.valid):
                    m.d.sync += self.error.eq(0)
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.sync += [bready.eq(1), fresh.eq(0)]
                with m.If(fresh & ~ok):
                    m.d.sync += [self.error.eq(1), bready.eq(0)]
                    m.next = "DONE"
                with m.Elif(remaining == 0):
                    m.next = "RESP"
                with m.Elif(waiting < MAX_OUTSTANDING):
                    m.d.sync += awvalid.eq(1)
                    m.next = "ADDR"
            with m.State("ADDR"):
                with m.If(bus.awready):
                    m.d.sync += [addr.eq(addr + beats * wb),
                                 *t.after_burst(),
                                 left.eq(beats), awvalid.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [bus.wvalid.eq(self.i.valid),
                             self.i.ready.eq(bus.wready), bus.wlast.eq(left == 1)]
                with m.If(self.i.valid & bus.wready):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.next = "NEXT"
            with m.State("RESP"):
                with m.If((waiting == 0) | ((waiting == 1) & b_fire)):
                    m.d.sync += bready.eq(0)
                    m.next = "DONE"
            with m.State("DONE"):
                m.next = "IDLE"
        _status(m, fsm, self)
        return m


class Dma(wiring.Component):
    """A reader and a writer on one AXI4 master port: the reader owns the read channels, the
    writer the write channels, so a load and a store can run at the same time."""

    def __init__(self, *, cfg: HwConfig) -> None:
        self._cfg = cfg
        super().__init__({
            "rd_cmd": In(stream.Signature(DmaCommand(cfg))),
            "rd_data": Out(stream.Signature(cfg.axi_data_width)),
            "wr_cmd": In(stream.Signature(DmaCommand(cfg))),
            "wr_data": In(stream.Signature(cfg.axi_data_width)),
            "bus": Out(AxiSignature(addr_width=cfg.axi_addr_width,
                                    data_width=cfg.axi_data_width)),
            "window_base": In(cfg.axi_addr_width), "window_size": In(cfg.axi_addr_width + 1),
            "rd_busy": Out(1), "rd_done": Out(1), "rd_error": Out(1),
            "wr_busy": Out(1), "wr_done": Out(1), "wr_error": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.reader = rd = DmaReader(cfg=self._cfg)
        m.submodules.writer = wr = DmaWriter(cfg=self._cfg)
        wiring.connect(m, wiring.flipped(self.rd_cmd), rd.cmd)
        wiring.connect(m, rd.o, wiring.flipped(self.rd_data))
        wiring.connect(m, wiring.flipped(self.wr_cmd), wr.cmd)
        wiring.connect(m, wiring.flipped(self.wr_data), wr.i)
        for unit in (rd, wr):
            m.d.comb += [unit.window_base.eq(self.window_base),
                         unit.window_size.eq(self.window_size)]
        for name in self.bus.signature.members:
            src = rd if name.startswith(("ar", "r")) else wr
            member = self.bus.signature.members[name]
            if member.flow == Out:
                m.d.comb += getattr(self.bus, name).eq(getattr(src.bus, name))
            else:
                m.d.comb += getattr(src.bus, name).eq(getattr(self.bus, name))
        m.d.comb += [self.rd_busy.eq(rd.busy), self.rd_done.eq(rd.done),
                     self.rd_error.eq(rd.error), self.wr_busy.eq(wr.busy),
                     self.wr_done.eq(wr.done), self.wr_error.eq(wr.error)]
        return m
