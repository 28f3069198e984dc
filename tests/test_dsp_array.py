"""DSP array in Amaranth's simulator: 1 to 4 packed lanes per DSP48E1, Fixed-8 pairs, bit-exact."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from amaranth.hdl import unsigned

from rtl.config import preset
from rtl.dsp_array import DspArray, dsp_input_layout, dsp_latency, lane_offsets
from sim.array_jobs import Job, dsp_job, dsp_jobs, expected
from tests.arrays_tb import _payloads, run_jobs
from tests.stream_tb import run_stream

#: pynq-z2's array shape on 8-bit activations (the preset itself splits its first layer's
#: pixels into nibbles: 4-bit arrays, four lanes per DSP48E1; those are tested below).
BASE = preset("pynq-z2").replace(split_input=False, dsp_pack=3)
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
    assert BASE.dsp_lane_field == 10
    assert preset("pynq-z2").dsp_lane_field == 6         # split_input: 4-bit activations
    assert BASE.replace(act_bits=4, input_bits=4).dsp_lane_field == 6
    assert BASE.replace(act_bits=5, input_bits=5).dsp_lane_field == 7
    assert BASE.dsp_max_pack == preset("zc706").dsp_max_pack == 3
    assert preset("pynq-z2").dsp_max_pack == 4
    assert BASE.replace(act_bits=5, input_bits=5).dsp_max_pack == 3
    assert BASE.replace(act_bits=4, input_bits=4).dsp_max_pack == 4
    assert lane_offsets(preset("zc706")) == (0, 10, 20)


def test_dsp_count_and_latency() -> None:
    # ceil(30 / 4) * 16 and ceil(26 / 3) * 64 DSP48E1
    assert DspArray(cfg=preset("pynq-z2")).dsp_count == 128 == preset("pynq-z2").dsp_count
    assert DspArray(cfg=preset("zc706")).dsp_count == 576 == preset("zc706").dsp_count
    assert DspArray(cfg=preset("pynq-z2")).latency == 10
    assert DspArray(cfg=preset("zc706")).latency == 12  # a tree level more for 64 columns


def test_bad_config() -> None:
    with pytest.raises(TypeError, match=r"^DspArray configuration must be a HwConfig, not 3$"):
        DspArray(cfg=3)


# ---- split_input: first-layer pixels as nibbles, high nibbles counted 16 times ----------------

#: The presets' 8-bit pixels reach the arrays as 4-bit nibbles: four lanes per DSP48E1 fit.
SPLIT = BASE.replace(split_input=True, act_bits=4, input_bits=8, dsp_pack=4)


def _check_split(cfg, jobs, **kw) -> None:
    """Feed jobs with their ``hi`` flags; compare with the golden model on the activations
    times 16 where ``hi`` is set (``sim.array_jobs.expected``)."""
    has8 = "fixed8" in cfg.weight_formats
    payloads = []
    for job in jobs:
        assert job.hi is not None
        for p, h in zip(_payloads(job), job.hi, strict=True):
            p = dict(p, hi=int(h))
            if not has8:
                p.pop("fixed8", None)
            payloads.append(p)
    results, _ = run_stream(DspArray(cfg=cfg), payloads, len(jobs),
                            max_cycles=100 * (len(payloads) + 10), **kw)
    assert len(results) == len(jobs)
    for job, got in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(np.array(got, dtype=np.int64), expected(job))


@pytest.mark.parametrize(("pack", "rows", "cols"), [
    (4, 8, 1), (4, 8, 4), (4, 6, 16), (3, 4, 4), (3, 4, 16)])
def test_split_random_and_extremes_with_gaps_and_stalls(pack: int, rows: int, cols: int
                                                        ) -> None:
    """Random Fixed-4/Fixed-8 jobs with ``hi`` on a random half of the vectors, the extreme
    jobs (-8/7, -128/127, activation 15, the longest reduction) with ``hi`` on every vector,
    on none and on every other one; gaps and backpressure. Pack 3 with 4 lanes puts a Fixed-8
    pair across two DSP48E1."""
    cfg = SPLIT.replace(dsp_rows=rows, dsp_pack=pack, pot_cols=cols, dsp_cols=cols,
                        max_reduction=8 * cols)
    assert cfg.dsp_lane_field == 6
    jobs = dsp_jobs(cfg, 300, seed=70 + cols + pack)
    assert max(job.acts.max() for job in jobs) == 15
    assert any(0 < job.hi.sum() < job.vectors for job in jobs)  # mixed within a dot product
    _check_split(cfg, jobs, seed=cols, gap=0.3, stall=0.4)


def test_split_borrow_cases() -> None:
    """Every sign and extreme combination of the four lanes of one DSP48E1 times every
    activation 0..15 (f = 6: the borrows change at every step), each vector once with and once
    without ``hi``."""
    cols = 8
    cfg = SPLIT.replace(dsp_rows=4, pot_cols=cols, dsp_cols=cols,
                        weight_formats=("pot4", "fixed4"), max_reduction=4 * cols)
    values = (-8, -7, -1, 0, 1, 7)
    weights = [(a, b, c, d) for a in values for b in values for c in values for d in values]
    jobs = _onedsp_jobs(4, cols, weights, list(range(16)), fixed8=None)
    jobs = [replace(job, hi=np.array([h])) for job in jobs for h in (1, 0)]
    _check_split(cfg, jobs)


def test_split_fixed8_extremes() -> None:
    """Fixed-8 pairs at their extremes (-128, 127, 120..127 with the high lane at 8) times 15
    with ``hi``: 16 * 15 * -128 per product over the longest reduction; every pair position,
    pack 4 and 3."""
    cols = 4
    for pack in (4, 3):
        cfg = SPLIT.replace(dsp_rows=6, pot_cols=cols, dsp_cols=cols, dsp_pack=pack,
                            max_reduction=64 * cols)
        longest = -(-cfg.max_reduction // cols)
        jobs = []
        for w8 in (-128, -121, -120, -9, -8, -1, 0, 7, 8, 119, 120, 121, 127):
            w = np.full((6, 2, cols), w8)
            acts = np.array([[15, 14, 1, 8], [3, 15, 15, 2]])
            for hi in ((1, 1), (1, 0), (0, 1)):
                jobs.append(replace(dsp_job(acts, w, np.ones(3, dtype=bool)), hi=np.array(hi)))
        for w8 in (-128, 127):
            job = dsp_job(np.full((longest, cols), 15), np.full((6, longest, cols), w8),
                          np.ones(3, dtype=bool))
            jobs.append(replace(job, hi=np.ones(longest, dtype=np.int64)))
            assert (expected(jobs[-1])[0::2] == w8 * 16 * 15 * longest * cols).all()
        _check_split(cfg, jobs, seed=pack, gap=0.2, stall=0.3)


def test_split_ports_and_latency() -> None:
    """``hi`` exists only with ``split_input``; the layout without it is unchanged (field
    offsets below), the latency does not change, and four lanes fit a DSP48E1."""
    for board in ("pynq-z2", "zc706"):
        cfg = preset(board).replace(split_input=False, dsp_pack=3)   # pynq-z2 splits its own
        split = cfg.replace(split_input=True, dsp_pack=4)
        plain = dsp_input_layout(cfg)
        assert "hi" not in plain.members
        v, rows = cfg.vec_len, cfg.dsp_rows
        flags = 8 * v + 4 * v * rows + rows // 2
        offsets = {name: (f.offset, f.width) for name, f in plain}
        assert offsets == {"act": (0, 8 * v), "weight": (8 * v, 4 * v * rows),
                           "fixed8": (8 * v + 4 * v * rows, rows // 2),
                           "first": (flags, 1), "last": (flags + 1, 1)}
        assert plain.size == flags + 2
        layout = dsp_input_layout(split)
        assert list(layout.members) == ["act", "weight", "fixed8", "first", "last", "hi"]
        assert layout["act"].shape.elem_shape == unsigned(4)
        assert layout["hi"].width == 1
        assert dsp_latency(split) == dsp_latency(cfg)
        assert split.dsp_max_pack == 4 and lane_offsets(split) == (0, 6, 12, 18)
        assert DspArray(cfg=split).dsp_count == -(-rows // 4) * v
    assert "hi" not in dsp_input_layout(SPLIT.replace(split_input=False, dsp_pack=3)).members
