"""Vector units (residual add, max-pool, global average pool) against the golden model."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from quant import contract as C
from quant import golden
from rtl.config import HwConfig, preset
from rtl.interface.tiling import row_tile
from rtl.postproc import PostProc
from rtl.vector_units import (
    AddUnit,
    AvgPool,
    MaxPool,
    add_layer_layout,
    lane_bits,
)
from tests.stream_tb import run_stream

CFG = HwConfig(name="vec-test", part="xc7z020clg400-1", clock_mhz=100.0, pot_rows=4,
               pot_cols=4, dsp_rows=4, dsp_cols=4, max_channels=64, max_spatial=32,
               act_buf_depth=1024, weight_buf_depth=128, out_buf_depth=256)
A = CFG.act_bits


# ---- residual add ---------------------------------------------------------------------------


class _AddTop(wiring.Component):
    """An AddUnit whose layer parameters are constants, so the generic stream bench drives it."""

    def __init__(self, cfg: HwConfig, layer: dict, tag_bits: int) -> None:
        self.unit = AddUnit(cfg=cfg, tag_bits=tag_bits)
        self._layer = add_layer_layout(cfg).const(layer)
        members = self.unit.signature.members
        super().__init__({"i": members["i"], "o": members["o"]})

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self.unit
        wiring.connect(m, wiring.flipped(self.i), unit.i)
        wiring.connect(m, unit.o, wiring.flipped(self.o))
        m.d.comb += unit.layer.eq(self._layer)
        return m


def _elements(rng, n, v, is_signed, extremes):
    """(n, v) elements of type s{A+1} or u{A}; the first rows hold the type's extremes."""
    tt = C.TensorType(True, A + 1) if is_signed else C.TensorType(False, A)
    x = rng.integers(tt.lo, tt.hi + 1, (n, v))
    if extremes:
        for r in range(min(4, n)):
            x[r] = [(tt.lo, tt.hi, 0, 1)[(r + i) % 4] for i in range(v)]
    return x


def _raw(x, cfg):
    """Elements as act-buffer lanes: two's complement in lane_bits bits."""
    return (np.asarray(x, np.int64) & ((1 << lane_bits(cfg)) - 1)).tolist()


def run_add(cfg, a, b, layer, *, seed=0, gap=0.3, stall=0.3, max_cycles=None):
    tag_bits = 7
    payloads = [{"a": _raw(ra, cfg), "b": _raw(rb, cfg), "tag": n % 128}
                for n, (ra, rb) in enumerate(zip(a, b, strict=True))]
    got, _ = run_stream(_AddTop(cfg, layer, tag_bits), payloads, len(payloads), seed=seed,
                        gap=gap, stall=stall, max_cycles=max_cycles)
    assert [g["tag"] for g in got] == [p["tag"] for p in payloads]
    return np.array([g["value"] for g in got], np.int64).reshape(a.shape)


def _expected_add(a, b, layer):
    node = {"mult": (layer["mult_a"], layer["mult_b"]),
            "shift": (layer["shift_a"], layer["shift_b"]), "relu": bool(layer["relu"])}
    return golden.add(a, b, node, A)


ADD_CASES = {
    # ResNet block: signed branch + unsigned identity, typical scales, ReLU
    "block": dict(mult_a=C.quantize_multiplier(0.8)[0], shift_a=C.quantize_multiplier(0.8)[1],
                  signed_a=1, mult_b=C.quantize_multiplier(1.3)[0],
                  shift_b=C.quantize_multiplier(1.3)[1], signed_b=0, relu=1),
    # largest multiplier without shift on one side, zero multiplier on the other, no ReLU
    "saturate": dict(mult_a=C.MULT_MAX, shift_a=0, signed_a=1, mult_b=0, shift_b=0,
                     signed_b=1, relu=0),
    # the largest shift: both terms round to 0 (or stay 0)
    "shift47": dict(mult_a=C.MULT_MAX, shift_a=C.SHIFT_MAX, signed_a=1, mult_b=C.MULT_MAX,
                    shift_b=C.SHIFT_MAX, signed_b=0, relu=0),
    # shifts around the product width (act_bits + 17), where the shifter is cut short
    "wide_shift": dict(mult_a=C.MULT_MAX, shift_a=A + 16, signed_a=1, mult_b=40000,
                       shift_b=A + 18, signed_b=1, relu=0),
    # both unsigned (a downsample-free block whose branch had ReLU), half steps to round
    "halves": dict(mult_a=1, shift_a=1, signed_a=0, mult_b=3, shift_b=2, signed_b=0, relu=1),
}


