"""Full-size ResNet-18 layers in RTL under Verilator, one preset per test (``--runslow``):
bit-exact against the golden model and within ``TOLERANCE`` of the cycle model
(``sim.full_size``; results in docs/engine-cycles.md)."""

from __future__ import annotations

import pytest

from sim.full_size import BOARD_NAMES, TOLERANCE, markdown, run_full_size


@pytest.mark.slow
@pytest.mark.parametrize("board", BOARD_NAMES)
def test_full_size_layers(board: str) -> None:
    run = run_full_size(board)
    print(markdown([run]))
    for r in run["layers"]:
        assert r["bit_exact"], r["name"]
        assert abs(r["error"]) <= TOLERANCE, (board, r["name"], r["cycles"], r["modelled"])
