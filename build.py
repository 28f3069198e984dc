"""Build the accelerator for a board: ``python build.py --board zc706`` (see docs/build.md)."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from firmware.deploy import write_deploy
from rtl.boards import board_names
from rtl.build.flow import (
    STEP_NAMES,
    SYNTH_MODES,
    VIVADO_ENV,
    FlowError,
    make_context,
    run_flow,
)
from rtl.build.report import summary_lines
from rtl.config import PartTooSmallError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python build.py",
        description="Build the accelerator for a board: Verilog, register map, performance "
                    "estimate, utilization estimate (Yosys) or bitstream (Vivado), package.",
        epilog=f"steps in order: {', '.join(STEP_NAMES)}. Outputs go to "
               f"<out>/<board>-<config hash>/.")
    p.add_argument("--board", default="zc706", metavar="NAME",
                   help=f"board: {', '.join(board_names())} (default: zc706)")
    p.add_argument("--config", metavar="FILE",
                   help="HwConfig JSON that replaces the board's preset (same part)")
    p.add_argument("--ratio", metavar="R",
                   help="PoT-4:Fixed-4:Fixed-8 ratio for the estimate, e.g. 60:35:5 "
                        "(default: pynq-z2 60:35:5, zc706 65:30:5)")
    p.add_argument("--from", dest="start", metavar="STEP",
                   help="start at this step, reusing the outputs of the earlier ones")
    p.add_argument("--to", dest="stop", metavar="STEP", help="stop after this step")
    p.add_argument("--out", default="build", metavar="DIR",
                   help="parent of the build directory (default: build)")
    p.add_argument("--synth", choices=SYNTH_MODES, default="sliced",
                   help="sliced (default): estimate each compute array from Yosys runs on "
                        "slices of 2 and 4 rows (the DSP array: of dsp_pack and twice as many "
                        "lanes), extrapolated to its rows; full: synthesize "
                        "the arrays whole (much slower for zc706)")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="parallel Yosys runs and Vivado jobs (default: CPU count)")
    return p


def _lock(out: Path) -> TextIO | None:
    """Hold ``out/.build.lock`` for this process (the OS releases it when the process ends);
    None, after saying who holds it, when another build runs in the same folder."""
    f = open(out / ".build.lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        pid = f.read().strip() or "unknown"
        f.close()
        print(f"error: {out} is busy: another build (PID {pid}) is running in it; wait for it "
              f"to finish or build into another folder with --out", file=sys.stderr)
        return None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def _resume_step(ctx) -> str:
    """The first step that has not finished in the build folder."""
    try:
        done = json.loads(ctx.state_path.read_text()).get("steps", {})
    except (OSError, ValueError, AttributeError):
        return STEP_NAMES[0]
    return next((name for name in STEP_NAMES if name not in done), STEP_NAMES[-1])


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        ctx = make_context(args.board, config=args.config, ratio=args.ratio, out=args.out,
                           jobs=args.jobs, synth_mode=args.synth)
    except PartTooSmallError as exc:     # "does not fit", found from the config in seconds
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (TypeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = ctx.cfg
    try:
        ctx.out.mkdir(parents=True, exist_ok=True)
        lock = _lock(ctx.out)
    except OSError as exc:
        print(f"error: cannot write the build folder {ctx.out}: {exc.strerror or exc}; choose "
              f"a writable --out", file=sys.stderr)
        return 2
    if lock is None:
        return 2
    print(f"build {ctx.board}: config {cfg.name} ({cfg.config_hash_hex}), part {cfg.part}, "
          f"{cfg.clock_mhz:g} MHz -> {ctx.out}")
    if ctx.vivado is None:
        print(f"Vivado not found (no 'vivado' on PATH and {VIVADO_ENV} not set): the Vivado "
              f"project is generated for another machine; utilization comes from Yosys")
    started = time.monotonic()
    try:
        state = run_flow(ctx, start=args.start, stop=args.stop)
    except FlowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        step = _resume_step(ctx)
        print(f"interrupted during step {step}; resume with 'python build.py --board "
              f"{ctx.board}{' --config ' + args.config if args.config else ''} --out {args.out} "
              f"--from {step}'", file=sys.stderr)
        return 130
    print(f"finished in {time.monotonic() - started:.1f} s:")
    print("\n".join(summary_lines(state)))
    if "package" in state["steps"]:
        try:
            deploy = write_deploy(ctx.out)
        except OSError as exc:
            print(f"error: cannot write {ctx.out / 'deploy'}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 2
        print(f"package: {ctx.out} (report: {ctx.out / 'build-report.md'}; for the board: "
              f"{deploy})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
