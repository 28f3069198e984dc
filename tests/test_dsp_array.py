"""DSP array in Amaranth's simulator: 1 to 4 packed lanes per DSP48E1, Fixed-8 pairs, bit-exact."""

from __future__ import annotations

import numpy as np
import pytest

from rtl.config import preset
from rtl.dsp_array import DspArray, dsp_input_layout, lane_offsets
from sim.array_jobs import Job, dsp_job, dsp_jobs, expected
from tests.arrays_tb import run_jobs

BASE = preset("pynq-z2")
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def _check(cfg, jobs, **kw) -> int:
    has8 = "fixed8" in cfg.weight_formats
    results, cycles = run_jobs(DspArray(cfg=cfg), jobs, has_fixed8=has8, **kw)
    assert len(results) == len(jobs)
    for job, got in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(got, expected(job))
    return cycles


@pytest.mark.parametrize("cols", [1, 2, 4, 16])
def test_random_and_extremes_with_gaps_and_stalls(cols: int) -> None:
    cfg = BASE.replace(dsp_rows=4, pot_cols=cols, dsp_cols=cols, max_reduction=8 * cols)
    _check(cfg, dsp_jobs(cfg, 300, seed=cols), seed=cols, gap=0.3, stall=0.4)


def test_without_fixed8() -> None:
    cfg = BASE.replace(dsp_rows=4, pot_cols=4, dsp_cols=4, weight_formats=("pot4", "fixed4"))
    assert "fixed8" not in dsp_input_layout(cfg).members
    _check(cfg, dsp_jobs(cfg, 100, seed=3), gap=0.2, stall=0.2)


@pytest.mark.parametrize("pack", [1, 2, 3])
def test_every_pack_exact(pack: int) -> None:
    cfg = BASE.replace(dsp_rows=6, pot_cols=4, dsp_cols=4, dsp_pack=pack, max_reduction=32)
    _check(cfg, dsp_jobs(cfg, 150, seed=pack), seed=pack, gap=0.2, stall=0.2)


def test_four_lanes_with_4_bit_activations() -> None:
    cfg = BASE.replace(dsp_rows=8, pot_cols=4, dsp_cols=4, dsp_pack=4, act_bits=4, input_bits=4,
                       max_reduction=32)
    assert lane_offsets(cfg) == (0, 6, 12, 18)
    _check(cfg, dsp_jobs(cfg, 200, seed=5), seed=5, gap=0.2, stall=0.2)


def _onedsp_jobs(rows: int, cols: int, weights: list[tuple[int, ...]], acts: list[int],
                  fixed8: np.ndarray) -> list[Job]:
    """One vector per job: each column gets its own (weights, activation) combination."""
    combos = [(w, a) for w in weights for a in acts]
    jobs = []
    for k in range(0, len(combos), cols):
        chunk = combos[k:k + cols]
        chunk += [chunk[-1]] * (cols - len(chunk))
        lanes = np.array([[[w[r] for w, _ in chunk]] for r in range(rows)])
        act = np.array([[a for _, a in chunk]])
        jobs.append(Job(acts=act, lanes=lanes, weights=lanes.reshape(rows, -1), fixed8=fixed8))
    return jobs


def test_borrow_cases() -> None:
    """Every sign and extreme combination of the three lanes of one DSP48E1 times the
    activations where the lane borrows change (0, 1, 2, 3, 127, 128, 254, 255)."""
    cols = 4
    cfg = BASE.replace(dsp_rows=3, pot_cols=cols, dsp_cols=cols, dsp_pack=3,
                       weight_formats=("pot4", "fixed4"), max_reduction=4 * cols)
    values = (-8, -7, -1, 0, 1, 7)
    weights = [(a, b, c) for a in values for b in values for c in values]
    jobs = _onedsp_jobs(3, cols, weights, [0, 1, 2, 3, 127, 128, 254, 255], fixed8=None)
    _check(cfg, jobs)


def test_fixed8_high_lane_eight() -> None:
    """Fixed-8 weights 120..127 put hi + lo[3] = 8 on the high lane; every pair position."""
    cols = 4
    cfg = BASE.replace(dsp_rows=6, pot_cols=cols, dsp_cols=cols, dsp_pack=3, max_reduction=8)
    jobs = []
    for w8 in (-128, -121, -120, -9, -8, -1, 0, 7, 8, 119, 120, 121, 127):
        w = np.full((6, 2, cols), w8)
        acts = np.array([[255, 254, 1, 128], [3, 255, 255, 2]])
        jobs.append(dsp_job(acts, w, np.ones(3, dtype=bool)))
    _check(cfg, jobs)


def test_lane_field_and_offsets_of_presets() -> None:
    # 2**(f + 1) >= 8 * a_max + 2: 2042 <= 2048 for 8-bit activations, 122 <= 128 for 4-bit.
    assert preset("pynq-z2").dsp_lane_field == 10
    assert BASE.replace(act_bits=4, input_bits=4).dsp_lane_field == 6
    assert BASE.replace(act_bits=5, input_bits=5).dsp_lane_field == 7
    assert preset("pynq-z2").dsp_max_pack == preset("zc706").dsp_max_pack == 3
    assert BASE.replace(act_bits=5, input_bits=5).dsp_max_pack == 3
    assert BASE.replace(act_bits=4, input_bits=4).dsp_max_pack == 4
    assert lane_offsets(preset("zc706")) == (0, 10, 20)


def test_dsp_count_and_latency() -> None:
    # ceil(20 / 3) * 16 and ceil(26 / 3) * 64 DSP48E1
    assert DspArray(cfg=preset("pynq-z2")).dsp_count == 112 == preset("pynq-z2").dsp_count
    assert DspArray(cfg=preset("zc706")).dsp_count == 576 == preset("zc706").dsp_count
    assert DspArray(cfg=preset("pynq-z2")).latency == 10
    assert DspArray(cfg=preset("zc706")).latency == 12  # a tree level more for 64 columns


def test_bad_config() -> None:
    with pytest.raises(TypeError, match=r"^DspArray configuration must be a HwConfig, not 3$"):
        DspArray(cfg=3)
