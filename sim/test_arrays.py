"""pytest entry for the cocotb array benches: both arrays, two configs with and without
``split_input``, bit-exact vs golden."""

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

#: The same with ``split_input``: the first layer's 8-bit pixels reach the arrays as 4-bit
#: nibbles (act width 4), high-nibble vectors (``hi``, random per vector) counted 16 times, and
#: four lanes per DSP48E1.
SPLIT_CONFIGS: dict[str, HwConfig] = {
    f"{name}-split": cfg.replace(name=f"{name}-split", split_input=True, dsp_pack=4)
    for name, cfg in SIM_CONFIGS.items()
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


@pytest.mark.parametrize("name", list(SPLIT_CONFIGS))
@pytest.mark.parametrize("array", ["pot", "dsp"])
def test_array_bench_split(array: str, name: str) -> None:
    """Split configs: random ``hi`` on the random vectors, the extremes with ``hi`` on every
    vector (activation 15, largest weights, Fixed-8 pairs), on none and on every other one."""
    _run(array, name, SPLIT_CONFIGS[name], N_RANDOM, seed=2025)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SPLIT_CONFIGS))
def test_array_bench_split_every_product(name: str) -> None:
    """Split configs' DSP array with every activation 0..15 times every Fixed-4 combination of
    a DSP48E1's four lanes and every Fixed-8 weight (about a minute each in Icarus)."""
    _run("dsp", f"{name}-all", SPLIT_CONFIGS[name], N_RANDOM, seed=2026, every_product=True)


@pytest.mark.slow
@pytest.mark.parametrize("board", ["pynq-z2", "zc706"])
@pytest.mark.parametrize("array", ["pot", "dsp"])
def test_array_bench_full_preset(array: str, board: str) -> None:
    """The presets at their full array shapes, with another seed (minutes in Icarus)."""
    _run(array, board, preset(board), N_RANDOM, seed=7)


@pytest.mark.slow
@pytest.mark.parametrize("board", ["pynq-z2", "zc706"])
@pytest.mark.parametrize("array", ["pot", "dsp"])
def test_array_bench_full_preset_split(array: str, board: str) -> None:
    """The presets at their full array shapes with ``split_input`` and four lanes per DSP48E1
    (minutes in Icarus)."""
    cfg = preset(board).replace(name=f"{board}-split", split_input=True, dsp_pack=4)
    _run(array, cfg.name, cfg, N_RANDOM, seed=8)
