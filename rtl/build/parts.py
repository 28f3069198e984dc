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

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from amaranth.back import rtlil, verilog
from amaranth.hdl import Elaboratable, _nir

from ..config import HwConfig
from ..conv_core import WeightBanks
from ..dsp_array import DspArray
from ..interface.regmap import build_regmap
from ..pot_array import PotArray
from ..top import BUSES, buses, flat_accelerator, top_module
from .resources import SLICE_ROWS
from .vivado import VivadoDesign

__all__ = ["CORE_ROWS", "TOP_FILE", "TOP_NAME", "AcceleratorPart", "accelerator_parts",
           "faster_netlists", "top_rtlil", "top_verilog", "vivado_design"]

#: Verilog module name of the complete accelerator (the block design's RTL module reference).
TOP_NAME = "accel_top"
#: Verilog file of the complete accelerator, beside the Vivado Tcl script.
TOP_FILE = f"{TOP_NAME}.v"
#: Array rows inside the ``accel_core`` part; the arrays' parts count the rows beyond these.
CORE_ROWS = 2


def _value_new(cls, nets=()):
    if isinstance(nets, _nir.Net):
        return tuple.__new__(cls, (nets,))
    return tuple.__new__(cls, nets)


def _value_getitem(self, index):
    if isinstance(index, slice):
        return tuple.__new__(type(self), tuple.__getitem__(self, index))
    return tuple.__getitem__(self, index)


@contextlib.contextmanager
def faster_netlists() -> Iterator[None]:
    """Amaranth's netlist builder without its per-bit type check of netlist values.

    Amaranth 0.5 checks that every bit of every ``_nir.Value`` it makes is a ``Net``, also when
    it only slices a value it made itself; that check is most of the conversion time of the
    zc706 top (123 s with it, 48 s without, on the same busy machine). Only the check goes:
    the netlist, and the RTLIL and Verilog made from it, are the same (``tests/test_build.py``
    compares them). Left as it is on another Amaranth than the 0.5 this was measured on.
    """
    saved = _nir.Value.__new__, _nir.Value.__getitem__
    if not _FASTER:
        yield
        return
    _nir.Value.__new__, _nir.Value.__getitem__ = _value_new, _value_getitem
    try:
        yield
    finally:
        _nir.Value.__new__, _nir.Value.__getitem__ = saved


def _amaranth_minor() -> tuple[int, int]:
    from amaranth import __version__
    major, minor, *_ = [*__version__.split("."), "0", "0"]
    return int(major), int(minor)


_FASTER = _amaranth_minor() == (0, 5)


def to_rtlil(design: Elaboratable, name: str) -> str:
    """RTLIL of ``design`` as module ``name`` (what Yosys reads fastest), made with
    :func:`faster_netlists`."""
    with faster_netlists():
        return rtlil.convert(design, name=name)


@dataclass(frozen=True)
class AcceleratorPart:
    """One separately synthesized piece of the accelerator.

    Parameters
    ----------
    name : str
        Module name of the part (also the file name ``<name>.il`` or ``<name>.v``).
    description : str
        One line for the build report.
    design : Elaboratable
        The Amaranth component.
    to_verilog : callable or None
        Returns the Verilog text of ``design`` as module ``name``.
    rows : int
        For an array of identical, independent rows: its row count, else 0.
    row_slice : callable or None
        For such an array: the RTLIL of the same array with the given (smaller) number of
        rows, so that a resource estimate can be taken from small slices and extrapolated.
    counted_from : int
        For such an array: rows already counted in another part; only the rows beyond are
        counted here (always estimated from row slices).
    slice_rows : (int, int)
        For such an array: the row counts of the two slices synthesized.
    row_unit : int
        For such an array: rows come in groups of this many (the DSP array's lanes sharing
        a DSP48E1); a partial group costs a whole one.
    to_rtlil : callable or None
        Returns the RTLIL text of ``design`` as module ``name``: what the build synthesizes
        (Yosys reads it several times faster than Verilog, and Amaranth makes it without
        running Yosys). Without it the build synthesizes ``to_verilog``'s text.
    """

    name: str
    description: str
    design: Elaboratable
    to_verilog: Callable[[], str] | None = None
    rows: int = 0
    row_slice: Callable[[int], str] | None = None
    counted_from: int = 0
    slice_rows: tuple[int, int] = SLICE_ROWS
    row_unit: int = 1
    to_rtlil: Callable[[], str] | None = None

    def source(self) -> tuple[str, str]:
        """``(text, suffix)`` of what the build synthesizes: RTLIL (``.il``) where the part
        has it, else Verilog (``.v``)."""
        if self.to_rtlil is not None:
            return self.to_rtlil(), ".il"
        if self.to_verilog is None:
            raise ValueError(f"part {self.name!r} has neither RTLIL nor Verilog")
        return self.to_verilog(), ".v"


