"""The weight loader: a conv's pass blocks over the weight ports into the core's weight banks."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..common import check_config, index_bits, one_hot_fsm, stage
from ..config import HwConfig
from ..conv_core import slot_layout
from ..dma import DmaCommand
from ..interface.ddr import (
    PASS_HEADER_WORDS,
    SLOT_FIELDS,
    SLOT_WORDS,
    port_row_words,
    weight_row_bits,
    word_bits,
)
from ..interface.regmap import ErrorCode

__all__ = ["WeightLoader", "bank_write_signature", "reader_port_signature"]


def reader_port_signature(cfg: HwConfig) -> wiring.Signature:
    """A DMA reader seen from its user (``rtl.dma.DmaReader``: ``cmd``, ``o`` as ``data``,
    ``done``, ``error``)."""
    return wiring.Signature({
        "cmd": Out(stream.Signature(DmaCommand(cfg))),
        "data": In(stream.Signature(word_bits(cfg))),
        "done": In(1), "error": In(1),
    })


def bank_write_signature(cfg: HwConfig) -> wiring.Signature:
    """The write side of the conv core's weight banks (``rtl.conv_core.ConvCore``'s members
    of the same names): weight rows, result slots and, with Fixed-8, its pair flags."""
    members = {
        "w_bank": Out(1),
        "w_we": Out(1), "w_waddr": Out(index_bits(cfg.max_pass_rows)),
        "w_wdata": Out(weight_row_bits(cfg)),
        "slot_we": Out(1), "slot_waddr": Out(index_bits(cfg.slots)),
        "slot_wdata": Out(slot_layout(cfg)),
    }
    if "fixed8" in cfg.weight_formats:
        members["fixed8_we"] = Out(1)
        members["fixed8_wdata"] = Out(data.ArrayLayout(unsigned(1), cfg.dsp_rows // 2))
    return wiring.Signature(members)


class WeightLoader(wiring.Component):
    """Loads a conv's passes into the free weight bank, a pass at a time, over all the
    weight ports at once.

    A pass block (``rtl.interface.ddr``) is read in ``P = weight_ports`` shares
    (``port_span``): port 0 the header (Fixed-8 pair flags), the result slots and its
    segment of every row; port ``j`` its segment of every row (``port_row_words``: each row's
    words cut into ``P`` contiguous pieces). Each port shifts its segment of the row into its
    own register; the row is those registers side by side, written into the bank a cycle after
    the last segment is in, from registers, while a port that is done with its segment waits
    for the others (they pace one another row by row). Pass ``p`` goes to
    bank ``p[0] ^ bank0``; a pass is issued once its bank is empty (``full``), the ports'
    readers are all idle and ``hold`` is low, and it marks its bank full when all its shares
    are in. A long pass (more steps than ``weight_buf_depth``: its rows run on into the other
    bank) is issued only once both banks are empty, and no pass after it until the core has
    released it. A pass whose read came back with an error, whose header asks for Fixed-8 pairs
    that the build lacks, or whose valid slot has a bias beyond ``acc_bits`` stops the loader
    with ``code`` AXI_RESPONSE, UNSUPPORTED_FORMAT or BAD_DESCRIPTOR (in that order) and is
    not marked full.

    Parameters
    ----------
    cfg : HwConfig
        The build: ports, bank depth, slots, weight formats.

    Members
    -------
    weight_addr : In(axi_addr_width)
        The first pass block (the descriptor's ``weight_addr``).
    steps : In(32)
        Weight rows per pass. Both stable from ``AHEAD_CYCLES`` (5) cycles before ``start``
        to the last pass: the ports' words follow them through registers.
    passes : In(16)
        Passes of the descriptor.
    pass_words : In(32)
        Bus words of a pass block.
    start : In(1)
        Load the descriptor's passes from pass 0 into bank 0 (taken while idle).
    follow : In(1)
        The next descriptor is ready: load its passes after these, pass 0 in the bank after
        the last (taken while idle, once, without error). ``weight_addr``, ``steps``,
        ``passes`` and ``pass_words`` are then the next descriptor's, from ``AHEAD_CYCLES``
        (5) cycles before ``follow`` on (the same values, when it has the same weights).
    stop : In(1)
        Issue no further pass (one under way finishes).
    hold : In(1)
        Issue no pass yet (port 0 carries something else).
    release : In(1)
        The core has run the pass in bank ``release_bank``: it is empty again.
    release_bank : In(1)
    clear : In(1)
        The passes that ``follow`` started are now the descriptor's own (``carried`` falls).
    full : Out(2)
        Which banks hold a pass that the core has not yet run.
    bank0 : Out(1)
        The bank of the pass 0 being loaded.
    carried : Out(1)
        ``follow`` was taken and not yet cleared.
    busy : Out(1)
        A pass is being read.
    idle : Out(1)
        No pass is being issued or read (all of the descriptor's are, or it stopped).
    code : Out(8)
        The error that stopped the loader (an ``ErrorCode``; cleared by ``start``).
    port0, port1, ... : Out(reader_port_signature(cfg))
        The weight ports' DMA readers.
    banks : Out(bank_write_signature(cfg))
        The core's weight banks.
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        self._cfg = check_config(cfg, "Weight loader")
        super().__init__({
            "weight_addr": In(cfg.axi_addr_width), "steps": In(32), "passes": In(16),
            "pass_words": In(32),
            "start": In(1), "follow": In(1), "stop": In(1), "hold": In(1),
            "release": In(1), "release_bank": In(1), "clear": In(1),
            "full": Out(2), "bank0": Out(1), "carried": Out(1), "busy": Out(1),
            "idle": Out(1),
            "code": Out(8),
            **{f"port{j}": Out(reader_port_signature(cfg)) for j in range(cfg.weight_ports)},
            "banks": Out(bank_write_signature(cfg)),
        })

    @property
    def cfg(self) -> HwConfig:
        return self._cfg

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg, banks = self._cfg, self.banks
        n_ports, word = cfg.weight_ports, word_bits(cfg)
        ports = [getattr(self, f"port{j}") for j in range(n_ports)]
        head = PASS_HEADER_WORDS + SLOT_WORDS * cfg.slots
        rows_bits = index_bits(cfg.max_pass_rows) + 1
        # Each port's segment of a row: (first word, words); a port past the row's words
        # (rows of fewer words than ports) loads nothing.
        segs = [port_row_words(cfg, j) for j in range(n_ports)]
        used = [j for j in range(n_ports) if segs[j][1]]

        load_idx = Signal(16)          # the pass it fetches next
        load_more = Signal()           # load_idx != passes (registered)
        # passes - 1, a register (the fields hold still from before a start or a follow, and
        # the first pass ends cycles later): load_more compares it with load_idx, no adder.
        # For passes = 0 it is -1, which no load_idx equals.
        passes_m1 = stage(m, self.passes - 1, len(self.passes) + 1, "passes_m1")
        odd = Signal()                 # the passes being loaded are odd in number
        # The passes being loaded span both banks (a register: the steps hold still from
        # before a start or a follow); one such is in the banks and not yet released.
        long = stage(m, self.steps > cfg.weight_buf_depth, 1, "long")
        long_in = Signal()
        full, bank0, code = self.full, self.bank0, self.code
        # Where each weight port reads its share of the next pass block.
        port_addr = [Signal(cfg.axi_addr_width, name=f"port{j}_addr") for j in range(n_ports)]
        slot_lo = Signal(word)
        hdr = Signal(range(head + 1))  # header and slot words port 0 has taken
        pending = Signal(n_ports)      # ports whose share of the pass is still coming
        port_err = Signal()            # a port's read came with an error response
        prow = [Signal(max(segs[j][1], 1) * word, name=f"port{j}_row") for j in range(n_ports)]
        pk = [Signal(range(max(segs[j][1], 1)), name=f"port{j}_k") for j in range(n_ports)]
        row_idx = Signal(rows_bits)    # the row being put together
        bias_bad = Signal()
        format_bad = Signal()
        w_rd = [p.data.payload for p in ports]
        # The row is the ports' segment registers side by side; it is written to the banks
        # from registers (the write enable and address reach every block RAM of the banks)
        # a cycle after its last segment is in, and the ports take the next row's words from
        # that cycle on. The pass is complete only after its ports' registered ends, later
        # than that write.
        w_we_d = Signal()
        w_bank_d = Signal()
        m.d.sync += w_bank_d.eq(load_idx[0] ^ bank0)
        m.d.comb += [banks.w_bank.eq(w_bank_d), banks.w_we.eq(w_we_d),
                     banks.w_waddr.eq(row_idx),
                     banks.w_wdata.eq(Cat(*[prow[j] for j in used])[:weight_row_bits(cfg)])]
        with m.If(w_we_d):
            m.d.sync += row_idx.eq(row_idx + 1)

        # Port j's words: port 0 the header and slots, then steps segments; port j its steps
        # segments after those of the ports before it. The products end at registers of their
        # own, the sums a cycle later.
        steps_w = self.steps[:rows_bits]
        port_words = [Signal(32, name=f"port{j}_words") for j in range(n_ports)]
        port_off = [Signal(32, name=f"port{j}_offset") for j in range(n_ports)]
        for j in used:
            seg_w = stage(m, steps_w * segs[j][1], 32, f"port{j}_seg_words")
            before = stage(m, steps_w * segs[j][0], 32, f"port{j}_before_words") if j else 0
            m.d.sync += [port_words[j].eq(seg_w + (head if j == 0 else 0)),
                         port_off[j].eq(0 if j == 0 else head + before)]
        for j in range(n_ports):
            # The commands' payloads are registers (a reader's registers follow them while
            # it is idle).
            m.d.comb += [ports[j].cmd.payload.addr.eq(port_addr[j]),
                         ports[j].cmd.payload.words.eq(port_words[j])]

        # Assembling rows: whether port 0 is past the header and slots, whether each port is
        # at its segment's last word and whether its segment of the row is in (waiting for
        # the write) are registers.
        hdr_done = Signal()            # hdr == head
        at_last = [Signal(name=f"port{j}_at_last") for j in range(n_ports)]  # pk == seg - 1
        have = [Signal(name=f"port{j}_have") for j in range(n_ports)]
        in_rows = [hdr_done] + [Const(1)] * (n_ports - 1)
        w_take = [Signal(name=f"port{j}_take") for j in range(n_ports)]
        loading = Signal()             # in DATA
        have_next = []
        for j in used:
            p, seg = ports[j], segs[j][1]
            # After a failed read the words are taken and dropped, so that every reader ends.
            ready = loading & (~in_rows[j] | ~have[j] | w_we_d | port_err)
            m.d.comb += [p.data.ready.eq(ready), w_take[j].eq(p.data.valid & ready)]
            seg_in = w_take[j] & in_rows[j] & at_last[j]
            # The segment register is a shift register of words: each word taken goes in at
            # the top as the others move down one, so after the segment's words its first is
            # at the bottom, and the row is plain wiring (no multiplexer per bit, and every
            # flip-flop loads a fixed neighbour).
            with m.If(w_take[j] & in_rows[j]):
                m.d.sync += [prow[j].eq(Cat(prow[j][word:], w_rd[j])),
                             pk[j].eq(Mux(at_last[j], 0, pk[j] + 1)),
                             at_last[j].eq(Mux(at_last[j], seg == 1, pk[j] == seg - 2))]
            have_next.append(Mux(w_we_d, 0, have[j]) | seg_in)
            m.d.sync += have[j].eq(have_next[-1])
        all_in = Const(1)
        for h in have_next:
            all_in = all_in & h
        m.d.sync += w_we_d.eq(all_in & ~port_err)

        # The header and the slots: two words a slot, its fields then its channel.
        # The header's and the slots' writes go to the banks from registers too (their
        # enables fan out to every slot's flags), a cycle after their words are taken.
        fixed8_we, slot_we = Signal(), Signal()
        m.d.sync += banks.slot_we.eq(slot_we)
        if "fixed8" in cfg.weight_formats:
            m.d.sync += [banks.fixed8_we.eq(fixed8_we),
                         banks.fixed8_wdata.eq(w_rd[0][:cfg.dsp_rows // 2])]

        def slot_field(name: str):
            offset, width = SLOT_FIELDS[name]
            return slot_lo[offset:offset + width]

        slot_bias = slot_field("bias").as_signed()
        m.d.sync += [
            banks.slot_waddr.eq((hdr - PASS_HEADER_WORDS) // SLOT_WORDS),
            banks.slot_wdata.valid.eq(slot_field("valid")),
            banks.slot_wdata.bias.eq(slot_bias),
            banks.slot_wdata.mult.eq(slot_field("mult")),
            banks.slot_wdata.shift.eq(slot_field("shift")),
            banks.slot_wdata.channel.eq(w_rd[0][:index_bits(cfg.max_channels)]),
        ]
        bias_fits = ((slot_bias >= -(1 << (cfg.acc_bits - 1)))
                     & (slot_bias < (1 << (cfg.acc_bits - 1))))

        with m.If(self.release):
            m.d.sync += [full.bit_select(self.release_bank, 1).eq(0), long_in.eq(0)]
        with m.If(self.clear):
            m.d.sync += self.carried.eq(0)
        all_ready = Const(1)
        for p in ports:
            all_ready = all_ready & p.cmd.ready
        # The ports' ends, registered (no path from a reader's state into the banks' full
        # flags and the pass count): a pass is complete a cycle after its last port's done.
        done_now = stage(m, Cat(*[p.done for p in ports]), n_ports, "ports_done")
        err_now = stage(m, Cat(*[p.done & p.error for p in ports]).any(), 1, "ports_err")
        still = Signal(n_ports)
        m.d.comb += still.eq(pending & ~done_now)
        with one_hot_fsm(m, name="loader"):
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                # Both starts begin at the descriptor's first pass: the pass counter and the
                # ports' addresses are set while idle, whether a start comes or not.
                m.d.sync += [load_idx.eq(0), load_more.eq(1)]
                m.d.sync += [port_addr[j].eq(self.weight_addr + port_off[j] * 8)
                             for j in range(n_ports)]
                with m.If(self.start):
                    m.d.sync += [full.eq(0), long_in.eq(0), code.eq(ErrorCode.NONE),
                                 bank0.eq(0), odd.eq(self.passes[0])]
                    m.next = "CMD"
                with m.Elif(self.follow & ~self.carried & (code == ErrorCode.NONE)):
                    m.d.sync += [self.carried.eq(1), bank0.eq(bank0 ^ odd),
                                 odd.eq(self.passes[0])]
                    m.next = "CMD"
            with m.State("CMD"):
                with m.If(~load_more | (code != ErrorCode.NONE) | self.stop):
                    m.next = "IDLE"
                with m.Elif(~full.bit_select(load_idx[0] ^ bank0, 1) & ~long_in
                            & (~long | (full == 0)) & all_ready & ~self.hold):
                    m.d.sync += long_in.eq(long)
                    for j in used:
                        m.d.comb += ports[j].cmd.valid.eq(1)
                        m.d.sync += [pk[j].eq(0), at_last[j].eq(segs[j][1] == 1),
                                     have[j].eq(0), pending[j].eq(1)]
                    m.d.sync += [hdr.eq(0), hdr_done.eq(0), bias_bad.eq(0), format_bad.eq(0),
                                 port_err.eq(0), row_idx.eq(0)]
                    m.d.sync += [port_addr[j].eq(port_addr[j] + self.pass_words * 8)
                                 for j in range(n_ports)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [self.busy.eq(1), loading.eq(1)]
                m.d.sync += pending.eq(still)
                with m.If(err_now):
                    m.d.sync += port_err.eq(1)
                with m.If(w_take[0] & ~in_rows[0]):
                    m.d.sync += [hdr.eq(hdr + 1), hdr_done.eq(hdr == head - 1)]
                    with m.If(hdr < PASS_HEADER_WORDS):
                        if "fixed8" in cfg.weight_formats:
                            m.d.comb += fixed8_we.eq(1)
                        else:
                            with m.If(w_rd[0] != 0):     # Fixed-8 pairs the build lacks
                                m.d.sync += format_bad.eq(1)
                    with m.Elif((hdr - PASS_HEADER_WORDS) % SLOT_WORDS == 0):
                        m.d.sync += slot_lo.eq(w_rd[0])
                    with m.Else():
                        m.d.comb += slot_we.eq(1)
                        with m.If(slot_field("valid") & ~bias_fits):
                            m.d.sync += bias_bad.eq(1)
                with m.If(still == 0):
                    m.next = "CMD"
                    with m.If(port_err | err_now):
                        m.d.sync += code.eq(ErrorCode.AXI_RESPONSE)
                    with m.Elif(format_bad):
                        m.d.sync += code.eq(ErrorCode.UNSUPPORTED_FORMAT)
                    with m.Elif(bias_bad):
                        m.d.sync += code.eq(ErrorCode.BAD_DESCRIPTOR)
                    with m.Else():
                        m.d.sync += [full.bit_select(load_idx[0] ^ bank0, 1).eq(1),
                                     load_idx.eq(load_idx + 1),
                                     load_more.eq(load_idx != passes_m1)]
        return m
