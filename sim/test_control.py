"""pytest entry for the AXI4-Lite control bench: the slave's Verilog for both board presets."""

from __future__ import annotations

import pytest

from rtl.axil import AxiLiteSlave, AxiLiteSlaveTop
from rtl.config import preset
from rtl.interface.regmap import build_regmap
from sim.runner import run_bench

#: Random transfers per phase of the bench (seconds in Icarus).
N_OPS = 400


def _run(board: str, n_ops: int, seed: int, case: str) -> None:
    regmap = build_regmap(preset(board))
    top = AxiLiteSlaveTop(slave=AxiLiteSlave(regmap=regmap))
    run_bench(top, toplevel="axil_regs", test_module="sim.control_bench", case=case,
              params={"regmap": regmap.to_json(), "n_ops": n_ops, "seed": seed})


@pytest.mark.parametrize("board", ["pynq-z2", "zc706"])
def test_control_bench(board: str) -> None:
    _run(board, N_OPS, seed=11, case=f"control-{board}")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_control_bench_long(seed: int) -> None:
    """Ten times the traffic, other seeds."""
    _run("zc706", 10 * N_OPS, seed=seed, case=f"control-zc706-long{seed}")