def _part(name: str, description: str, design: Elaboratable, **kwargs) -> AcceleratorPart:
    return AcceleratorPart(name=name, description=description, design=design,
                           to_verilog=lambda: verilog.convert(design, name=name),
                           to_rtlil=lambda: to_rtlil(design, name), **kwargs)


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
    parts = [_part(
        "accel_core",
        f"accelerator core: AXI4-Lite control ({len(regmap)} registers), engine, DMA, buffers, "
        f"vector units, with {CORE_ROWS}-row arrays",
        flat_accelerator(core_cfg))]
    # HwConfig gives both arrays at least one row.
    for name, array, rows, unit, what in (
            ("pot_array", PotArray, "pot_rows", 1,
             f"PoT-4 shift-add array, {cfg.pot_rows} x {cfg.pot_cols} ({cfg.pot_macs} "
             f"MACs/cycle, LUTs)"),
            ("dsp_array", DspArray, "dsp_rows", cfg.dsp_pack,
             f"packed DSP48E1 array, {cfg.dsp_rows} lanes x {cfg.dsp_cols} ({cfg.dsp_count} "
             f"DSP48E1, {cfg.dsp_pack} products each)")):
        parts.append(_part(
            name, what, array(cfg=cfg), rows=getattr(cfg, rows),
            counted_from=getattr(core_cfg, rows), row_unit=unit,
            slice_rows=SLICE_ROWS if unit == 1 else (unit, 2 * unit),
            row_slice=lambda n, name=name, array=array, rows=rows: to_rtlil(
                array(cfg=cfg.replace(**{rows: n})), name)))
    # The banks' result slots live in one distributed RAM per result lane, whatever the
    # rows: two small slices would not scale linearly, so they are sliced at the core's rows
    # and at all rows (the estimate is then their difference, exactly).
    rows = cfg.slots
    core_rows = core_cfg.pot_rows + core_cfg.dsp_rows
    parts.append(_part(
        "weight_banks",
        f"double-buffered weight banks: 2 x {cfg.weight_buf_depth} rows of "
        f"{4 * cfg.vec_len * rows} bits, 2 x {rows} result slots",
        WeightBanks(cfg=cfg, rows=rows, fixed8_pairs=0),
        rows=rows, counted_from=core_rows,
        slice_rows=(core_rows, rows) if rows > core_rows else SLICE_ROWS,
        row_slice=lambda r: to_rtlil(WeightBanks(cfg=cfg, rows=r, fixed8_pairs=0),
                                     "weight_banks")))
    return parts


def top_verilog(cfg: HwConfig) -> str | None:
    """Verilog of ``accel_top`` with Vivado's port names (``s_axil_*``, ``m_axi_*``, ``clk``,
    ``rst``, ``irq``), or None while there is no complete top."""
    top = top_module(cfg)
    with faster_netlists():
        return top.annotate(verilog.convert(top, name=TOP_NAME), TOP_NAME)


def top_rtlil(cfg: HwConfig) -> str | None:
    """RTLIL of ``accel_top``, the design of :func:`top_verilog` before Yosys writes it as
    Verilog, or None while there is no complete top: what ``python -m rtl.build.synth --whole
    --rtlil`` reads, far faster than the Verilog (docs/build.md)."""
    top = top_module(cfg)
    if top is None:
        return None
    with faster_netlists():
        return to_rtlil(top, TOP_NAME)


def vivado_design(cfg: HwConfig | None = None) -> VivadoDesign:
    """What the Vivado block design instantiates: ``accel_top`` from ``accel_top.v``, with the
    slave and the masters of ``buses(cfg)`` (of :data:`BUSES` without a config)."""
    table = buses(cfg) if cfg is not None else BUSES
    slaves = [prefix for prefix, role in table.values() if role == "slave"]
    masters = tuple(prefix for prefix, role in table.values() if role == "master")
    if len(slaves) != 1:
        raise ValueError(f"the top needs exactly one AXI4-Lite slave, not {slaves!r}")
    return VivadoDesign(top=TOP_NAME, sources=(TOP_FILE,), slave=slaves[0], masters=masters)
