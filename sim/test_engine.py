"""pytest entry for the accelerator bench: conv/fc layers through AXI, error codes, reset."""

from __future__ import annotations

import pytest

from rtl.config import HwConfig
from rtl.engine import Accelerator
from rtl.flatten import FlatTop
from sim.runner import run_bench

#: A small engine (8-lane vectors) so Icarus runs the layers in seconds; its small buffers
#: make many layers run as several row tiles. Three weight masters: passes of 1 to 3 rows leave
#: ports idle, others give them unequal shares.
CFG = HwConfig(name="engine-sim", part="xc7z020clg400-1", clock_mhz=100.0, pot_rows=4,
               pot_cols=8, dsp_rows=4, dsp_cols=8, max_reduction=7 * 7 * 8, max_channels=64,
               max_spatial=64, act_buf_depth=256, weight_buf_depth=64, out_buf_depth=64,
               result_lanes=4, weight_ports=3, unroll_taps=2)

CASES = [
    dict(cin=10, cout=13, k=3, s=1, p=1, size=6, ratio=[60, 35, 5], relu=True, in_bits=4),
    dict(cin=6, cout=9, k=3, s=2, p=1, size=7, ratio=[50, 30, 20], relu=False, in_bits=4),
    dict(cin=3, cout=8, k=7, s=2, p=3, size=9, ratio=[60, 35, 5], relu=True, in_bits=8),
    # Row tiles: 12 one-row tiles; the stem on a 21x21 image in bands padded at the ends.
    dict(cin=10, cout=20, k=3, s=1, p=1, size=12, ratio=[60, 35, 5], relu=True, in_bits=4),
    dict(cin=3, cout=8, k=7, s=2, p=3, size=21, ratio=[60, 35, 5], relu=True, in_bits=8),
    # Even kernels: the folded stem (4x4, stride 1, no padding, 12 channels) and a 2x2/2.
    dict(cin=12, cout=10, k=4, s=1, p=0, size=11, ratio=[60, 35, 5], relu=True, in_bits=8),
    dict(cin=5, cout=6, k=2, s=2, p=0, size=6, ratio=[60, 35, 5], relu=False, in_bits=4),
    # The stem folded and unrolled (rtl.interface.stem): a 4x1 kernel on 48 channels.
    dict(cin=3, cout=10, k=7, s=2, p=3, size=13, ratio=[60, 35, 5], relu=True, in_bits=8,
         unroll=True),
    # A 3x3/2 stem on one channel folded, unrolled by the engine (2 taps of 4 lanes): the
    # host writes the 4-channel folded map; 15 x 15 outputs in row tiles that share a row,
    # and pooled in the write-back.
    dict(cin=1, cout=8, k=3, s=2, p=1, size=29, ratio=[60, 35, 5], relu=True, in_bits=8,
         unroll="engine"),
    dict(cin=1, cout=6, k=3, s=2, p=1, size=29, ratio=[60, 35, 5], relu=True, in_bits=8,
         unroll="engine", pool=True),
    # ResNet's stem max-pool (3x3/2, padding 1) in the conv's write-back: 14 x 14 pooled to
    # 7 x 7 in row tiles, each but the first led by the band above's last conv row.
    dict(cin=6, cout=6, k=3, s=1, p=1, size=14, ratio=[60, 35, 5], relu=True, in_bits=4,
         pool=True),
    dict(cin=16, cout=10, k=1, s=1, p=0, size=1, ratio=[65, 30, 5], relu=False, in_bits=4,
         fc=True),
]


VECTOR_CASES = [
    dict(op="add", c=10, h=5, signed_a=True, signed_b=False, relu=True),
    dict(op="add", c=7, h=4, signed_a=True, signed_b=True, relu=False),
    dict(op="add", c=20, h=8, signed_a=False, signed_b=True, relu=True),     # row tiles
    dict(op="maxpool", c=10, h=9),
    dict(op="maxpool", c=3, h=4),
    dict(op="maxpool", c=20, h=12),                                          # row tiles
    dict(op="avgpool", c=20, h=5),
]


#: Cycles from a read burst's address to its first data in the bench's DDR (``sim.ddr``).
READ_LATENCY = 24

#: Constrained-random layers per run (conv, fc, add, pools; shapes and scheme mixes).
N_RANDOM = 50


def _run(cfg: HwConfig, case: str, seed: int, cases: list, vector_cases: list,
         n_random: int, **extra) -> None:
    acc = Accelerator(cfg=cfg)
    run_bench(FlatTop(acc, Accelerator.bus_prefixes(cfg)), toplevel="accel_top",
              test_module="sim.engine_bench", case=case,
              test_filter=extra.pop("test_filter", None),
              params={"config": cfg.to_json(), "regmap": acc.regmap.to_json(), "seed": seed,
                      "cases": cases, "vector_cases": vector_cases, "n_random": n_random,
                      "read_latency": READ_LATENCY, **extra})


