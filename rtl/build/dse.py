"""Design-space search: how many PoT rows and DSP lanes, at which PoT:Fixed-4:Fixed-8 ratio
and clock, give the lowest ResNet-18 latency that fits the part.

    python -m rtl.build.dse --part xc7z020 [--package build/pynq-z2-<hash>] [--top 5]
                      [--clock 100,125,150] [--plot FILE] [--json]

Resources come from a model calibrated on the Yosys figures of a build of that part
(``utilization.json`` of its package): the core synthesized whole, and per row of each array
and of the weight banks the slope between the row slices the build synthesized (the build's
own "sliced" estimate, extended to other row counts). Latency comes from the cycle model
(``rtl.cycle_model``), the one the RTL validates, with the assumed Zynq HP-port DDR latency.
The columns (vector length) and buffer depths stay those of the build: the calibration holds
for them. A design fits when LUTs stay under ``--lut-limit`` of the part (default 85 %, room
for routing) and DSP48E1, BRAM and FFs within the part.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quant import contract as C
from quant.resnet_graph import resnet18_nodes
from quant.schemes import RATIO_PRESETS, scheme_counts

from ..boards import BOARDS
from ..config import HwConfig, PartTooSmallError, preset
from ..cycle_model import DdrTiming, resnet18_latency
from ..interface.passes import pass_count
from ..interface.tiling import TilingError
from .parts import CORE_ROWS
from .resources import LUT_LIMIT, RESOURCES, extrapolate

__all__ = [
    "RATIOS",
    "Calibration",
    "CalibrationError",
    "Candidate",
    "main",
    "resources",
    "search",
]

#: The PoT-4:Fixed-4:Fixed-8 ratios the search compares: the paper's Table I (every named ratio
#: of ``quant.schemes``, the boards' included) and neighbours with 5 % Fixed-8.
RATIOS: tuple[tuple[int, int, int], ...] = tuple(sorted(
    set(RATIO_PRESETS.values()) | {(pot, 95 - pot, 5) for pot in (0, 30, 40, 50, 70, 80)},
    reverse=True))
#: The ratio the paper uses on each part (ILMPQ-1 on the XC7Z020, ILMPQ-2 on the XC7Z045).
PAPER_RATIO = {b.part.device: b.ratio for b in BOARDS.values()}
#: Build package folders searched for a part's calibration: the board presets on that part.
#: Device (``xc7z020``) -> the board built on it.
_PART_BOARDS = {b.part.device: b.name for b in BOARDS.values()}
_KEYS = {"LUT": "lut", "FF": "ff", "DSP48E1": "dsp", "BRAM36": "bram36"}


class CalibrationError(ValueError):
    """No usable Yosys figures to calibrate the resource model on."""


@dataclass(frozen=True)
class Calibration:
    """The Yosys figures of one build: its config and the records of its parts."""

    cfg: HwConfig
    parts: dict[str, dict[str, Any]]
    source: Path

    @classmethod
    def load(cls, package: str | Path) -> Calibration:
        package = Path(package)
        try:
            cfg = HwConfig.load(package / "hwconfig.json")
            util = json.loads((package / "utilization.json").read_text())
            parts = util["parts"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CalibrationError(
                f"{package}: no Yosys figures to calibrate on ({exc}); build the board first "
                f"with 'python build.py --board <board>'") from None
        for name in ("accel_core", "pot_array", "dsp_array", "weight_banks"):
            if name not in parts or (name != "accel_core" and "slices" not in parts[name]):
                raise CalibrationError(
                    f"{package}/utilization.json has no sliced figures for {name}; rebuild "
                    f"with the default '--synth sliced'")
        return cls(cfg, parts, package)


def _row_part(record: dict[str, Any], rows: int, start: int) -> dict[str, float]:
    at = sorted(record["slices"], key=int)
    small, large = (record["slices"][k] for k in at)
    if rows <= start:
        return dict.fromkeys(RESOURCES, 0.0)
    scale = (int(at[0]), int(at[1])), record.get("row_unit", 1)
    total, below = extrapolate(small, large, rows, *scale), extrapolate(small, large, start,
                                                                         *scale)
    return {k: max(0.0, total[k] - below[k]) for k in RESOURCES}


def resources(cal: Calibration, pot_rows: int, dsp_rows: int) -> dict[str, float]:
    """LUT, FF, DSP48E1 and BRAM36 of the whole accelerator with these array rows (the
    build's columns and buffers), by the build's own sliced extrapolation."""
    core = cal.parts["accel_core"]
    out = {k: float(core[k]) for k in RESOURCES}
    core_pot, core_dsp = min(pot_rows, CORE_ROWS), min(dsp_rows, CORE_ROWS)
    for name, rows, start in (("pot_array", pot_rows, core_pot),
                              ("dsp_array", dsp_rows, core_dsp),
                              ("weight_banks", pot_rows + dsp_rows, core_pot + core_dsp)):
        for k, v in _row_part(cal.parts[name], rows, start).items():
            out[k] += v
    return out


@dataclass(frozen=True)
class Candidate:
    pot_rows: int
    dsp_rows: int
    clock_mhz: float
    ratio: tuple[int, int, int]
    cycles: int
    resources: dict[str, float]
    columns: int = 0

    @property
    def ms(self) -> float:
        return self.cycles / (self.clock_mhz * 1e3)

    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "pot_rows": self.pot_rows, "dsp_rows": self.dsp_rows,
                "clock_mhz": self.clock_mhz, "ratio": ":".join(map(str, self.ratio)),
                "cycles": self.cycles, "ms": round(self.ms, 3), "resources": self.resources}


def _fits(res: dict[str, float], part: str, lut_limit: float) -> bool:
    avail = BOARDS[_PART_BOARDS[part[:7]]].part.resources()
    return (res["LUT"] <= lut_limit * avail["lut"] and res["FF"] <= avail["ff"]
            and res["DSP48E1"] <= avail["dsp"] and res["BRAM36"] <= avail["bram36"])


def _widths() -> list[int]:
    """Filters per conv layer of ResNet-18 (the classifier, about 1 % of the time, aside)."""
    nodes = resnet18_nodes(width=1.0, num_classes=1000, in_channels=3)
    return sorted({int(n["out_channels"]) for n in nodes if n["op"] == "conv"})


def _split(ratio: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """(PoT-4, Fixed-4, Fixed-8) filters of each conv width of ResNet-18 at ``ratio``."""
    return [tuple(c[C.SCHEME_CODE[s]] for s in C.SCHEMES)
            for c in (scheme_counts(w, ratio) for w in _widths())]


def pass_steps(ratio: tuple[int, int, int], top: int) -> tuple[list[int], list[int]]:
    """The PoT row counts and the DSP lane counts, up to ``top``, at which some conv layer of
    ResNet-18 needs one pass fewer than with one row (lane) less: the only counts worth
    building, since a row added between two of them leaves every layer's passes as they were
    and only loads more (empty) weights."""
    split = _split(ratio)

    def steps(passes) -> list[int]:
        out, last = [], None
        for n in range(1, top + 1):
            profile = tuple(passes(n, *f) for f in split)
            if profile != last and n >= CORE_ROWS:
                out.append(n)
            last = profile
        return out

    return (steps(lambda n, pot, f4, f8: pass_count(pot, 0, 0, n, 1)),
            steps(lambda n, pot, f4, f8: pass_count(0, f4, f8, 1, n)))


def _shapes(cal: Calibration, ratio: tuple[int, int, int], lut_limit: float
            ) -> list[tuple[int, int, dict]]:
    """The (PoT rows, DSP lanes) pairs at the pass steps of ``ratio`` that fit and where
    neither array could step down without some layer needing more passes (the other pairs
    run as many passes with more rows), each with its resources."""
    cfg = cal.cfg
    top = 1
    while _fits(resources(cal, top, CORE_ROWS), cfg.part, lut_limit) and top < 1024:
        top += 1
    pots, lanes = pass_steps(ratio, top)
    pots, lanes = (pots if ratio[0] else [CORE_ROWS]), (lanes if ratio[1] + ratio[2]
                                                        else [CORE_ROWS])
    split = _split(ratio)

    def profile(pot: int, dsp: int) -> tuple[int, ...]:
        return tuple(pass_count(*f, pot, dsp) for f in split)

    shapes = []
    for i, pot in enumerate(pots):
        for j, dsp in enumerate(lanes):
            res = resources(cal, pot, dsp)
            if not _fits(res, cfg.part, lut_limit):
                break
            here = profile(pot, dsp)
            if (i and profile(pots[i - 1], dsp) == here) or \
                    (j and profile(pot, lanes[j - 1]) == here):
                continue
            shapes.append((pot, dsp, res))
    return shapes


def search(cals: Calibration | Sequence[Calibration], *,
           ratios: Iterable[tuple[int, int, int]] = RATIOS,
           clocks: Sequence[float] | None = None, lut_limit: float = LUT_LIMIT,
           timing: DdrTiming | None = None) -> list[Candidate]:
    """Every fitting (columns, rows, clock, ratio) at the pass steps, fastest first; each
    calibration (a build) gives its column count."""
    timing = timing or DdrTiming.zynq_hp()
    out = []
    for cal in [cals] if isinstance(cals, Calibration) else cals:
        for ratio in ratios:
            for pot, dsp, res in _shapes(cal, tuple(ratio), lut_limit):
                for clock in clocks or [cal.cfg.clock_mhz]:
                    try:
                        cfg = cal.cfg.replace(pot_rows=pot, dsp_rows=dsp,
                                              clock_mhz=float(clock))
                        _, chain = resnet18_latency(cfg, ratio, timing=timing)
                    except (PartTooSmallError, TilingError, ValueError):
                        continue
                    out.append(Candidate(pot, dsp, float(clock), tuple(ratio), chain, res,
                                         cal.cfg.vec_len))
    return sorted(out, key=lambda c: (c.ms, c.resources["LUT"]))


def best_per_ratio(candidates: Iterable[Candidate]) -> dict[tuple[int, int, int], Candidate]:
    best: dict[tuple[int, int, int], Candidate] = {}
    for c in candidates:
        if c.ratio not in best or c.ms < best[c.ratio].ms:
            best[c.ratio] = c
    return best


def plot(best: dict[tuple[int, int, int], Candidate], part: str, path: Path,
         preset_point: tuple[tuple[int, int, int], float] | None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = sorted(best, key=lambda r: -r[0])
    xs = range(len(ratios))
    fig, ax = plt.subplots(figsize=(9, 4.2))
    ax.bar(xs, [best[r].ms for r in ratios],
           color=["tab:red" if r == PAPER_RATIO.get(part) else "tab:blue" for r in ratios])
    for x, r in zip(xs, ratios, strict=True):
        c = best[r]
        ax.annotate(f"{c.columns}x({c.pot_rows}+{c.dsp_rows})", (x, c.ms), ha="center", va="bottom",
                    fontsize=7)
    if preset_point:
        ratio, ms = preset_point
        if ratio in ratios:
            ax.plot([ratios.index(ratio)], [ms], "k*", markersize=12, label="board preset")
            ax.legend()
    ax.set_xticks(list(xs), [":".join(map(str, r)) for r in ratios], rotation=40, fontsize=8)
    ax.set_xlabel("PoT-4 : Fixed-4 : Fixed-8 filters per layer")
    ax.set_ylabel("ResNet-18 224x224 latency (ms)")
    ax.set_title(f"{part}: best fitting array shape per ratio (labels: columns x (PoT rows "
                 f"+ DSP lanes); red: the paper's ratio)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _find_packages(part: str, build: Path) -> list[Path]:
    """The newest build of the part's board under ``build/`` for each column count built."""
    board = _PART_BOARDS[part]
    found = sorted(build.glob(f"{board}-*/utilization.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise CalibrationError(f"no build of {board} under {build}/ to calibrate on; run "
                               f"'python build.py --board {board}' first (or pass --package)")
    newest: dict[int, Path] = {}
    for util in found:
        try:
            newest[HwConfig.load(util.parent / "hwconfig.json").vec_len] = util.parent
        except (OSError, ValueError, TypeError):
            continue
    return list(newest.values()) or [found[-1].parent]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtl.build.dse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", required=True, choices=sorted(_PART_BOARDS),
                        help="the Zynq-7000 part")
    parser.add_argument("--package", metavar="DIR", action="append",
                        help="build package to calibrate on, repeatable: each gives its "
                             "column count (default: the newest build of the part's board "
                             "under build/ for every column count built)")
    parser.add_argument("--top", type=int, default=5, metavar="N", help="configurations shown")
    parser.add_argument("--clock", metavar="MHZ[,MHZ...]",
                        help="clocks to try (default: the build's)")
    parser.add_argument("--lut-limit", type=float, default=LUT_LIMIT, metavar="F",
                        help=f"share of the part's LUTs a design may use (default {LUT_LIMIT})")
    parser.add_argument("--plot", metavar="FILE",
                        help="latency against ratio (default: dse-<part>.png beside the "
                             "package)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        packages = ([Path(p) for p in args.package] if args.package
                    else _find_packages(args.part, Path("build")))
        cals = [Calibration.load(p) for p in packages]
        for cal in cals:
            if not cal.cfg.part.startswith(args.part):
                raise CalibrationError(f"{cal.source} is a build for {cal.cfg.part}, not "
                                       f"{args.part}")
        clocks = ([float(c) for c in args.clock.split(",")] if args.clock else None)
        if not 0 < args.lut_limit <= 1:
            raise ValueError(f"--lut-limit must be in (0, 1], not {args.lut_limit}")
    except (CalibrationError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    candidates = search(cals, clocks=clocks, lut_limit=args.lut_limit)
    if not candidates:
        print(f"error: no design fits {cals[0].cfg.part} within the limits", file=sys.stderr)
        return 1
    best = best_per_ratio(candidates)
    paper = PAPER_RATIO[args.part]
    base = preset(_PART_BOARDS[args.part])
    _, chain = resnet18_latency(base, paper, timing=DdrTiming.zynq_hp())
    preset_point = (paper, chain / (base.clock_mhz * 1e3))
    path = (Path(args.plot) if args.plot
            else packages[-1].parent / f"dse-{args.part}.png")
    plot(best, args.part, path, preset_point)
    if args.json:
        print(json.dumps({"calibration": [str(p) for p in packages], "top": [c.to_dict() for c in
                                                                candidates[:args.top]],
                          "best_per_ratio": [c.to_dict() for c in best.values()],
                          "plot": str(path)}, indent=1))
        return 0
    avail = cals[0].cfg.resources
    print(f"{cals[0].cfg.part}: resources calibrated on the Yosys figures of "
          f"{', '.join(f'{p}/utilization.json' for p in packages)} (columns and buffers as "
          f"built), latency from the cycle model (ResNet-18 224x224 as one chain, assumed "
          f"HP-port DDR latency); rows and lanes at the counts where some layer needs a pass "
          f"fewer; LUT limit {args.lut_limit:.0%}")
    print(f"\n{'ratio':>10} {'columns':>7} {'PoT rows':>8} {'DSP lanes':>9} {'MHz':>7} "
          f"{'ms':>8} " + " ".join(f"{k:>9}" for k in RESOURCES))
    for c in candidates[:args.top]:
        print(f"{':'.join(map(str, c.ratio)):>10} {c.columns:7d} {c.pot_rows:8d} "
              f"{c.dsp_rows:9d} {c.clock_mhz:7g} {c.ms:8.2f} " + " ".join(
                  f"{100 * c.resources[k] / avail[_KEYS[k]]:8.1f}%" for k in RESOURCES))
    print("\nbest per ratio:")
    for r in sorted(best, key=lambda r: best[r].ms):
        c = best[r]
        mark = "  <- the paper's ratio" if r == paper else ""
        print(f"{':'.join(map(str, r)):>10} {c.columns:7d} {c.pot_rows:8d} {c.dsp_rows:9d} "
              f"{c.clock_mhz:7g} {c.ms:8.2f}{mark}")
    fastest = min(best.values(), key=lambda c: c.ms)
    name = ":".join(map(str, paper))
    if paper not in best:
        verdict = f"the paper's {name} could not be placed on this hardware"
    elif fastest.ratio == paper:
        verdict = f"the paper's {name} is the optimum for this hardware"
    else:
        verdict = (f"the paper's {name} is not the optimum for this hardware: "
                   f"{':'.join(map(str, fastest.ratio))} is faster ({fastest.ms:.2f} ms against "
                   f"{best[paper].ms:.2f} ms)")
    print(f"\n{verdict}; plot: {path}")
    if preset_point:
        print(f"the {base.name} preset ({base.vec_len} columns, {base.pot_rows} PoT rows, "
              f"{base.dsp_rows} DSP lanes) "
              f"models {preset_point[1]:.2f} ms at {':'.join(map(str, paper))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

