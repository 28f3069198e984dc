# amaranth: UnusedElaboratable=no
"""What the build builds: the accelerator's parts as of now, and its top module once it exists.

The first line tells Amaranth not to warn about parts that a caller only describes (names,
row counts) without converting them.
``build.py`` asks only this module what the design is. Until the accelerator core (layer
engine with its AXI master, scheduler and buffers) lands, there is no complete top: the parts
are the AXI4-Lite control block and the two compute arrays, which the build synthesizes one
by one for a utilization estimate. When the core lands, :func:`top_module` returns it and
:data:`CORE_INTEGRATED` becomes true; nothing else in the build changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from amaranth.back import verilog
from amaranth.hdl import Elaboratable

from .axil import AxiLiteSlave, to_verilog
from .config import HwConfig
from .dsp_array import DspArray
from .pot_array import PotArray
from .regmap import build_regmap
from .vivado import VivadoDesign

__all__ = ["CORE_INTEGRATED", "NOT_INTEGRATED", "TOP_FILE", "TOP_NAME", "AcceleratorPart",
           "accelerator_parts", "top_module", "top_verilog", "vivado_design"]

#: Verilog module name of the complete accelerator (the block design's RTL module reference).
TOP_NAME = "accel_top"
#: Verilog file of the complete accelerator, beside the Vivado Tcl script.
TOP_FILE = f"{TOP_NAME}.v"
#: Whether :func:`top_module` returns the complete accelerator.
CORE_INTEGRATED = False
#: What the build says while the core is missing.
NOT_INTEGRATED = ("accelerator core (layer engine) not yet integrated: utilization covers the "
                  "compute arrays and the control block only")


@dataclass(frozen=True)
class AcceleratorPart:
    """One separately synthesized piece of the accelerator.

    Parameters
    ----------
    name : str
        Verilog module name (also the file name ``<name>.v``).
    description : str
        One line for the build report.
    design : Elaboratable
        The Amaranth component.
    to_verilog : callable
        Returns the Verilog text of ``design`` as module ``name``.
    rows : int
        For an array of identical, independent rows: its row count, else 0.
    row_slice : callable or None
        For such an array: the Verilog of the same array with the given (smaller) number of
        rows, so that a resource estimate can be taken from small slices and extrapolated.
    """

    name: str
    description: str
    design: Elaboratable
    to_verilog: Callable[[], str]
    rows: int = 0
    row_slice: Callable[[int], str] | None = None


def accelerator_parts(cfg: HwConfig) -> list[AcceleratorPart]:
    """The named components the accelerator is made of today, each synthesized on its own.

    Raises
    ------
    TypeError
        If ``cfg`` is not a :class:`HwConfig`.
    """
    if not isinstance(cfg, HwConfig):
        raise TypeError(f"accelerator_parts needs a HwConfig, not {cfg!r}")
    regmap = build_regmap(cfg)
    control = AxiLiteSlave(regmap=regmap)
    parts = [AcceleratorPart(
        name="axil_regs",
        description=f"AXI4-Lite control block ({len(regmap)} registers)",
        design=control,
        to_verilog=lambda: to_verilog(control, name="axil_regs", prefix="s_axil"))]
    if cfg.pot_rows:
        pot = PotArray(cfg=cfg)
        parts.append(AcceleratorPart(
            name="pot_array",
            description=f"PoT-4 shift-add array, {cfg.pot_rows} x {cfg.pot_cols} "
                        f"({cfg.pot_macs} MACs/cycle, LUTs)",
            design=pot, to_verilog=lambda: verilog.convert(pot, name="pot_array"),
            rows=cfg.pot_rows,
            row_slice=lambda rows: verilog.convert(PotArray(cfg=cfg.replace(pot_rows=rows)),
                                                   name="pot_array")))
    if cfg.dsp_rows:
        dsp = DspArray(cfg=cfg)
        parts.append(AcceleratorPart(
            name="dsp_array",
            description=f"packed DSP48E1 array, {cfg.dsp_rows} lanes x {cfg.dsp_cols} "
                        f"({cfg.dsp_count} DSP48E1, {cfg.dsp_pack} products each)",
            design=dsp, to_verilog=lambda: verilog.convert(dsp, name="dsp_array"),
            rows=cfg.dsp_rows,
            row_slice=lambda rows: verilog.convert(DspArray(cfg=cfg.replace(dsp_rows=rows)),
                                                   name="dsp_array")))
    return parts


def top_module(cfg: HwConfig) -> Elaboratable | None:
    """The complete accelerator (``accel_top``), or None while the core is not integrated."""
    if not isinstance(cfg, HwConfig):
        raise TypeError(f"top_module needs a HwConfig, not {cfg!r}")
    return None


def top_verilog(cfg: HwConfig) -> str | None:
    """Verilog of ``accel_top`` with Vivado's port names (``s_axil_*``, ``m_axi_*``, ``clk``,
    ``rst``, ``irq``), or None while there is no complete top."""
    top = top_module(cfg)
    if top is None:
        return None
    return verilog.convert(top, name=TOP_NAME)


def vivado_design() -> VivadoDesign:
    """What the Vivado block design instantiates: ``accel_top`` from ``accel_top.v``."""
    return VivadoDesign(top=TOP_NAME, sources=(TOP_FILE,))
