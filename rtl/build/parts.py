# amaranth: UnusedElaboratable=no
"""What the build makes of the accelerator: the Verilog of its top, and its parts for the estimate.

The first line tells Amaranth not to warn about parts that a caller only describes (names,
row counts) without converting them. ``build.py`` asks only this module what the design is.
Yosys on the whole top takes long (the zc706 PoT array alone takes minutes), so the
utilization estimate synthesizes three parts: the core (engine, DMA, buffers, vector units,
control) built with two-row arrays; each compute array's remaining rows, extrapolated from
two- and four-row slices of the array alone; and the double-buffered weight banks' remaining
rows (their width grows with the filter rows), extrapolated the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from amaranth.back import verilog
from amaranth.hdl import Elaboratable

from ..config import HwConfig
from ..conv_core import WeightBanks
from ..dsp_array import DspArray
from ..interface.regmap import build_regmap
from ..pot_array import PotArray
from ..top import BUSES, buses, flat_accelerator, top_module
from .vivado import VivadoDesign

__all__ = ["CORE_ROWS", "TOP_FILE", "TOP_NAME", "AcceleratorPart", "accelerator_parts",
           "top_verilog", "vivado_design"]

#: Verilog module name of the complete accelerator (the block design's RTL module reference).
TOP_NAME = "accel_top"
#: Verilog file of the complete accelerator, beside the Vivado Tcl script.
TOP_FILE = f"{TOP_NAME}.v"
#: Array rows inside the ``accel_core`` part; the arrays' parts count the rows beyond these.
CORE_ROWS = 2


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
    counted_from : int
        For such an array: rows already counted in another part; only the rows beyond are
        counted here (always estimated from row slices).
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
    counted_from: int = 0


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
    core_cfg = cfg.replace(pot_rows=min(cfg.pot_rows, CORE_ROWS),
                           dsp_rows=min(cfg.dsp_rows, CORE_ROWS))
    core = flat_accelerator(core_cfg)
    parts = [AcceleratorPart(
        name="accel_core",
        description=f"accelerator core: AXI4-Lite control ({len(regmap)} registers), engine, "
                    f"DMA, buffers, vector units, with {CORE_ROWS}-row arrays",
        design=core, to_verilog=lambda: verilog.convert(core, name="accel_core"))]
    if cfg.pot_rows:
        pot = PotArray(cfg=cfg)
        parts.append(AcceleratorPart(
            name="pot_array",
            description=f"PoT-4 shift-add array, {cfg.pot_rows} x {cfg.pot_cols} "
                        f"({cfg.pot_macs} MACs/cycle, LUTs)",
            design=pot, to_verilog=lambda: verilog.convert(pot, name="pot_array"),
            rows=cfg.pot_rows, counted_from=core_cfg.pot_rows,
            row_slice=lambda rows: verilog.convert(PotArray(cfg=cfg.replace(pot_rows=rows)),
                                                   name="pot_array")))
    if cfg.dsp_rows:
        dsp = DspArray(cfg=cfg)
        parts.append(AcceleratorPart(
            name="dsp_array",
            description=f"packed DSP48E1 array, {cfg.dsp_rows} lanes x {cfg.dsp_cols} "
                        f"({cfg.dsp_count} DSP48E1, {cfg.dsp_pack} products each)",
            design=dsp, to_verilog=lambda: verilog.convert(dsp, name="dsp_array"),
            rows=cfg.dsp_rows, counted_from=core_cfg.dsp_rows,
            row_slice=lambda rows: verilog.convert(DspArray(cfg=cfg.replace(dsp_rows=rows)),
                                                   name="dsp_array")))
    rows = cfg.pot_rows + cfg.dsp_rows
    banks = WeightBanks(cfg=cfg, rows=rows, fixed8_pairs=0)
    parts.append(AcceleratorPart(
        name="weight_banks",
        description=f"double-buffered weight banks: 2 x {cfg.weight_buf_depth} rows of "
                    f"{4 * cfg.vec_len * rows} bits, 2 x {rows} result slots",
        design=banks, to_verilog=lambda: verilog.convert(banks, name="weight_banks"),
        rows=rows, counted_from=core_cfg.pot_rows + core_cfg.dsp_rows,
        row_slice=lambda r: verilog.convert(WeightBanks(cfg=cfg, rows=r, fixed8_pairs=0),
                                            name="weight_banks")))
    return parts


def top_verilog(cfg: HwConfig) -> str | None:
    """Verilog of ``accel_top`` with Vivado's port names (``s_axil_*``, ``m_axi_*``, ``clk``,
    ``rst``, ``irq``), or None while there is no complete top."""
    top = top_module(cfg)
    return top.annotate(verilog.convert(top, name=TOP_NAME), TOP_NAME)


def vivado_design(cfg: HwConfig | None = None) -> VivadoDesign:
    """What the Vivado block design instantiates: ``accel_top`` from ``accel_top.v``, with the
    slave and the masters of ``buses(cfg)`` (of :data:`BUSES` without a config)."""
    table = buses(cfg) if cfg is not None else BUSES
    slaves = [prefix for prefix, role in table.values() if role == "slave"]
    masters = tuple(prefix for prefix, role in table.values() if role == "master")
    if len(slaves) != 1:
        raise ValueError(f"the top needs exactly one AXI4-Lite slave, not {slaves!r}")
    return VivadoDesign(top=TOP_NAME, sources=(TOP_FILE,), slave=slaves[0], masters=masters)
