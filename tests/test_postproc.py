"""Post-processing unit against the contract's activation/logits, with gaps and stalls."""

import numpy as np
import pytest

from quant import contract as C
from rtl.config import preset
from rtl.interface.descriptor import PostMode
from rtl.postproc import PostProc
from tests.stream_tb import run_stream

CFG = preset("pynq-z2")
LANES = 3


def _vectors(rng, n):
    d = CFG.max_abs_dot
    extremes_acc = [-d, d, 0, -1, 1]
    extremes_bias = [-d, d, 0]
    out = []
    for v in range(n):
        if v < 20:   # extremes first: largest sums, largest multiplier, every shift end
            acc = [extremes_acc[(v + k) % 5] for k in range(LANES)]
            bias = [extremes_bias[(v + k) % 3] for k in range(LANES)]
            mult = [[0, 1, C.MULT_MAX][(v + k) % 3] for k in range(LANES)]
            shift = [[0, 1, C.SHIFT_MAX, 20][(v + k) % 4] for k in range(LANES)]
        else:
            acc = rng.integers(-d, d + 1, LANES).tolist()
            bias = rng.integers(-d // 4, d // 4 + 1, LANES).tolist()
            mult = rng.integers(0, C.MULT_MAX + 1, LANES).tolist()
            shift = rng.integers(0, C.SHIFT_MAX + 1, LANES).tolist()
        out.append({"acc": acc, "bias": bias, "mult": mult, "shift": shift,
                    "mode": int(rng.integers(0, 3)), "tag": v % 64})
    return out


def _expected(p):
    return {"value": _values(p), "tag": p["tag"]}


def _values(p):
    acc = np.array(p["acc"], np.int64) + np.array(p["bias"], np.int64)
    mult, shift = np.array(p["mult"], np.int64), np.array(p["shift"], np.int64)
    if p["mode"] == PostMode.LOGITS:
        return C.logits(acc, mult, shift).tolist()
    return C.activation(acc, mult, shift, p["mode"] == PostMode.RELU, CFG.act_bits).tolist()


@pytest.mark.parametrize(("gap", "stall"), [(0.0, 0.0), (0.3, 0.4)])
def test_postproc_matches_contract(gap, stall):
    rng = np.random.default_rng(42)
    vectors = _vectors(rng, 400)
    got, _ = run_stream(PostProc(cfg=CFG, lanes=LANES, tag_bits=6), vectors, len(vectors),
                        seed=1, gap=gap, stall=stall)
    assert got == [_expected(p) for p in vectors]


def test_postproc_latency_and_throughput():
    rng = np.random.default_rng(0)
    vectors = _vectors(rng, 50)
    dut = PostProc(cfg=CFG, lanes=LANES, tag_bits=6)
    assert dut.LATENCY == 5
    got, cycles = run_stream(dut, vectors, len(vectors),
                             max_cycles=len(vectors) + dut.LATENCY + 2)
    assert cycles == len(vectors) + dut.LATENCY
    assert got == [_expected(p) for p in vectors]


@pytest.mark.parametrize(("gap", "stall"), [(0.0, 0.0), (0.3, 0.4)])
def test_postproc_tag_map_travels_with_its_vector(gap, stall):
    # The tag becomes tag_map(tag) on the way, and still leaves with its own vector when the
    # pipeline stalls (the map works on the stage that holds it).
    rng = np.random.default_rng(7)
    vectors = _vectors(rng, 200)
    dut = PostProc(cfg=CFG, lanes=LANES, tag_bits=6, tag_map=lambda t: (t * 5 + 3)[:6])
    got, _ = run_stream(dut, vectors, len(vectors), seed=2, gap=gap, stall=stall)
    assert got == [{"value": _values(p), "tag": (p["tag"] * 5 + 3) % 64} for p in vectors]


def test_postproc_rejects_bad_arguments():
    with pytest.raises(TypeError, match=r"^PostProc lanes must be a positive integer, not 0$"):
        PostProc(cfg=CFG, lanes=0)
    with pytest.raises(TypeError, match=r"^PostProc configuration must be a HwConfig, not 3$"):
        PostProc(cfg=3, lanes=1)
    with pytest.raises(TypeError, match=r"^PostProc tag_map must be callable, not 3$"):
        PostProc(cfg=CFG, lanes=1, tag_map=3)
