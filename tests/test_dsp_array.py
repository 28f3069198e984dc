"""DSP array in Amaranth's simulator: packed Fixed-4 lanes and Fixed-8 pairs, bit-exact."""

from __future__ import annotations

import numpy as np
import pytest

from rtl.config import preset
from rtl.dsp_array import DspArray, dsp_input_layout, pack_shift
from sim.array_jobs import Job, dsp_jobs, expected
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


@pytest.mark.parametrize("cols", [1, 3, 4, 16])
def test_random_and_extremes_with_gaps_and_stalls(cols: int) -> None:
    cfg = BASE.replace(dsp_rows=4, pot_cols=cols, dsp_cols=cols, max_reduction=8 * cols)
    _check(cfg, dsp_jobs(cfg, 300, seed=cols), seed=cols, gap=0.3, stall=0.4)


def test_without_fixed8() -> None:
    cfg = BASE.replace(dsp_rows=4, pot_cols=4, dsp_cols=4, weight_formats=("pot4", "fixed4"))
    assert "fixed8" not in dsp_input_layout(cfg).members
    _check(cfg, dsp_jobs(cfg, 100, seed=3), gap=0.2, stall=0.2)


def test_borrow_cases() -> None:
    """Low products summing to exactly -2**(S-1), and every high/low sign combination."""
    cols = 4
    cfg = BASE.replace(dsp_rows=2, pot_cols=cols, dsp_cols=cols)
    assert pack_shift(cfg) == 14  # 8 * 255 * 4 = 8160 <= 2**13
    jobs = []
    for lo in (-8, -1, 0, 1, 7):
        for hi in (-8, -1, 0, 1, 7):
            w = np.array([[[lo] * cols], [[hi] * cols]])
            jobs.append(Job(acts=np.full((1, cols), 255), lanes=w, weights=w.reshape(2, -1),
                            fixed8=np.zeros(1, dtype=np.int64)))
    _check(cfg, jobs)


def test_pack_shift_of_presets() -> None:
    # 2**(S-1) >= 8 * 255 * cols: 32640 <= 2**15 (16 columns), 65280 <= 2**16 (32 columns)
    assert pack_shift(preset("pynq-z2")) == 16
    assert pack_shift(preset("zc706")) == 17
    assert pack_shift(BASE.replace(pot_cols=256, dsp_cols=256)) == 20  # 25-bit A port: fits


def test_dsp_count_and_latency() -> None:
    assert DspArray(cfg=preset("pynq-z2")).dsp_count == 144 == preset("pynq-z2").dsp_count
    assert DspArray(cfg=preset("zc706")).dsp_count == 512 == preset("zc706").dsp_count
    assert DspArray(cfg=preset("pynq-z2")).latency == 7
    assert DspArray(cfg=preset("zc706")).latency == 8


def test_bad_config() -> None:
    with pytest.raises(TypeError, match=r"^DspArray configuration must be a HwConfig, not 3$"):
        DspArray(cfg=3)
    with pytest.raises(ValueError, match=r"^DspArray packs two 4-bit lanes per DSP48E1; "
                                         r"HwConfig.dsp_pack must be 2, not 1$"):
        DspArray(cfg=BASE.replace(dsp_pack=1))
    with pytest.raises(ValueError, match=r"^DspArray runs a Fixed-8 filter on the two lanes of "
                                         r"one DSP48E1; HwConfig.fixed8_lanes must be 2, not 1$"):
        DspArray(cfg=BASE.replace(fixed8_lanes=1))
    with pytest.raises(ValueError, match=r"^DspArray needs HwConfig.dsp_rows > 0, not 0$"):
        DspArray(cfg=BASE.replace(dsp_rows=0, weight_formats=("pot4",)))
