"""PoT array in Amaranth's simulator: bit-exact against the golden dot products."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from quant import contract as C
from rtl.config import preset
from rtl.dsp_array import dsp_latency
from rtl.pot_array import PotArray, pot_input_layout, pot_latency
from sim.array_jobs import Job, expected, pot_jobs
from tests.arrays_tb import _payloads, run_jobs
from tests.stream_tb import run_stream

#: pynq-z2's array shape on 8-bit activations (the preset itself splits its first layer's
#: pixels into nibbles: 4-bit arrays; those are tested below).
BASE = preset("pynq-z2").replace(split_input=False, dsp_pack=3)
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def _check(cfg, jobs, **kw) -> int:
    results, cycles = run_jobs(PotArray(cfg=cfg), jobs, **kw)
    assert len(results) == len(jobs)
    for job, got in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(got, expected(job))
    return cycles


@pytest.mark.parametrize("cols", [1, 2, 4, 16])
def test_random_and_extremes_with_gaps_and_stalls(cols: int) -> None:
    cfg = BASE.replace(pot_rows=3, pot_cols=cols, dsp_cols=cols, max_reduction=8 * cols)
    _check(cfg, pot_jobs(cfg, 300, seed=cols), seed=cols, gap=0.3, stall=0.4)


def test_every_code_on_every_lane() -> None:
    cfg = BASE.replace(pot_rows=16, pot_cols=4, dsp_cols=4)
    codes = (np.arange(16)[:, None, None] + np.arange(4)[None, None, :]) % 16  # (16, 1, 4)
    jobs = [Job(acts=np.full((1, 4), a), lanes=codes,
                weights=C.pot_decode(codes).reshape(16, -1))
            for a in (255, 15, 1, 0, 128)]
    assert sorted(set(codes.ravel())) == list(range(16))
    # +64 and -64 of 255 are the largest products; code 8 (reserved) must read as zero.
    _check(cfg, jobs)


@pytest.mark.parametrize("cols", [1, 2, 4, 16])
def test_first_restarts_an_open_dot_product(cols: int) -> None:
    """A ``first`` vector restarts the accumulators even when the dot product before it never
    got its ``last`` vector: the accumulator restart must not depend on a preceding ``last``.
    Open (abandoned) prefixes of 1 to 3 vectors, right before, and with gaps and stalls."""
    cfg = BASE.replace(pot_rows=3, pot_cols=cols, dsp_cols=cols, max_reduction=8 * cols)
    jobs = pot_jobs(cfg, 120, seed=40 + cols)
    rng = np.random.default_rng(cols)
    payloads, want = [], []
    for n, job in enumerate(jobs):
        vectors = _payloads(job)
        if n % 2:  # an abandoned dot product: the same job's vectors, without its last flag
            k = int(rng.integers(1, 4))
            payloads += [dict(v, first=int(j == 0), last=0)
                         for j, v in enumerate(_payloads(jobs[n - 1])[:k] * 3)][:k]
        payloads += vectors
        want.append(expected(job))
    for gap, stall in ((0.0, 0.0), (0.3, 0.4)):
        results, _ = run_stream(PotArray(cfg=cfg), payloads, len(jobs), seed=cols, gap=gap,
                                stall=stall)
        for got, exp in zip(results, want, strict=True):
            np.testing.assert_array_equal(np.array(got, dtype=np.int64), exp)


def test_full_rate_without_backpressure() -> None:
    cfg = BASE.replace(pot_rows=2, pot_cols=4, dsp_cols=4)
    jobs = pot_jobs(cfg, 200, seed=5)
    vectors = sum(job.vectors for job in jobs)
    cycles = _check(cfg, jobs)
    # One vector per cycle, plus reset, the pipeline latency and the last result.
    assert cycles <= vectors + PotArray(cfg=cfg).latency + 2


def test_latency_formula() -> None:
    # Chains of 8 columns (7 registered stages), a tree over the chains, the accumulator.
    assert PotArray(cfg=preset("pynq-z2")).latency == 9  # 7 + 1 tree level (2 chains) + 1
    assert PotArray(cfg=preset("zc706")).latency == 11  # 7 + 3 tree levels (8 chains) + 1
    assert PotArray(cfg=BASE.replace(pot_cols=1, dsp_cols=1)).latency == 2
    assert PotArray(cfg=BASE.replace(pot_cols=4, dsp_cols=4)).latency == 4  # one chain of 4
    for cols in (1, 2, 4, 8, 16, 32):
        cfg = preset("zc706").replace(pot_cols=cols, dsp_cols=cols, unroll_taps=0)
        # Never slower than the DSP array: the engine's result FIFO and the cycle model
        # (which take the larger of the two) see no longer array latency.
        assert pot_latency(cfg) < dsp_latency(cfg)


def test_ports() -> None:
    cfg = preset("zc706")
    dut = PotArray(cfg=cfg)
    layout = pot_input_layout(cfg)
    assert layout["act"].shape.elem_shape == unsigned(8)  # first-layer pixels fit
    assert layout["act"].shape.length == 64
    assert layout["weight"].shape.length == 42
    assert dut.o.payload.shape().elem_shape == signed(cfg.acc_bits)
    assert dut.o.payload.shape().length == 42


def test_bad_config() -> None:
    with pytest.raises(TypeError, match=r"^PotArray configuration must be a HwConfig, not 'x'$"):
        PotArray(cfg="x")
    with pytest.raises(ValueError, match=r"^HwConfig.pot_rows must be at least 1"):
        BASE.replace(pot_rows=0, weight_formats=("fixed4", "fixed8"))


# ---- split_input: first-layer pixels as nibbles, high nibbles counted 16 times ----------------

#: The presets' 8-bit pixels reach the arrays as 4-bit nibbles.
SPLIT = BASE.replace(split_input=True, act_bits=4, input_bits=8)


def _check_split(cfg, jobs, **kw) -> None:
    """Feed jobs with their ``hi`` flags; compare with the golden model on the activations
    times 16 where ``hi`` is set (``sim.array_jobs.expected``)."""
    payloads = []
    for job in jobs:
        assert job.hi is not None
        for p, h in zip(_payloads(job), job.hi, strict=True):
            payloads.append(dict(p, hi=int(h)))
    results, _ = run_stream(PotArray(cfg=cfg), payloads, len(jobs),
                            max_cycles=100 * (len(payloads) + 10), **kw)
    assert len(results) == len(jobs)
    for job, got in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(np.array(got, dtype=np.int64), expected(job))


@pytest.mark.parametrize("cols", [1, 2, 4, 16])
def test_split_random_and_extremes_with_gaps_and_stalls(cols: int) -> None:
    """Random jobs with ``hi`` on a random half of the vectors, the extreme jobs with ``hi``
    on every vector, on none and on every other one, gaps and backpressure."""
    cfg = SPLIT.replace(pot_rows=3, pot_cols=cols, dsp_cols=cols, max_reduction=8 * cols)
    jobs = pot_jobs(cfg, 300, seed=60 + cols)
    assert max(job.acts.max() for job in jobs) == 15
    assert {int(h) for job in jobs for h in job.hi} == {0, 1}
    assert any(0 < job.hi.sum() < job.vectors for job in jobs)  # mixed within a dot product
    _check_split(cfg, jobs, seed=cols, gap=0.3, stall=0.4)


def test_split_largest_products() -> None:
    """Every activation 15 on every vector with ``hi`` set and the largest weights (+-64) over
    the longest reduction: the largest dot products a split array computes, +-16 * 15 * 64
    per product, beside every code on every lane with ``hi`` set and not."""
    cols = 16
    cfg = SPLIT.replace(pot_rows=16, pot_cols=cols, dsp_cols=cols, max_reduction=4608)
    longest = -(-cfg.max_reduction // cols)
    jobs = []
    for value in (64, -64):
        codes = np.full((16, longest, cols), int(C.pot_encode(value)))
        jobs.append(Job(acts=np.full((longest, cols), 15), lanes=codes,
                        weights=C.pot_decode(codes).reshape(16, -1),
                        hi=np.ones(longest, dtype=np.int64)))
        assert (expected(jobs[-1]) == value * 16 * 15 * longest * cols).all()
    codes = (np.arange(16)[:, None, None] + np.arange(cols)[None, None, :]) % 16
    for a in (15, 1, 8, 0):
        for h in (1, 0):
            jobs.append(Job(acts=np.full((1, cols), a), lanes=codes,
                            weights=C.pot_decode(codes).reshape(16, -1), hi=np.array([h])))
    _check_split(cfg, jobs, seed=3, gap=0.2, stall=0.3)


def test_split_first_restarts_with_hi() -> None:
    """Dot products of a few vectors each, at full rate, so that a ``first`` vector with ``hi``
    enters the accumulator stage right after a ``last`` one without (and the other way)."""
    cfg = SPLIT.replace(pot_rows=2, pot_cols=4, dsp_cols=4, max_reduction=32)
    rng = np.random.default_rng(8)
    jobs = []
    for k in range(60):
        v = 1 + k % 3
        codes = rng.integers(0, 16, size=(2, v, 4))
        jobs.append(Job(acts=rng.integers(0, 16, size=(v, 4)), lanes=codes,
                        weights=C.pot_decode(codes).reshape(2, -1),
                        hi=(np.arange(v) + k) % 2))
    _check_split(cfg, jobs)


def test_split_ports_and_latency() -> None:
    """``hi`` exists only with ``split_input``; the layout without it is the one the conv core
    and the drivers pack (field offsets below), and the latency does not change."""
    for board in ("pynq-z2", "zc706"):
        cfg = preset(board).replace(split_input=False, dsp_pack=3)   # pynq-z2 splits its own
        split = cfg.replace(split_input=True)
        plain = pot_input_layout(cfg)
        assert "hi" not in plain.members
        v, rows = cfg.vec_len, cfg.pot_rows
        offsets = {name: (f.offset, f.width) for name, f in plain}
        flags = 8 * v + 4 * v * rows
        assert offsets == {"act": (0, 8 * v), "weight": (8 * v, 4 * v * rows),
                           "first": (flags, 1), "last": (flags + 1, 1)}
        assert plain.size == flags + 2
        layout = pot_input_layout(split)
        assert layout["act"].shape.elem_shape == unsigned(4)
        assert list(layout.members) == ["act", "weight", "first", "last", "hi"]
        assert layout["hi"].width == 1
        assert layout.size == 4 * v + 4 * v * rows + 3
        assert pot_latency(split) == pot_latency(cfg)
        assert split.acc_bits == cfg.acc_bits  # the accumulator holds the real dot product
