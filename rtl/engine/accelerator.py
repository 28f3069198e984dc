"""The accelerator top: the AXI4-Lite register slave and the layer engine."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..axil import AxiLiteSignature, AxiLiteSlave
from ..config import HwConfig
from ..dma import AxiSignature
from ..interface.regmap import RegisterMap, build_regmap
from .sequencer import Engine, weight_buses

__all__ = ["Accelerator"]


class Accelerator(wiring.Component):
    """The accelerator top: AXI4-Lite register slave, the engine and its AXI4 master.

    Members
    -------
    axil : In(AxiLiteSignature)
        Control port (to the PS's general-purpose master).
    bus : Out(AxiSignature)
        DDR port for descriptors and feature maps (to a PS high-performance port).
    wbus0, wbus1, ... : Out(AxiSignature)
        ``HwConfig.weight_ports`` DDR ports for conv weights (each to its own HP port).
    irq : Out(1)
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        self._cfg = cfg
        self._regmap = build_regmap(cfg)
        super().__init__({
            "axil": In(AxiLiteSignature(addr_width=self._regmap.addr_width)),
            "bus": Out(AxiSignature(addr_width=cfg.axi_addr_width,
                                    data_width=cfg.axi_data_width)),
            **weight_buses(cfg),
            "irq": Out(1),
        })

    @property
    def regmap(self) -> RegisterMap:
        return self._regmap

    @staticmethod
    def bus_prefixes(cfg: HwConfig) -> dict[str, str]:
        """Verilog port prefix of each bus member, in order: ``s_axil`` (the register
        slave), ``m_axi`` (feature maps), then ``m_axi_w0`` .. (weights)."""
        return {"axil": "s_axil", "bus": "m_axi",
                **{f"wbus{j}": f"m_axi_w{j}" for j in range(cfg.weight_ports)}}

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.regs = slave = AxiLiteSlave(regmap=self._regmap,
                                                 addr_width=self._regmap.addr_width)
        m.submodules.engine = engine = Engine(cfg=self._cfg, regmap=self._regmap)
        wiring.connect(m, wiring.flipped(self.axil), slave.axil)
        wiring.connect(m, slave.regs, engine.regs)
        wiring.connect(m, engine.bus, wiring.flipped(self.bus))
        for j in range(self._cfg.weight_ports):
            wiring.connect(m, getattr(engine, f"wbus{j}"),
                           wiring.flipped(getattr(self, f"wbus{j}")))
        m.d.comb += self.irq.eq(engine.irq)
        return m
