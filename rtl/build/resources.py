"""Resource arithmetic of the utilization estimate: what Yosys counted, per resource, extrapolated
from row slices, and checked against the part."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import HwConfig
from .errors import FitError
from .synth import SynthResult, parse_stat_json

__all__ = ["RESOURCES", "SLICE_ROWS", "check_fit", "extrapolate", "fit_rows", "fmt_count",
           "resource_usage", "synth_result_from_stat"]

#: Row counts of the two slices an array's utilization is extrapolated from in "sliced" mode.
#: Rows of the PoT and DSP arrays are identical and independent (they share only the input
#: vector and the valid/first/last pipeline), so each resource is ``a + b * rows``. The DSP
#: array is sliced at whole DSP48E1 groups instead (``dsp_pack`` and twice that many lanes),
#: since its lanes come in groups that share a DSP48E1.
SLICE_ROWS = (2, 4)

#: Share of a part's LUTs a design may fill: the rest is left for routing, the timing work
#: and Vivado's own choices (the design-space search's default, the whole-accelerator
#: estimate's verdict).
LUT_LIMIT = 0.85

#: Resources of the fit check, with the ``HwConfig.resources`` key each is compared to.
RESOURCES: dict[str, str] = {"LUT": "lut", "FF": "ff", "DSP48E1": "dsp", "BRAM36": "bram36"}

#: What to change in the config when a resource is over, per resource.
_HINTS = {
    "LUT": "reduce pot_rows or pot_cols in the config (the PoT array is built from LUTs)",
    "FF": "reduce pot_rows/dsp_rows or pot_cols/dsp_cols in the config (pipeline registers "
          "grow with the arrays)",
    "DSP48E1": "reduce dsp_rows or dsp_cols in the config (dsp_rows x dsp_cols / dsp_pack "
               "DSP48E1 slices)",
    "BRAM36": "reduce act_buf_depth, weight_buf_depth or out_buf_depth in the config",
}

#: LUTs taken by cells other than LUT1..LUT6 that Vivado places in LUTs and counts under
#: "Slice LUTs": inverters (a LUT1), shift registers and distributed RAM.
_EXTRA_LUTS = {"INV": 1, "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1, "RAM32X1S": 1, "RAM64X1S": 1,
                "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1S": 2, "RAM128X1D": 4, "RAM256X1S": 4,
                "RAM32M": 4, "RAM64M": 4}


def synth_result_from_stat(stat_json: str, top: str, *, report: str = "") -> SynthResult:
    """A :class:`SynthResult` from a saved Yosys ``stat -json`` report."""
    return SynthResult(top=top, family="xc7", cells=parse_stat_json(stat_json, top),
                       report=report, log="")


def resource_usage(result: SynthResult) -> dict[str, float]:
    """LUT (LUT1..6, inverters and LUT-as-memory), FF, DSP48E1 and BRAM36 (a RAMB18 is half)."""
    extra_luts = sum(result.count(kind) * n for kind, n in _EXTRA_LUTS.items())
    return {"LUT": result.lut + extra_luts, "FF": result.ff, "DSP48E1": result.dsp,
            "BRAM36": result.ramb36 + result.ramb18 / 2}


def fit_rows(needed: Mapping[str, float], cfg: HwConfig) -> list[dict[str, Any]]:
    """Needed, available and percentage of each resource on the config's part."""
    available = cfg.resources
    rows = []
    for name, key in RESOURCES.items():
        have = available[key]
        need = needed.get(name, 0)
        rows.append({"resource": name, "needed": need, "available": have,
                     "percent": 100.0 * need / have, "fits": need <= have})
    return rows


def fmt_count(x: float) -> str:
    """A count with thousands separators; one decimal when it is not whole (half BRAMs)."""
    return f"{x:,.1f}" if x != int(x) else f"{int(x):,}"


def check_fit(needed: Mapping[str, float], cfg: HwConfig) -> list[dict[str, Any]]:
    """Return :func:`fit_rows`, or raise :class:`FitError` naming each resource that is over."""
    rows = fit_rows(needed, cfg)
    over = [r for r in rows if not r["fits"]]
    if over:
        lines = [f"config {cfg.name!r} does not fit {cfg.part}:"]
        lines += [f"  {r['resource']:<8} needed {fmt_count(r['needed']):>9}  available "
                  f"{fmt_count(r['available']):>9}  ({r['percent']:.0f}%)" for r in over]
        lines += [f"hint: {_HINTS[r['resource']]}" for r in over]
        raise FitError("\n".join(lines))
    return rows


def extrapolate(small: Mapping[str, float], large: Mapping[str, float], rows: int,
                slice_rows: tuple[int, int] = SLICE_ROWS, unit: int = 1) -> dict[str, float]:
    """Resources at ``rows`` rows from the slices at ``slice_rows``, linear in the rows, the
    rows counted in whole ``unit`` s (a DSP array of 4 lanes packed 3 to a DSP48E1 has the
    DSP48E1s of 6).

    LUT, FF and DSP48E1 are rounded to whole cells, BRAM36 to half tiles.
    """
    a, b = slice_rows
    rows = -(-rows // unit) * unit
    out: dict[str, float] = {}
    for key in RESOURCES:
        value = small[key] + (large[key] - small[key]) * (rows - a) / (b - a)
        out[key] = round(value * 2) / 2 if key == "BRAM36" else round(value)
    return out