@pytest.mark.parametrize("case", sorted(ADD_CASES))
def test_add_unit_matches_golden(case):
    layer = ADD_CASES[case]
    rng = np.random.default_rng(len(case))
    n = 120
    a = _elements(rng, n, CFG.vec_len, layer["signed_a"], True)
    b = _elements(rng, n, CFG.vec_len, layer["signed_b"], True)
    got = run_add(CFG, a, b, layer, seed=len(case))
    np.testing.assert_array_equal(got, _expected_add(a, b, layer))


def test_add_unit_random_scales():
    """Several random (mult, shift) pairs with shifts where results are neither 0 nor
    saturated, on the pynq-z2 preset's 16 lanes."""
    cfg = preset("pynq-z2")
    rng = np.random.default_rng(7)
    for trial in range(3):
        layer = dict(mult_a=int(rng.integers(0, C.MULT_MAX + 1)),
                     shift_a=int(rng.integers(14, 19)), signed_a=int(rng.integers(0, 2)),
                     mult_b=int(rng.integers(0, C.MULT_MAX + 1)),
                     shift_b=int(rng.integers(14, 19)), signed_b=int(rng.integers(0, 2)),
                     relu=trial % 2)
        a = _elements(rng, 40, cfg.vec_len, layer["signed_a"], trial == 0)
        b = _elements(rng, 40, cfg.vec_len, layer["signed_b"], trial == 0)
        got = run_add(cfg, a, b, layer, seed=trial, gap=0.2, stall=0.2)
        np.testing.assert_array_equal(got, _expected_add(a, b, layer))


def test_add_unit_latency_and_throughput():
    layer = ADD_CASES["block"]
    rng = np.random.default_rng(3)
    a = _elements(rng, 50, CFG.vec_len, 1, True)
    b = _elements(rng, 50, CFG.vec_len, 0, True)
    assert AddUnit.LATENCY == 3 and AddUnit.latency(CFG) == 3 and AddUnit.groups(CFG) == 1
    # One vector per cycle: the whole stream drains in n + latency cycles (+1 to sample).
    got = run_add(CFG, a, b, layer, gap=0.0, stall=0.0, max_cycles=50 + AddUnit.LATENCY + 2)
    np.testing.assert_array_equal(got, _expected_add(a, b, layer))


#: 32 lanes, requantized 16 a cycle (``add_lanes``): a vector in two groups.
WIDE = CFG.replace(pot_cols=32, dsp_cols=32)


@pytest.mark.parametrize("case", sorted(ADD_CASES))
def test_grouped_add_unit_matches_golden(case):
    """Lanes in groups: every case, with gaps and stalls that fall between a vector's
    groups."""
    assert WIDE.add_lanes == 16 and AddUnit.groups(WIDE) == 2
    layer = ADD_CASES[case]
    rng = np.random.default_rng(100 + len(case))
    a = _elements(rng, 60, WIDE.vec_len, layer["signed_a"], True)
    b = _elements(rng, 60, WIDE.vec_len, layer["signed_b"], True)
    got = run_add(WIDE, a, b, layer, seed=len(case), gap=0.4, stall=0.4)
    np.testing.assert_array_equal(got, _expected_add(a, b, layer))


