"""The build report: ``build-report.md`` from the outputs of the steps, and the terminal summary.

Only reads what the steps wrote (``work/*.json``, ``work/estimate.md``); the step state is the
flow's (``rtl/build/flow.py``).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from ..config import HwConfig
from .errors import read_record
from .parts import vivado_design
from .resources import fmt_count
from .vivado import fabric_clock, package_facts

if TYPE_CHECKING:
    from .flow import BuildContext

__all__ = ["build_report", "summary_lines"]

def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows)]


def _clock_line(ctx: BuildContext, cfg: HwConfig) -> str:
    clock = fabric_clock(ctx.board, cfg)
    how = (f"an MMCM makes it from FCLK0 = {clock.fclk0_mhz:g} MHz, which the PS cannot set "
           f"to {clock.clock_mhz:g} MHz" if clock.uses_mmcm
           else "FCLK0 of the processing system (IO PLL / "
                f"{clock.fclk0_divisors[0]} / {clock.fclk0_divisors[1]})")
    return f"{clock.clock_mhz:g} MHz fabric clock ({how}); the estimate and timing use it"


def _regs_line(ctx: BuildContext, cfg: HwConfig) -> str:
    facts = package_facts(ctx.board, cfg, vivado_design(cfg))
    return (f"AXI4-Lite at 0x{facts['regs_base']:08X} ({facts['regs_size']} bytes) on M_AXI_GP0; "
            f"DDR through {', '.join(facts['hp_ports'])}")


def timing_lines(timing: dict[str, Any] | None, cfg: HwConfig,
                 chain_cycles: int | None = None) -> list[str]:
    """The report's timing-estimate section: per part the estimated clock, the logic levels
    of the worst register-to-register path and its registers, and the verdict on the clock;
    below the target, what the cycle model's ``chain_cycles`` (an image) take at the
    estimated clock instead."""
    if not timing or not timing["parts"]:
        return []
    fmax = timing["fmax_mhz"]
    slower = ""
    if fmax < cfg.clock_mhz and chain_cycles:
        slower = (f" At {fmax:.0f} MHz an image of ResNet-18 would take "
                  f"{chain_cycles / (fmax * 1e3):.2f} ms instead of the "
                  f"{chain_cycles / (cfg.clock_mhz * 1e3):.2f} ms modelled at the target.")
    out = ["## Timing estimate (Yosys netlist, data-sheet delays)", "",
           f"Target: **{cfg.clock_mhz:g} MHz**. Estimated: **{fmax:.0f} MHz** "
           f"(the slowest part), which "
           + ("supports the target." if fmax >= cfg.clock_mhz else
              "does **not** support the target: Vivado is expected to fail timing unless the "
              "paths below are shortened or the clock lowered.")
           + slower + f" Model: {timing['model']}.", ""]
    rows = [[name, t["synthesized"], f"{t['fmax_MHz']:.0f}", f"{t['period_ns']:.2f}",
             str(t["lut_levels"]), str(t["carry4"]),
             f"`{t['start']}` -> `{t['end']}`" + (" (DSP48E1 F_MAX)" if t["dsp_limited"] else "")]
            for name, t in timing["parts"].items()]
    out += _table(["part", "synthesized", "MHz", "ns", "LUT levels", "CARRY4", "worst path"],
                  rows)
    out += ["", "How the estimate is made and how far to trust it: docs/arrays.md (timing "
            "estimate). Vivado's timing report, when a bitstream is built, is the arbiter.", ""]
    return out


def build_report(ctx: BuildContext, cfg: HwConfig) -> str:
    """``build-report.md`` from the outputs of the earlier steps."""
    util = read_record(ctx.work / "utilization.json", "synthesize")
    bit = read_record(ctx.work / "bitstream.json", "bitstream")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        f"# Build report: {ctx.board}, config {cfg.name} ({cfg.config_hash_hex})",
        "",
        f"- board: {ctx.board}, part {cfg.part}",
        f"- clock: {_clock_line(ctx, cfg)}",
        f"- registers: {_regs_line(ctx, cfg)}",
        f"- config hash: {cfg.config_hash_hex} (register ID; firmware refuses another)",
        f"- arrays: PoT {cfg.pot_rows} x {cfg.pot_cols}, DSP {cfg.dsp_rows} lanes x "
        f"{cfg.dsp_cols} ({cfg.dsp_count} DSP48E1), accumulators {cfg.acc_bits} bits",
        f"- ratio (PoT-4:Fixed-4:Fixed-8) for the estimate: {ctx.ratio_text}",
        f"- built: {now}",
        "",
    ]
    out += ["## Utilization estimate (Yosys synth_xilinx)", ""]
    names = list(util["parts"])
    header = ["resource", *names, "total", "available", "use"]
    rows = []
    for r in util["fit"]:
        res = r["resource"]
        rows.append([res, *(fmt_count(util["parts"][n][res]) for n in names),
                     fmt_count(r["needed"]),
                     fmt_count(r["available"]), f"{r['percent']:.1f}%"])
    out += _table(header, rows)
    out += [""]
    out += [f"- {n}: {util['parts'][n]['method']}" for n in names]
    out += ["", "Yosys counts are estimates before Vivado's optimization and placement; "
            "LUT includes inverters and LUT-as-memory, BRAM36 counts a RAMB18 as half. "
            "Extrapolated parts were synthesized at two small row counts (the rows of an array "
            "are identical and independent); `--synth full` synthesizes them whole.", ""]
    model = read_record(ctx.work / "engine-model.json", "estimate")
    out += timing_lines(util.get("timing"), cfg, model.get("chain_cycles"))
    out += ["## Bitstream (Vivado)", ""]
    if bit["built"]:
        vu = bit["utilization"]
        out += _table(["resource", "used", "available"],
                      [[k, fmt_count(v["used"]), fmt_count(v["available"])] for k, v in vu.items()])
        t = bit["timing"]
        whs = f", WHS {t['whs_ns']:+.3f} ns" if "whs_ns" in t else ""
        out += ["", f"Timing: WNS {t['wns_ns']:+.3f} ns, TNS {t['tns_ns']:+.3f} ns{whs} at "
                f"{cfg.clock_mhz:g} MHz (fmax about {bit['fmax_mhz']:.0f} MHz)."]
        if "clock" in bit:
            out += [f"Clocks read back from the block design: FCLK0 "
                    f"{bit['clock']['fclk0_mhz']:g} MHz, accelerator "
                    f"{bit['clock']['clock_mhz']:g} MHz."]
        out += [""]
    else:
        out += [f"Not built: {bit['reason']}.", ""]
    out += ["## Performance estimate", "", (ctx.work / "estimate.md").read_text().rstrip(), ""]
    out += ["## Files", "", "- `hwconfig.json`, `config_hash.txt`: the configuration and its "
            "hash", "- `regmap.json`, `regmap.md`: the register map (offsets for firmware)",
            "- `project/`: the Vivado project (`build.tcl`, `build_vivado.sh`) and "
            "`accel_top.v`, the Verilog of the complete accelerator",
            "- `package.json`: what is in this package"]
    if bit["built"]:
        out += ["- `accel.bit`, `accel.hwh`, `accel.xsa`: bitstream and hardware handoff",
                "- `accel.bin`: the bitstream for the Linux FPGA manager (byte-swapped)"]
    return "\n".join(out) + "\n"


def summary_lines(state: dict[str, Any]) -> list[str]:
    """Per-step timings of the steps the last run ran, for the terminal."""
    steps = state["steps"]
    ran = [name for name in state.get("last_run", steps) if name in steps]
    total = sum(steps[name]["seconds"] for name in ran)
    width = max(map(len, [*ran, "total"]))
    return [f"  {name:<{width}} {steps[name]['seconds']:7.1f} s" for name in ran] + [
        f"  {'total':<{width}} {total:7.1f} s"]
