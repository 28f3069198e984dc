"""AXI4-Lite slave generated from a RegisterMap: the accelerator's control port."""

from __future__ import annotations

from amaranth.back import verilog
from amaranth.hdl import Cat, Const, Module, Shape, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .interface.regmap import Access, Register, RegisterMap

__all__ = ["RESP_OKAY", "RESP_SLVERR", "AxiLiteSignature", "AxiLiteSlave", "AxiLiteSlaveTop",
           "register_signature", "to_verilog"]

#: AXI response codes used here (AXI4 specification, BRESP/RRESP).
RESP_OKAY = 0b00
RESP_SLVERR = 0b10


class AxiLiteSignature(wiring.Signature):
    """An AXI4-Lite port, seen from the master (use ``In(...)`` on a slave).

    Members carry the AXI4-Lite signal names (``awaddr``, ``awvalid``, ``awready``, ``wdata``,
    ``wstrb``, ``wvalid``, ``wready``, ``bresp``, ``bvalid``, ``bready``, ``araddr``,
    ``arvalid``, ``arready``, ``rdata``, ``rresp``, ``rvalid``, ``rready``); ``awprot`` and
    ``arprot`` are left out because the register map ignores them.

    Parameters
    ----------
    addr_width : int
        Byte address bits, 2 to 32.
    data_width : int
        Data bits; AXI4-Lite allows 32 or 64, this project uses 32.
    """

    def __init__(self, *, addr_width: int, data_width: int = 32) -> None:
        if isinstance(addr_width, bool) or not isinstance(addr_width, int):
            raise TypeError(f"AXI4-Lite address width must be an integer, not {addr_width!r}")
        if not 2 <= addr_width <= 32:
            raise ValueError(
                f"AXI4-Lite address width must be from 2 to 32 bits, not {addr_width!r}")
        if data_width not in (32, 64) or isinstance(data_width, bool):
            raise ValueError(f"AXI4-Lite data width must be 32 or 64, not {data_width!r}")
        self._addr_width = addr_width
        self._data_width = data_width
        super().__init__({
            "awaddr": Out(addr_width), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    @property
    def addr_width(self) -> int:
        return self._addr_width

    @property
    def data_width(self) -> int:
        return self._data_width

    def __eq__(self, other: object) -> bool:
        return (type(other) is AxiLiteSignature and self.addr_width == other.addr_width
                and self.data_width == other.data_width)

    def __hash__(self) -> int:
        return hash((AxiLiteSignature, self._addr_width, self._data_width))

    def __repr__(self) -> str:
        return f"AxiLiteSignature(addr_width={self._addr_width}, data_width={self._data_width})"


def _shape(reg: Register) -> Shape | data.FlexibleLayout:
    """A register's value: a layout with its fields (so ``regs.ctrl.value.start`` works)."""
    if not reg.fields:
        return unsigned(reg.width)
    return data.FlexibleLayout(reg.width, {
        f.name: data.Field(unsigned(f.width), f.offset) for f in reg.fields})


def register_signature(regmap: RegisterMap) -> wiring.Signature:
    """The core-side ports of :class:`AxiLiteSlave`, seen from the slave.

    One member per register that is not constant, named after the register in lower case:

    * ``rw``: ``value`` (out), the stored value;
    * ``ro``: ``value`` (in), what reads return;
    * ``wo``: ``value`` (out) the last written value and ``strobe`` (out), high for the one
      cycle in which ``value`` is new;
    * ``w1c``: ``value`` (out) the pending bits and ``set`` (in), bits to set this cycle.
    """
    members: dict[str, wiring.Member] = {}
    for reg in regmap:
        shape = _shape(reg)
        if reg.constant:
            continue
        if reg.access is Access.RW:
            sub = {"value": Out(shape)}
        elif reg.access is Access.RO:
            sub = {"value": In(shape)}
        elif reg.access is Access.WO:
            sub = {"value": Out(shape), "strobe": Out(1)}
        else:
            sub = {"value": Out(shape), "set": In(shape)}
        members[reg.name.lower()] = Out(wiring.Signature(sub))
    return wiring.Signature(members)


class AxiLiteSlave(wiring.Component):
    """The register map of ``regmap`` behind an AXI4-Lite slave port.

    Register ``i`` answers at byte address ``4 * i`` (the two low address bits are ignored, as
    AXI4-Lite transfers are whole words with byte strobes). Other addresses inside the
    ``addr_width`` window are unmapped: writes there change nothing and reads return 0, both
    answered with SLVERR. Known addresses answer OKAY, also for writes to ``ro`` registers
    (ignored) and reads of ``wo`` registers (0).

    Write channel: AW and W are taken independently, in either order (``awready`` is high
    while no address waits, ``wready`` while no data waits). Once both are held and no
    response is pending, the write happens and B is raised in the next cycle; B holds until
    ``bready``. ``wstrb`` selects the bytes written for ``rw``, ``wo`` and ``w1c`` registers
    (unselected bytes keep their value, or read as 0 for ``wo`` values and clear nothing for
    ``w1c``); a ``wo`` strobe pulses only if a byte of the register is selected. A ``w1c`` bit
    set by the core in the cycle software clears it stays set (no event is lost).

    Read channel: ``arready`` is high while no read response is pending; the register is
    sampled when the address is taken and R is raised in the next cycle, holding until
    ``rready``. One write every 3 cycles and one read every 2 cycles at most; no ready signal
    depends combinationally on a valid signal, and every valid and payload is a register.

    Parameters
    ----------
    regmap : RegisterMap
        Registers and their order.
    addr_width : int or None
        Byte address bits of the port; at least ``regmap.addr_width`` (its default).

    Members
    -------
    axil : In(AxiLiteSignature(addr_width=addr_width, data_width=32))
        The AXI4-Lite slave port.
    regs : Out(register_signature(regmap))
        One member per non-constant register, toward the core.

    Raises
    ------
    TypeError
        If ``regmap`` is not a :class:`RegisterMap` or ``addr_width`` not an integer.
    ValueError
        If ``addr_width`` cannot reach every register.
    """

    def __init__(self, *, regmap: RegisterMap, addr_width: int | None = None) -> None:
        if not isinstance(regmap, RegisterMap):
            raise TypeError(f"AxiLiteSlave needs a RegisterMap, not {regmap!r}")
        if addr_width is None:
            addr_width = regmap.addr_width
        if isinstance(addr_width, bool) or not isinstance(addr_width, int):
            raise TypeError(f"AxiLiteSlave addr_width must be an integer, not {addr_width!r}")
        if not regmap.addr_width <= addr_width <= 32:
            raise ValueError(
                f"AxiLiteSlave addr_width must be from {regmap.addr_width} (to reach all "
                f"{regmap.size:#x} bytes of the register map) to 32, not {addr_width!r}")
        self._regmap = regmap
        super().__init__({
            "axil": In(AxiLiteSignature(addr_width=addr_width, data_width=regmap.data_width)),
            "regs": Out(register_signature(regmap)),
        })

    @property
    def regmap(self) -> RegisterMap:
        return self._regmap

    @property
    def addr_width(self) -> int:
        return self.axil.signature.addr_width

    def elaborate(self, platform: object) -> Module:
        m = Module()
        bus = self.axil
        regmap = self._regmap
        dw = regmap.data_width

        # ---- write channel: hold AW and W independently, then perform the write ----
        aw_full = Signal()
        aw_addr = Signal(self.addr_width)
        w_full = Signal()
        w_data = Signal(dw)
        w_strb = Signal(dw // 8)
        b_valid = Signal()
        b_resp = Signal(2)
        m.d.comb += [bus.awready.eq(~aw_full), bus.wready.eq(~w_full),
                     bus.bvalid.eq(b_valid), bus.bresp.eq(b_resp)]
        with m.If(bus.awvalid & ~aw_full):
            m.d.sync += [aw_full.eq(1), aw_addr.eq(bus.awaddr)]
        with m.If(bus.wvalid & ~w_full):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        with m.If(b_valid & bus.bready):
            m.d.sync += b_valid.eq(0)
        write = Signal()
        m.d.comb += write.eq(aw_full & w_full & ~b_valid)
        with m.If(write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), b_valid.eq(1), b_resp.eq(RESP_SLVERR)]

        bytemask = Cat(*(b.replicate(8) for b in w_strb))
        masked = w_data & bytemask
        # One hot per register: this cycle writes register i.
        write_word = aw_addr[2:]
        hit = {reg.name: Signal(name=f"write_{reg.name.lower()}") for reg in regmap}
        for offset, reg in regmap.items():
            m.d.comb += hit[reg.name].eq(write & (write_word == offset // 4))
            with m.If(hit[reg.name]):
                m.d.sync += b_resp.eq(RESP_OKAY)

        # ---- register storage and core-side ports ----
        read_value: dict[str, Value] = {}
        for reg in regmap:
            w = reg.width
            if reg.constant:
                read_value[reg.name] = Const(reg.reset, dw)
                continue
            port = getattr(self.regs, reg.name.lower())
            value = Value.cast(port.value)
            if reg.access is Access.RO:
                read_value[reg.name] = value
                continue
            store = Signal(w, init=reg.reset, name=f"reg_{reg.name.lower()}")
            m.d.comb += value.eq(store)
            if reg.access is Access.RW:
                read_value[reg.name] = store
                with m.If(hit[reg.name]):
                    m.d.sync += store.eq((store & ~bytemask[:w]) | masked[:w])
            elif reg.access is Access.WO:
                read_value[reg.name] = Const(0, dw)
                m.d.sync += port.strobe.eq(0)
                with m.If(hit[reg.name]):
                    m.d.sync += [store.eq(masked[:w]),
                                 port.strobe.eq(w_strb[:(w + 7) // 8].any())]
            else:  # w1c
                read_value[reg.name] = store
                clear = Signal(w, name=f"clear_{reg.name.lower()}")
                with m.If(hit[reg.name]):
                    m.d.comb += clear.eq(masked[:w])
                m.d.sync += store.eq((store & ~clear) | Value.cast(port.set))

        # ---- read channel: sample the register when the address is taken ----
        r_valid = Signal()
        r_data = Signal(dw)
        r_resp = Signal(2)
        m.d.comb += [bus.arready.eq(~r_valid), bus.rvalid.eq(r_valid),
                     bus.rdata.eq(r_data), bus.rresp.eq(r_resp)]
        with m.If(r_valid & bus.rready):
            m.d.sync += r_valid.eq(0)
        with m.If(bus.arvalid & ~r_valid):
            m.d.sync += r_valid.eq(1)
            with m.Switch(bus.araddr[2:]):
                for offset, reg in regmap.items():
                    with m.Case(offset // 4):
                        m.d.sync += [r_data.eq(read_value[reg.name]), r_resp.eq(RESP_OKAY)]
                with m.Default():
                    m.d.sync += [r_data.eq(0), r_resp.eq(RESP_SLVERR)]
        return m


class AxiLiteSlaveTop(wiring.Component):
    """:class:`AxiLiteSlave` with its bus as flat members ``<prefix>_awaddr`` and so on.

    As a Verilog top level (``verilog.convert(top)``) the ports are then named
    ``s_axil_awaddr``, ..., ``s_axil_rready``: the Vivado convention, and what cocotbext-axi's
    ``AxiLiteBus.from_prefix(dut, "s_axil")`` looks for. The core-side ports keep Amaranth's
    names (``regs__ctrl__strobe``); the clock and reset are ``clk`` and ``rst``. Behaviour and
    latency are those of the wrapped slave (the wrapper adds only wires).

    Parameters
    ----------
    slave : AxiLiteSlave
        The slave to wrap.
    prefix : str
        Prefix of the bus port names.

    Members
    -------
    <prefix>_<signal> : the AXI4-Lite signals, slave side
    regs : Out(register_signature(slave.regmap))
    """

    def __init__(self, *, slave: AxiLiteSlave, prefix: str = "s_axil") -> None:
        if not isinstance(slave, AxiLiteSlave):
            raise TypeError(f"AxiLiteSlaveTop needs an AxiLiteSlave, not {slave!r}")
        if not isinstance(prefix, str) or not prefix.isidentifier():
            raise ValueError(f"AxiLiteSlaveTop prefix must be an identifier, not {prefix!r}")
        self._slave = slave
        self._prefix = prefix
        bus = slave.signature.members["axil"].signature  # flipped: the slave side
        members = {f"{prefix}_{name}": member for name, member in bus.members.items()}
        members["regs"] = Out(slave.signature.members["regs"].signature)
        super().__init__(members)

    @property
    def slave(self) -> AxiLiteSlave:
        return self._slave

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.slave = slave = self._slave
        pairs = [(getattr(self, f"{self._prefix}_{name}"), getattr(slave.axil, name), member)
                 for name, member in slave.axil.signature.members.items()]
        pairs += [(outer, inner, member) for (_, member, outer), (_, _, inner) in zip(
            self.signature.members["regs"].signature.flatten(self.regs),
            slave.signature.members["regs"].signature.flatten(slave.regs), strict=True)]
        for outer, inner, member in pairs:
            outer, inner = Value.cast(outer), Value.cast(inner)
            if member.flow == In:
                m.d.comb += inner.eq(outer)
            else:
                m.d.comb += outer.eq(inner)
        return m


def to_verilog(slave: AxiLiteSlave, *, name: str = "axil_regs", prefix: str = "s_axil") -> str:
    """Verilog of ``slave`` as module ``name``, bus ports named ``<prefix>_awaddr`` and so on.

    See :class:`AxiLiteSlaveTop` for the port names.
    """
    return verilog.convert(AxiLiteSlaveTop(slave=slave, prefix=prefix), name=name)
