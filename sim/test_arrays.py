"""pytest entry for the cocotb array benches: both arrays, two configs, bit-exact vs golden."""

from __future__ import annotations

import pytest

from rtl.config import HwConfig, preset
from rtl.dsp_array import DspArray
from rtl.pot_array import PotArray
from sim.runner import run_bench

#: Bench configs: the two presets' structure (16 and 64 columns: adder-tree depth, packing
#: shift, accumulator width all as on the boards) with 4 PoT filters and 4 DSP lanes (two DSP
#: pairs, so Fixed-8 and Fixed-4 pairs mix), because Icarus slows down with every row.
SIM_CONFIGS: dict[str, HwConfig] = {
    f"{board}-scaled": preset(board).replace(name=f"{board}-scaled", pot_rows=4, dsp_rows=4)
    for board in ("pynq-z2", "zc706")
}

#: Random vectors per array and config (on top of the extreme jobs).
N_RANDOM = 10_000


def _run(array: str, name: str, cfg: HwConfig, n_random: int, seed: int,
         every_product: bool = False) -> None:
    component = PotArray(cfg=cfg) if array == "pot" else DspArray(cfg=cfg)
    run_bench(component, toplevel=f"{array}_array", test_module="sim.array_bench",
              case=f"{array}-{name}",
              params={"array": array, "config": cfg.to_json(), "n_random": n_random,
                      "seed": seed, "gap": 0.25, "stall": 0.3, "every_product": every_product})


@pytest.mark.parametrize("name", list(SIM_CONFIGS))
@pytest.mark.parametrize("array", ["pot", "dsp"])
def test_array_bench(array: str, name: str) -> None:
    _run(array, name, SIM_CONFIGS[name], N_RANDOM, seed=2024, every_product=array == "dsp")


@pytest.mark.slow
@pytest.mark.parametrize("board", ["pynq-z2", "zc706"])
@pytest.mark.parametrize("array", ["pot", "dsp"])
def test_array_bench_full_preset(array: str, board: str) -> None:
    """The presets at their full array shapes, with another seed (minutes in Icarus)."""
    _run(array, board, preset(board), N_RANDOM, seed=7)