def test_engine_bench() -> None:
    _run(CFG, "engine-small", 3, CASES, VECTOR_CASES, N_RANDOM)


#: The stems, folded and unrolled by the host or by the engine, in row tiles and pooled: on
#: a DDR that answers every read after ``READ_LATENCY`` cycles and never pauses, each layer's
#: cycles are within this of the cycle model's (rtl/cycle_model.py), as on the network
#: benches (sim/test_network.py).
STEM_CASES = [case for case in CASES if case.get("unroll")]
MODEL_TOLERANCE = 0.03


def test_engine_stem_cycles_match_the_model() -> None:
    _run(CFG, "engine-stem-cycles", 6, STEM_CASES, [], 0, model_tolerance=MODEL_TOLERANCE,
         test_filter=r"engine_bench\.layers_match_golden$")


#: Banks of 16 weight rows: passes of 17 to 32 steps span both (long passes, the loader
#: fills no bank while one runs). A 3x3 conv on 3 chunks (27 steps, three passes), one on 2
#: chunks in row tiles (18 steps; the next tile's passes follow on), the folded stem's shape
#: (4x4 on 12 channels: 32 steps, both banks full); bit-exact, and within MODEL_TOLERANCE of
#: the cycle model.
CFG_LONG = CFG.replace(name="engine-long", weight_buf_depth=16)
LONG_CASES = [
    dict(cin=20, cout=19, k=3, s=1, p=1, size=5, ratio=[60, 35, 5], relu=True, in_bits=4),
    dict(cin=10, cout=13, k=3, s=1, p=1, size=12, ratio=[60, 35, 5], relu=False, in_bits=4),
    dict(cin=12, cout=10, k=4, s=1, p=0, size=11, ratio=[60, 35, 5], relu=True, in_bits=8),
]


def test_engine_long_passes() -> None:
    _run(CFG_LONG, "engine-long", 7, LONG_CASES, [], 0, model_tolerance=MODEL_TOLERANCE,
         test_filter=r"engine_bench\.layers_match_golden$")


#: The zc706 preset's vector width (64 lanes: a 4-bit vector is 4 bus words, a signed 5-bit
#: one 5, an 8-bit input pixel 8) on small arrays: the unpackers, packers and buffers at that
#: width, with maps of one and two chunks; its unroller as zc706's (4 taps of 16 lanes).
CFG_WIDE = CFG.replace(name="engine-wide", pot_rows=2, pot_cols=64, dsp_rows=3, dsp_cols=64,
                       dsp_pack=3,
                       max_reduction=3 * 3 * 128, max_channels=128, unroll_taps=4)
WIDE_CASES = [
    dict(cin=70, cout=7, k=3, s=1, p=1, size=5, ratio=[60, 35, 5], relu=True, in_bits=4),
    dict(cin=12, cout=6, k=4, s=1, p=0, size=7, ratio=[60, 35, 5], relu=True, in_bits=8),
    dict(cin=64, cout=5, k=1, s=2, p=0, size=6, ratio=[40, 40, 20], relu=False, in_bits=4),
    # Row tiles (the reset bench aborts this chain): 7 tiles of at most 3 output rows.
    dict(cin=10, cout=20, k=3, s=1, p=1, size=20, ratio=[60, 35, 5], relu=True, in_bits=4),
    dict(cin=100, cout=6, k=1, s=1, p=0, size=1, ratio=[65, 30, 5], relu=False, in_bits=4,
         fc=True),
    # The stem folded and unrolled by the host (48 of the 64 lanes), and as zc706 runs it,
    # unrolled by the engine (4 taps of 16 lanes, the folded map's 2 words a pixel); a conv
    # whose max-pool runs in its write-back.
    dict(cin=3, cout=6, k=7, s=2, p=3, size=13, ratio=[60, 35, 5], relu=True, in_bits=8,
         unroll=True),
    dict(cin=3, cout=6, k=7, s=2, p=3, size=21, ratio=[60, 35, 5], relu=True, in_bits=8,
         unroll="engine"),
    dict(cin=6, cout=6, k=3, s=1, p=1, size=14, ratio=[60, 35, 5], relu=True, in_bits=4,
         pool=True),
]
WIDE_VECTOR_CASES = [
    dict(op="add", c=70, h=4, signed_a=True, signed_b=False, relu=True),
    dict(op="maxpool", c=70, h=7),
    dict(op="avgpool", c=64, h=3),
]


@pytest.mark.slow
def test_engine_bench_wide() -> None:
    """Icarus runs the 64-lane engine at about 30 cycles a second: 10 to 20 minutes."""
    _run(CFG_WIDE, "engine-wide", 4, WIDE_CASES, WIDE_VECTOR_CASES, 0)


@pytest.mark.slow
def test_engine_bench_wide_random() -> None:
    """The same and constrained-random layers at 64 lanes (tens of minutes in Icarus)."""
    _run(CFG_WIDE, "engine-wide-random", 5, WIDE_CASES, WIDE_VECTOR_CASES, 8)