def test_grouped_add_unit_on_zc706():
    """zc706's 64 lanes in four groups of 16, random scales."""
    cfg = preset("zc706")
    assert AddUnit.groups(cfg) == 4 and AddUnit.latency(cfg) == AddUnit.LATENCY + 1
    rng = np.random.default_rng(11)
    layer = dict(mult_a=int(rng.integers(0, C.MULT_MAX + 1)), shift_a=16, signed_a=1,
                 mult_b=int(rng.integers(0, C.MULT_MAX + 1)), shift_b=17, signed_b=0, relu=1)
    a = _elements(rng, 24, cfg.vec_len, 1, True)
    b = _elements(rng, 24, cfg.vec_len, 0, True)
    got = run_add(cfg, a, b, layer, seed=5, gap=0.3, stall=0.3)
    np.testing.assert_array_equal(got, _expected_add(a, b, layer))


def test_add_unit_with_fewer_lanes_than_the_bus_brings():
    """``adder_lanes`` below 16: a 32-lane vector in eight groups of four, three of the add
    cases (signed and unsigned inputs, saturation), with gaps and stalls."""
    cfg = WIDE.replace(adder_lanes=4)
    assert cfg.add_lanes == 4 and AddUnit.groups(cfg) == 8
    rng = np.random.default_rng(21)
    for case in ("block", "saturate", "halves"):
        layer = ADD_CASES[case]
        a = _elements(rng, 20, cfg.vec_len, layer["signed_a"], True)
        b = _elements(rng, 20, cfg.vec_len, layer["signed_b"], True)
        got = run_add(cfg, a, b, layer, seed=3, gap=0.3, stall=0.3)
        np.testing.assert_array_equal(got, _expected_add(a, b, layer))


@pytest.mark.parametrize("slack", [0, -1])
def test_grouped_add_unit_throughput(slack):
    """A vector every two cycles: n vectors drain in 2 n + latency cycles; one cycle fewer
    is not enough."""
    layer = ADD_CASES["block"]
    rng = np.random.default_rng(4)
    n = 30
    a = _elements(rng, n, WIDE.vec_len, 1, True)
    b = _elements(rng, n, WIDE.vec_len, 0, True)
    limit = 2 * n + AddUnit.latency(WIDE) + 1 + slack     # cycles < limit
    if slack:
        with pytest.raises(AssertionError):
            run_add(WIDE, a, b, layer, gap=0.0, stall=0.0, max_cycles=limit)
    else:
        got = run_add(WIDE, a, b, layer, gap=0.0, stall=0.0, max_cycles=limit)
        np.testing.assert_array_equal(got, _expected_add(a, b, layer))


# ---- pools ----------------------------------------------------------------------------------


