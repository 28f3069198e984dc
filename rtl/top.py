# amaranth: UnusedElaboratable=no
"""The accelerator's top module as Vivado instantiates it: ``rtl.engine.Accelerator`` with flat
``s_axil_*``/``m_axi_*`` ports, explicit ``clk``/``rst`` ports, and Xilinx interface attributes
on every port so that Vivado's block design need not infer the interfaces from the names.
What the build makes of it (the Verilog, the parts of the estimate) is in ``rtl/build/``.
"""

from __future__ import annotations

import re

from amaranth.hdl import ClockDomain, Module, Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from .config import HwConfig
from .engine import Accelerator
from .flatten import FlatTop

__all__ = ["BUSES", "VivadoTop", "buses", "flat_accelerator", "top_module"]

#: The accelerator's bus interfaces: Amaranth member -> (Verilog port prefix, role). The
#: block design puts the slave on the PS's general-purpose port and each master, in this
#: order, on its own high-performance port. These two every build has; :func:`buses` adds
#: the config's weight masters (``m_axi_w0`` ..).
BUSES: dict[str, tuple[str, str]] = {"axil": ("s_axil", "slave"), "bus": ("m_axi", "master")}


def buses(cfg: HwConfig) -> dict[str, tuple[str, str]]:
    """Every bus interface of the accelerator ``cfg`` builds, as :data:`BUSES`: the slave, the
    feature-map master, then ``HwConfig.weight_ports`` weight masters."""
    return {name: (prefix, "slave" if name == "axil" else "master")
            for name, prefix in Accelerator.bus_prefixes(cfg).items()}


def flat_accelerator(cfg: HwConfig) -> FlatTop:
    """``rtl.engine.Accelerator`` with its bus interfaces flattened into prefixed ports."""
    return FlatTop(Accelerator(cfg=cfg), {name: prefix for name, (prefix, _) in buses(cfg).items()})


#: AXI4 signals (the logical port names of ``xilinx.com:interface:aximm:1.0``), lower case.
_AXI_SIGNALS = frozenset(
    [f"{ch}{s}" for ch in ("aw", "ar") for s in ("id", "addr", "len", "size", "burst", "lock",
                                                 "cache", "prot", "region", "qos", "user",
                                                 "valid", "ready")]
    + [f"w{s}" for s in ("id", "data", "strb", "last", "user", "valid", "ready")]
    + [f"b{s}" for s in ("id", "resp", "user", "valid", "ready")]
    + [f"r{s}" for s in ("id", "data", "resp", "last", "user", "valid", "ready")])


class VivadoTop(wiring.Component):
    """The flat accelerator with explicit ``clk``/``rst`` ports and Xilinx interface attributes.

    Every port of a bus in :data:`BUSES` gets ``X_INTERFACE_INFO`` (``aximm`` with the logical
    signal name), and the write data port of each bus ``X_INTERFACE_PARAMETER`` with its
    protocol (AXI4LITE or AXI4) and widths. ``clk`` names its associated buses and reset,
    ``rst`` is declared active high and ``irq`` level high. Only wires are added; the design
    runs in the ``sync`` domain that ``clk``/``rst`` drive.

    The attributes are written into the Verilog by :meth:`annotate` rather than carried on the
    signals: Yosys merges the attributes of ports that one net drives (two constant IDs, the
    two constant burst types), which would give ``m_axi_awburst`` the name ``ARBURST``.

    Members
    -------
    port_attributes : dict of str to dict of str to str
        Port name -> Verilog attribute -> value.

    Raises
    ------
    TypeError
        If ``inner`` has an interface member (only flat tops can be annotated) or no one-bit
        interrupt output named ``irq``.
    ValueError
        If a bus's ports are not AXI signals, a bus's direction does not match its role, or a
        member named ``clk``/``rst`` already exists.
    """

    def __init__(self, inner: FlatTop, buses: dict[str, tuple[str, str]], *, irq: str = "irq"
                 ) -> None:
        members = dict(inner.signature.members)
        for name in ("clk", "rst"):
            if name in members:
                raise ValueError(f"the top already has a member {name!r}")
        for name, member in members.items():
            if not member.is_port:
                raise TypeError(f"member {name!r} of the top is an interface; flatten it first")
        irq_member = members.get(irq)
        if (irq_member is None or irq_member.flow != wiring.Out
                or Shape.cast(irq_member.shape).width != 1):
            raise TypeError(f"the top needs a one-bit output {irq!r} for the interrupt")
        members.update({"clk": In(1), "rst": In(1)})
        self._inner = inner
        super().__init__(members)
        prefixes = [prefix for prefix, _ in buses.values()]
        attrs: dict[str, dict[str, str]] = {}
        for prefix, role in buses.values():
            ports = {name[len(prefix) + 1:]: name for name in members
                     if name.startswith(prefix + "_")
                     and not any(p != prefix and p.startswith(prefix + "_")
                                 and name.startswith(p + "_") for p in prefixes)}
            attrs.update(self._bus_attributes(prefix, role, ports))
        attrs["clk"] = {"X_INTERFACE_INFO": "xilinx.com:signal:clock:1.0 clk CLK",
                        "X_INTERFACE_PARAMETER":
                            f"ASSOCIATED_BUSIF {':'.join(prefixes)}, ASSOCIATED_RESET rst"}
        attrs["rst"] = {"X_INTERFACE_INFO": "xilinx.com:signal:reset:1.0 rst RST",
                        "X_INTERFACE_PARAMETER": "POLARITY ACTIVE_HIGH"}
        attrs[irq] = {"X_INTERFACE_INFO": f"xilinx.com:signal:interrupt:1.0 {irq} INTERRUPT",
                      "X_INTERFACE_PARAMETER": "SENSITIVITY LEVEL_HIGH"}
        self.port_attributes = attrs

    def _bus_attributes(self, prefix: str, role: str, ports: dict[str, str]
                        ) -> dict[str, dict[str, str]]:
        if role not in ("master", "slave"):
            raise ValueError(f"bus {prefix!r}: role must be 'master' or 'slave', not {role!r}")
        unknown = sorted(set(ports) - _AXI_SIGNALS)
        missing = [s for s in ("awvalid", "awaddr", "wdata") if s not in ports]
        if unknown or missing:
            raise ValueError(f"bus {prefix!r} is not an AXI bus: "
                             + ", ".join([*(f"{u} is not an AXI signal" for u in unknown),
                                          *(f"it has no {s}" for s in missing)]))
        members = self.signature.members
        out = members[ports["awvalid"]].flow == wiring.Out
        if out != (role == "master"):
            raise ValueError(f"bus {prefix!r} is declared a {role} but its awvalid is an "
                             f"{'output' if out else 'input'}")

        def width(signal: str) -> int:
            return Shape.cast(members[ports[signal]].shape).width

        params = [f"PROTOCOL {'AXI4' if 'awlen' in ports else 'AXI4LITE'}",
                  f"DATA_WIDTH {width('wdata')}", f"ADDR_WIDTH {width('awaddr')}"]
        if "awid" in ports:
            params.append(f"ID_WIDTH {width('awid')}")
        attrs = {name: {"X_INTERFACE_INFO":
                        f"xilinx.com:interface:aximm:1.0 {prefix} {signal.upper()}"}
                 for signal, name in ports.items()}
        attrs[ports["wdata"]]["X_INTERFACE_PARAMETER"] = ", ".join(params)
        return attrs

    def annotate(self, verilog_text: str, module: str) -> str:
        """``verilog_text`` with :attr:`port_attributes` on the port declarations of
        ``module`` (and no other Xilinx interface attribute in it).

        Raises
        ------
        ValueError
            If the module or one of the annotated ports is not in the text.
        """
        lines = verilog_text.splitlines(keepends=True)
        try:
            start = lines.index(next(ln for ln in lines if ln.startswith(f"module {module}(")))
            end = start + next(i for i, ln in enumerate(lines[start:]) if ln.startswith(
                "endmodule"))
        except StopIteration:
            raise ValueError(f"no module {module!r} in the Verilog") from None
        body, seen = [], set()
        for line in lines[start:end]:
            if re.match(r"\s*\(\* X_INTERFACE_\w+ = ", line):
                continue
            port = re.match(r"(\s*)(?:input|output)\s+(?:\[[^\]]*\]\s*)?(\w+);$", line)
            if port and port.group(2) in self.port_attributes:
                seen.add(port.group(2))
                body += [f'{port.group(1)}(* {key} = "{value}" *)\n'
                         for key, value in self.port_attributes[port.group(2)].items()]
            body.append(line)
        missing = sorted(set(self.port_attributes) - seen)
        if missing:
            raise ValueError(f"ports {', '.join(missing)} are not declared in module {module!r}")
        return "".join(lines[:start] + body + lines[end:])

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.domains.sync = sync = ClockDomain("sync")
        m.d.comb += [sync.clk.eq(self.clk), sync.rst.eq(self.rst)]
        m.submodules.inner = inner = self._inner
        for name, member in inner.signature.members.items():
            if member.flow == In:
                m.d.comb += getattr(inner, name).eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(getattr(inner, name))
        return m


def top_module(cfg: HwConfig) -> VivadoTop | None:
    """The complete accelerator (``accel_top``): ports ``s_axil_*``, ``m_axi_*``, ``irq``,
    ``clk``, ``rst``, with Xilinx interface attributes (:class:`VivadoTop`)."""
    if not isinstance(cfg, HwConfig):
        raise TypeError(f"top_module needs a HwConfig, not {cfg!r}")
    return VivadoTop(flat_accelerator(cfg), buses(cfg))