def _words(x, cfg):
    """Act-buffer words of a (C, H, W) map: word (y * W + x) * chunks + chunk."""
    c, h, w = x.shape
    v, lb = cfg.vec_len, lane_bits(cfg)
    chunks = -(-c // v)
    words = []
    for y in range(h):
        for xx in range(w):
            for ch in range(chunks):
                lanes = [int(x[ch * v + i, y, xx]) if ch * v + i < c else 0 for i in range(v)]
                words.append(sum(e << (lb * i) for i, e in enumerate(lanes)))
    return words


def run_pool(unit, cfg, x, layers, *, seed=0, stall=0.3):
    """Load ``x`` into a buffer read by ``unit``, run each layer in turn with random output
    backpressure; per run return the results in arrival order and the cycles to ``done``."""
    m = Module()
    m.submodules.unit = unit
    m.submodules.mem = mem = Memory(shape=len(unit.rd.data), depth=cfg.act_buf_depth,
                                    init=_words(x, cfg))
    wiring.connect(m, unit.rd, mem.read_port())
    rng = np.random.default_rng(seed)
    runs = []

    async def bench(ctx):
        for layer in layers:
            ctx.set(unit.layer, layer)
            ctx.set(unit.start, 1)
            await ctx.tick()
            ctx.set(unit.start, 0)
            out, cycles, held = [], 0, None
            while True:
                ready = bool(rng.random() >= stall)
                ctx.set(unit.o.ready, ready)
                _, _, valid, payload, done, busy = await ctx.tick().sample(
                    unit.o.valid, unit.o.payload, unit.done, unit.busy)
                cycles += 1
                assert busy, "busy dropped before done"
                if held is not None:
                    assert valid and payload.as_value().value == held, "o changed while stalled"
                held = payload.as_value().value if valid and not ready else None
                if valid and ready:
                    out.append(payload)
                if done:
                    break
                assert cycles < 100_000, "the pool never finished"
            assert not ctx.get(unit.busy)
            assert not ctx.get(unit.o.valid)
            runs.append((out, cycles))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return runs


def _lanes(payload, v):
    return [int(payload.value[i]) for i in range(v)]


def _maxpool_layer(x, k, s, p, chunks):
    _, h, w = x.shape
    return {"height": h, "width": w, "chunks": chunks, "row_stride": w * chunks,
            "out_h": (h + 2 * p - k) // s + 1, "out_w": (w + 2 * p - k) // s + 1,
            "kernel_h": k, "kernel_w": k, "stride": s, "pad_top": p, "pad_left": p}


def _check_maxpool(x, k, s, p, out, cfg=CFG):
    c = x.shape[0]
    v = cfg.vec_len
    chunks = -(-c // v)
    layer = _maxpool_layer(x, k, s, p, chunks)
    ho, wo = layer["out_h"], layer["out_w"]
    # Pixel-major, chunk-minor order, every (pixel, chunk) once.
    assert [(int(q.pixel), int(q.chunk)) for q in out] == \
        [(pix, ch) for pix in range(ho * wo) for ch in range(chunks)]
    got = np.zeros((chunks * v, ho, wo), np.int64)
    for q in out:
        pix, ch = int(q.pixel), int(q.chunk)
        got[ch * v:(ch + 1) * v, pix // wo, pix % wo] = _lanes(q, v)
    np.testing.assert_array_equal(got[c:], 0)    # lanes beyond C hold 0 in, 0 out
    np.testing.assert_array_equal(got[None, :c], golden.maxpool(x[None], k, s, p))


@pytest.mark.parametrize(("c", "h", "w", "pools", "hi"), [
    (6, 9, 7, [(3, 2, 1), (2, 1, 0)], (1 << A) - 1),   # ResNet 3x3/2/1, odd sizes; then 2x2/1
    (5, 4, 5, [(3, 1, 1), (1, 2, 0)], 255),             # full 8-bit lanes, 1x1 stride 2
    (4, 1, 3, [(3, 2, 1), (2, 2, 1)], (1 << A) - 1),    # one row: padding above and below
])
def test_maxpool_matches_golden(c, h, w, pools, hi):
    rng = np.random.default_rng(c * 100 + h * 10 + w)
    x = rng.integers(0, hi + 1, (c, h, w))
    x[:, 0, 0] = hi              # extremes: the largest value and all-zero windows
    x[:, -1, :] = 0
    chunks = -(-c // CFG.vec_len)
    layers = [_maxpool_layer(x, k, s, p, chunks) for k, s, p in pools]
    runs = run_pool(MaxPool(cfg=CFG), CFG, x, layers, seed=c)
    for (k, s, p), (out, _) in zip(pools, runs, strict=True):
        _check_maxpool(x, k, s, p, out)


def test_maxpool_row_tiles_match_golden():
    """Bands of output rows from the input rows they need (padding only at the map's own
    top and bottom) give the whole pool's rows."""
    rng = np.random.default_rng(5)
    c, h, w, k, s, p = 5, 9, 7, 3, 2, 1
    x = rng.integers(0, 1 << A, (c, h, w))
    expected = golden.maxpool(x[None], k, s, p)[0]
    ho, wo = expected.shape[1:]
    chunks = -(-c // CFG.vec_len)
    for row0 in range(0, ho, 2):
        tile = row_tile(row0, min(2, ho - row0), in_h=h, kernel=k, stride=s, pad=p)
        band = x[:, tile.in_row0:tile.in_row0 + tile.in_rows]
        layer = {**_maxpool_layer(band, k, s, p, chunks), "out_h": tile.out_rows,
                 "pad_top": tile.pad_top}
        (out, _), = run_pool(MaxPool(cfg=CFG), CFG, band, [layer], seed=row0)
        got = np.zeros((chunks * CFG.vec_len, tile.out_rows, wo), np.int64)
        for q in out:
            pix, ch = int(q.pixel), int(q.chunk)
            got[ch * CFG.vec_len:(ch + 1) * CFG.vec_len, pix // wo, pix % wo] = \
                _lanes(q, CFG.vec_len)
        np.testing.assert_array_equal(got[:c], expected[:, row0:row0 + tile.out_rows])


def test_maxpool_cycles():
    """One window element per cycle without backpressure; done a fixed few cycles after."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 1 << A, (6, 7, 6))
    layer = _maxpool_layer(x, 3, 2, 1, 2)
    (out, cycles), = run_pool(MaxPool(cfg=CFG), CFG, x, [layer], stall=0.0)
    _check_maxpool(x, 3, 2, 1, out)
    reads = layer["out_h"] * layer["out_w"] * 2 * 9
    assert cycles == reads + 3


def _avg_layer(x, mult, shift, cfg=CFG):
    c, h, w = x.shape
    return {"pixels": h * w, "chunks": -(-c // cfg.vec_len), "mult": mult, "shift": shift}


def _check_avgpool(x, layer, out, cfg=CFG):
    c = x.shape[0]
    v, chunks = cfg.vec_len, layer["chunks"]
    assert [int(q.chunk) for q in out] == list(range(chunks))
    got = np.array([_lanes(q, v) for q in out], np.int64).reshape(-1)
    np.testing.assert_array_equal(got[c:], 0)
    expected = golden.avgpool(x[None], layer["mult"], layer["shift"], A)
    np.testing.assert_array_equal(got[:c], expected.reshape(-1))


@pytest.mark.parametrize(("c", "h", "w", "stall"), [
    (7, 5, 3, 0.3), (9, 7, 7, 0.3),
    (4, 1, 1, 0.3), (23, 1, 2, 0.6),   # maps smaller than a vector: requantization sets the pace
])
def test_avgpool_matches_golden(c, h, w, stall):
    rng = np.random.default_rng(c * 100 + h * 10 + w)
    x = rng.integers(0, 1 << A, (c, h, w))
    x[0] = (1 << A) - 1          # a channel at the largest sum
    x[1 % c] = 0
    typical = C.quantize_multiplier(1.0 / (h * w))
    scales = [typical, (C.MULT_MAX, 0), (0, 5), (C.MULT_MAX, C.SHIFT_MAX), (1, 1),
              (C.quantize_multiplier(2.7 / (h * w)))]
    layers = [_avg_layer(x, mult, shift) for mult, shift in scales]
    runs = run_pool(AvgPool(cfg=CFG), CFG, x, layers, seed=c, stall=stall)
    for layer, (out, _) in zip(layers, runs, strict=True):
        _check_avgpool(x, layer, out)


def test_avgpool_cycles():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 1 << A, (10, 3, 5))
    layer = _avg_layer(x, *C.quantize_multiplier(1 / 15))
    (out, cycles), = run_pool(AvgPool(cfg=CFG), CFG, x, [layer], stall=0.0)
    _check_avgpool(x, layer, out)
    assert cycles == layer["chunks"] * layer["pixels"] + CFG.vec_len + PostProc.LATENCY + 3


def test_pools_on_preset():
    """The pynq-z2 preset (16 lanes, 4096-word buffer): ResNet-18's 3x3/2/1 max-pool and a
    global average pool over a 7x7 map."""
    cfg = preset("pynq-z2")
    rng = np.random.default_rng(5)
    x = rng.integers(0, 1 << cfg.act_bits, (20, 7, 7))
    chunks = -(-20 // cfg.vec_len)
    (out, _), = run_pool(MaxPool(cfg=cfg), cfg, x, [_maxpool_layer(x, 3, 2, 1, chunks)])
    _check_maxpool(x, 3, 2, 1, out, cfg)
    layer = _avg_layer(x, *C.quantize_multiplier(1 / 49), cfg)
    (out, _), = run_pool(AvgPool(cfg=cfg), cfg, x, [layer])
    _check_avgpool(x, layer, out, cfg)


@pytest.mark.slow
def test_vector_units_long_random():
    """Many random layers: shapes, pool parameters, scales and element types."""
    rng = np.random.default_rng(11)
    for trial in range(40):
        c, h, w = (int(n) for n in rng.integers(1, [3 * CFG.vec_len, 12, 12]))
        k, s = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        p = int(rng.integers(0, 2)) if k > 1 else 0
        if (h + 2 * p - k) < 0 or (w + 2 * p - k) < 0:
            continue
        x = rng.integers(0, 1 << A, (c, h, w))
        chunks = -(-c // CFG.vec_len)
        (out, _), = run_pool(MaxPool(cfg=CFG), CFG, x, [_maxpool_layer(x, k, s, p, chunks)],
                             seed=trial)
        _check_maxpool(x, k, s, p, out)
        layer = _avg_layer(x, int(rng.integers(0, C.MULT_MAX + 1)), int(rng.integers(0, 24)))
        (out, _), = run_pool(AvgPool(cfg=CFG), CFG, x, [layer], seed=trial)
        _check_avgpool(x, layer, out)
        def shift():   # mostly where results are neither 0 nor saturated
            return int(rng.integers(12, 20) if rng.random() < 0.7 else rng.integers(0, 48))

        add = dict(mult_a=int(rng.integers(0, C.MULT_MAX + 1)), shift_a=shift(),
                   signed_a=int(rng.integers(0, 2)), mult_b=int(rng.integers(0, C.MULT_MAX + 1)),
                   shift_b=shift(), signed_b=int(rng.integers(0, 2)), relu=int(rng.integers(0, 2)))
        a = _elements(rng, 200, CFG.vec_len, add["signed_a"], trial < 3)
        b = _elements(rng, 200, CFG.vec_len, add["signed_b"], trial < 3)
        got = run_add(CFG, a, b, add, seed=trial, gap=float(rng.random() * 0.5),
                      stall=float(rng.random() * 0.5))
        np.testing.assert_array_equal(got, _expected_add(a, b, add))


# ---- arguments ------------------------------------------------------------------------------


def test_units_reject_bad_arguments():
    with pytest.raises(TypeError, match=r"^AddUnit configuration must be a HwConfig, not 3$"):
        AddUnit(cfg=3)
    with pytest.raises(TypeError, match=r"^AddUnit tag_bits must be a non-negative integer, "
                                        r"not -1$"):
        AddUnit(cfg=CFG, tag_bits=-1)
    with pytest.raises(TypeError, match=r"^MaxPool configuration must be a HwConfig, not None$"):
        MaxPool(cfg=None)
    with pytest.raises(TypeError, match=r"^AvgPool configuration must be a HwConfig, not 'x'$"):
        AvgPool(cfg="x")
    # The accumulator is as wide as the sum of a full act buffer needs (255 x 65536: 24 bits,
    # with the sign 25), even where the dot products need less.
    tiny = CFG.replace(max_reduction=1, act_buf_depth=1 << 16)
    assert tiny.acc_bits == 25
    AvgPool(cfg=tiny)


def test_lane_bits():
    assert lane_bits(preset("zc706")) == 8
    assert lane_bits(preset("pynq-z2")) == 5          # split_input: nibbles, s5 pre-add room
    assert lane_bits(CFG.replace(input_bits=4)) == 5   # room for s5 pre-add values
