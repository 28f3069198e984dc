"""Conv datapath (one or more passes over both arrays) against the golden conv layer."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from firmware.conv import plan_passes, weight_rows
from quant import golden
from quant.random_model import random_conv_layer
from rtl.config import HwConfig
from rtl.conv_core import ConvCore
from rtl.dsp_array import dsp_latency
from rtl.interface.descriptor import PostMode
from rtl.interface.stem import Fold, fold_input, fold_weight
from rtl.interface.tiling import row_tile
from rtl.vector_units import lane_bits

CFG = HwConfig(name="conv-test", part="xc7z020clg400-1", clock_mhz=100.0, pot_rows=4,
               pot_cols=4, dsp_rows=4, dsp_cols=4, max_reduction=7 * 7 * 8, max_channels=64,
               max_spatial=32, act_buf_depth=1024, weight_buf_depth=128, out_buf_depth=256,
               result_lanes=4)


class Harness(Elaboratable):
    """ConvCore with an act buffer in front, loaded through a plain write port."""

    def __init__(self, cfg: HwConfig = CFG, garbage=None) -> None:
        self.cfg = cfg
        self.garbage = garbage or []
        self.core = ConvCore(cfg=cfg)
        self.act_we = Signal()
        self.act_waddr = Signal(range(CFG.act_buf_depth))
        self.act_wdata = Signal(CFG.vec_len * lane_bits(CFG))

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = self.core
        m.submodules.act = mem = Memory(shape=len(self.act_wdata), depth=CFG.act_buf_depth,
                                        init=self.garbage)
        wr = mem.write_port()
        m.d.comb += [wr.en.eq(self.act_we), wr.addr.eq(self.act_waddr),
                     wr.data.eq(self.act_wdata)]
        wiring.connect(m, self.core.rd, mem.read_port())
        return m


def _act_words(x, rows, cfg):
    """Act-buffer words of input rows ``rows`` of x (1, C, H, W)."""
    _, cin, _, wd = x.shape
    v, lb = cfg.vec_len, lane_bits(cfg)
    words = []
    for y in rows:
        for xx in range(wd):
            for c in range(-(-cin // v)):
                vec = [int(x[0, c * v + i, y, xx]) if c * v + i < cin else 0 for i in range(v)]
                words.append(sum(a << (lb * i) for i, a in enumerate(vec)))
    return words


def run_core(x, schemes, params, node, *, seed=0, stall=0.0, tile=None, cfg=CFG,
             pass_cycles=None, owed=None, stream=0, mode=None):
    """Load buffers the way the engine does, run every pass, gather the outputs.

    ``stream``: the input rows are written while the first pass runs, a vector every
    ``stream`` cycles, ``rows`` counting the complete ones (as the engine streams a band in),
    over an act buffer that holds random words before (a read ahead of its row is wrong).

    Passes alternate between the two weight banks, and pass ``p + 1`` is written into the
    idle bank while pass ``p`` runs. ``tile`` (a ``rtl.interface.tiling.RowTile``) runs only that
    band of output rows from its input rows; the result then holds the band. Each pass's
    cycles from ``start`` to ``done`` are appended to ``pass_cycles`` when given, and the core's
    count of owed pixels every cycle to ``owed``. ``mode``: the layer's ``PostMode`` (by
    default RELU or SIGNED, as ``node["relu"]`` says).
    """
    w, bias, mult, shift = params["weight"], params["bias"], params["mult"], params["shift"]
    cout, cin, kh, kw = w.shape
    _, _, h, wd = x.shape
    pad, stride = node["padding"], node["stride"]
    chunks = -(-cin // cfg.vec_len)
    if tile is None:
        tile = row_tile(0, (h + 2 * pad - kh) // stride + 1, in_h=h, kernel=kh, stride=stride,
                        pad=pad)
    ho, wo = tile.out_rows, (wd + 2 * pad - kw) // stride + 1
    act_words = _act_words(x, range(tile.in_row0, tile.in_row0 + tile.in_rows), cfg)
    passes = plan_passes(schemes, cfg)
    out = np.full((cout, ho, wo), -999, np.int64)
    rng = np.random.default_rng(seed)
    word_max = 1 << (cfg.vec_len * lane_bits(cfg))
    garbage = ([int(g) for g in rng.integers(0, word_max, cfg.act_buf_depth)] if stream
               else None)
    harness = Harness(cfg, garbage)
    dut = harness.core
    if mode is None:
        mode = PostMode.RELU if node["relu"] else PostMode.SIGNED

    def pass_writes(plan, bank):
        """(signal, value) groups, one group per cycle, that load ``plan`` into ``bank``."""
        groups = [[(dut.w_bank, bank), (dut.w_we, 1), (dut.w_waddr, t), (dut.w_wdata, row)]
                  for t, row in enumerate(weight_rows(w, schemes, plan, cfg))]
        for j, slot in enumerate(plan.slots(bias, mult, shift)):
            groups.append([(dut.w_bank, bank), (dut.slot_we, 1), (dut.slot_waddr, j),
                           (dut.slot_wdata, {"valid": 0, "channel": 0, "bias": 0, "mult": 0,
                                             "shift": 0} if slot is None else
                            {"valid": 1, "channel": slot.channel, "bias": slot.bias,
                             "mult": slot.mult, "shift": slot.shift})])
        groups.append([(dut.w_bank, bank), (dut.fixed8_we, 1),
                       (dut.fixed8_wdata, [int(f) for f in plan.fixed8])])
        return groups

    def apply(ctx, group):
        for sig in (dut.w_we, dut.slot_we, dut.fixed8_we):
            ctx.set(sig, 0)
        for sig, value in group:
            ctx.set(sig, value)

    row_words = wd * chunks
    started = []

    async def load(ctx):
        """The act buffer's words, before the passes or (``stream``) beside the first."""
        if stream:
            ctx.set(dut.rows, 0)
            while not started:
                await ctx.tick()
        for a, word in enumerate(act_words):
            ctx.set(harness.act_we, 1)
            ctx.set(harness.act_waddr, a)
            ctx.set(harness.act_wdata, word)
            await ctx.tick()
            ctx.set(harness.act_we, 0)
            if stream and (a + 1) % row_words == 0:
                ctx.set(dut.rows, (a + 1) // row_words)
            for _ in range(max(stream, 1) - 1):
                await ctx.tick()
        if stream:
            ctx.set(dut.rows, (1 << len(dut.rows)) - 1)
        started.append("loaded")

    async def bench(ctx):
        if not stream:
            await load(ctx)
        ctx.set(dut.layer, {"height": tile.in_rows, "width": wd, "chunks": chunks,
                            "row_stride": wd * chunks, "out_h": ho, "out_w": wo, "kernel_h": kh,
                            "kernel_w": kw, "stride": stride, "pad_top": tile.pad_top,
                            "pad_left": pad, "mode": mode})
        for group in pass_writes(passes[0], 0):
            apply(ctx, group)
            await ctx.tick()
        apply(ctx, [])
        for p in range(len(passes)):
            ctx.set(dut.bank, p % 2)
            ctx.set(dut.start, 1)
            started.append(p)
            await ctx.tick()
            ctx.set(dut.start, 0)
            pending = pass_writes(passes[p + 1], (p + 1) % 2) if p + 1 < len(passes) else []
            cycles = 0
            while True:
                apply(ctx, pending.pop(0) if pending else [])
                ready = bool(rng.random() >= stall)
                ctx.set(dut.o.ready, ready)
                _, _, valid, payload, done = await ctx.tick().sample(dut.o.valid, dut.o.payload,
                                                                     dut.done)
                if valid and ready:
                    pix = int(payload.pixel)
                    lanes = [int(payload.channel[i]) % cfg.vec_len
                             for i in range(cfg.result_lanes) if payload.valid[i]]
                    assert lanes and len(set(lanes)) == len(lanes), "lanes collide in a beat"
                    assert mode != PostMode.LOGITS or len(lanes) == 1, "logits: one a beat"
                    src = {int(payload.channel[i]) % cfg.vec_len: i
                           for i in range(cfg.result_lanes) if payload.valid[i]}
                    assert [int(payload.hit) >> j & 1 for j in range(cfg.vec_len)] == \
                        [int(j in src) for j in range(cfg.vec_len)], "hit"
                    assert all(int(payload.src[j]) == i for j, i in src.items()), "src"
                    for i in range(cfg.result_lanes):
                        if payload.valid[i]:
                            ch = int(payload.channel[i])
                            assert out[ch, pix // wo, pix % wo] == -999, "written twice"
                            out[ch, pix // wo, pix % wo] = int(payload.value[i])
                cycles += 1
                if owed is not None:
                    owed.append(ctx.get(dut._owed))
                if done:
                    break
                assert cycles < 200 * ho * wo * kh * kw * chunks + 1000, "pass never finished"
            if pass_cycles is not None:
                pass_cycles.append(cycles)
            while pending:                       # a pass shorter than the next one's load
                apply(ctx, pending.pop(0))
                await ctx.tick()
            apply(ctx, [])
            assert not ctx.get(dut.busy)

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if stream:
        sim.add_testbench(load, background=True)
    sim.run()
    assert "loaded" in started
    return out[None]


@pytest.mark.parametrize(("cin", "cout", "k", "s", "p", "size", "ratio", "relu", "bits"), [
    (6, 11, 3, 1, 1, 5, (60, 35, 5), True, 4),     # channels not multiples of the shapes
    (5, 9, 3, 2, 1, 7, (50, 30, 20), False, 4),    # stride 2, signed output, several Fixed-8
    (8, 6, 1, 2, 0, 6, (0, 50, 50), True, 4),      # 1x1 downsample, no PoT filters
    (3, 7, 7, 2, 3, 9, (60, 35, 5), True, 8),      # first layer: 7x7/2, 8-bit pixels
    (4, 13, 3, 1, 1, 3, (100, 0, 0), True, 4),     # PoT only: DSP array idle in every pass
])
def test_conv_core_matches_golden(cin, cout, k, s, p, size, ratio, relu, bits):
    rng = np.random.default_rng(cin * 100 + cout)
    x, schemes, params, node = random_conv_layer(
        rng, cin=cin, cout=cout, kernel=k, stride=s, pad=p, size=size, ratio=ratio, relu=relu,
        in_bits=bits, act_bits=CFG.act_bits)
    expected = golden.conv(x, node, params, CFG.act_bits)
    got = run_core(x, schemes, params, node, seed=cout, stall=0.3)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("unroll", [False, True])
def test_conv_core_folded_stem_matches_golden(unroll):
    """The stem folded by space-to-depth (4x4 on 12 channels) and, unrolled, a 4x1 kernel
    on 48 channels (``rtl.interface.stem``): the golden model's results of the 7x7/2 layer."""
    rng = np.random.default_rng(7 + unroll)
    x, schemes, params, node = random_conv_layer(
        rng, cin=3, cout=9, kernel=7, stride=2, pad=3, size=9, ratio=(60, 35, 5), relu=True,
        in_bits=8, act_bits=CFG.act_bits)
    expected = golden.conv(x, node, params, CFG.act_bits)
    fold = Fold(7, 3, x.shape[1:], unroll)
    folded = {**params, "weight": fold_weight(params["weight"], fold)}
    assert folded["weight"].shape[2:] == fold.folded_kernel == ((4, 1) if unroll else (4, 4))
    got = run_core(fold_input(x[0], fold)[None], schemes, folded,
                   {**node, "stride": 1, "padding": 0}, seed=3, stall=0.2)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("k", "s", "p", "size", "rows"), [
    (3, 1, 1, 7, 2),      # top tile pads above, middle tiles none, bottom tile below
    (7, 2, 3, 11, 2),     # the stem: 7x7/2 with padding 3, partly padded middle tiles
    (3, 2, 1, 8, 3),      # stride 2 on an even map: the last input row is never needed
])
def test_conv_core_row_tiles_match_golden(k, s, p, size, rows):
    """Bands of output rows from the input rows they need give the whole layer's rows."""
    rng = np.random.default_rng(size * 10 + k)
    x, schemes, params, node = random_conv_layer(
        rng, cin=6, cout=10, kernel=k, stride=s, pad=p, size=size, ratio=(60, 35, 5),
        relu=True, in_bits=4, act_bits=CFG.act_bits)
    expected = golden.conv(x, node, params, CFG.act_bits)
    ho = expected.shape[2]
    for row0 in range(0, ho, rows):
        tile = row_tile(row0, min(rows, ho - row0), in_h=size, kernel=k, stride=s, pad=p)
        got = run_core(x, schemes, params, node, seed=row0, stall=0.2, tile=tile)
        np.testing.assert_array_equal(got, expected[:, :, row0:row0 + tile.out_rows],
                                      f"tile {tile}")


@pytest.mark.parametrize(("k", "s", "p", "size", "rows", "every"), [
    (3, 1, 1, 6, None, 3),    # slower than the core: it waits for each output row's rows
    (3, 2, 1, 8, 3, 1),       # a stride-2 tile (the last input row is never needed)
    (1, 2, 0, 6, None, 2),    # a 1x1 downsample
    (7, 2, 3, 9, 2, 4),       # the stem's shape, a middle tile
])
def test_conv_core_streamed_band_matches_golden(k, s, p, size, rows, every):
    """The input band streams in while the first pass runs (``rows``, as the engine loads
    it): no window reads a row before it is in, and the results are the golden model's."""
    rng = np.random.default_rng(size * 10 + k + every)
    x, schemes, params, node = random_conv_layer(
        rng, cin=6, cout=10, kernel=k, stride=s, pad=p, size=size, ratio=(60, 35, 5),
        relu=True, in_bits=4, act_bits=CFG.act_bits)
    expected = golden.conv(x, node, params, CFG.act_bits)
    ho = expected.shape[2]
    row0 = 0 if rows is None else min(rows, ho - 1)
    n = ho - row0 if rows is None else min(rows, ho - row0)
    tile = row_tile(row0, n, in_h=size, kernel=k, stride=s, pad=p)
    got = run_core(x, schemes, params, node, seed=k, stall=0.2, tile=tile, stream=every)
    np.testing.assert_array_equal(got, expected[:, :, row0:row0 + tile.out_rows])


@pytest.mark.parametrize("lanes", [1, 2])
def test_result_lanes(lanes):
    """Fewer requantization lanes; with 4-element vectors and 8 slots, groups whose slots
    share an output-buffer lane (and so go one slot a beat) are frequent."""
    cfg = CFG.replace(name=f"conv-lanes{lanes}", result_lanes=lanes)
    rng = np.random.default_rng(lanes)
    x, schemes, params, node = random_conv_layer(
        rng, cin=6, cout=19, kernel=3, stride=1, pad=1, size=4, ratio=(60, 35, 5), relu=True,
        in_bits=4, act_bits=cfg.act_bits)
    expected = golden.conv(x, node, params, cfg.act_bits)
    got = run_core(x, schemes, params, node, seed=lanes, stall=0.3, cfg=cfg)
    np.testing.assert_array_equal(got, expected)


def test_pass_cycles_follow_the_cycle_model():
    """Two steps a pixel, as many as the result groups: a pass takes as many cycles as the
    cycle model says, a group of slots that share an out-buffer lane (four-element vectors:
    frequent) costing ``result_lanes`` beats a pixel (``rtl.cycle_model.result_beats``)."""
    from rtl.cycle_model import _pass_cycles, result_beats

    rng = np.random.default_rng(7)
    x, schemes, params, node = random_conv_layer(
        rng, cin=8, cout=19, kernel=1, stride=1, pad=0, size=5, ratio=(60, 35, 5), relu=True,
        in_bits=4, act_bits=CFG.act_bits)
    cycles: list[int] = []
    got = run_core(x, schemes, params, node, pass_cycles=cycles)
    np.testing.assert_array_equal(got, golden.conv(x, node, params, CFG.act_bits))
    beats = [result_beats(CFG, [None if s is None else s.channel
                                for s in plan.slots(params["bias"], params["mult"],
                                                    params["shift"])])
             for plan in plan_passes(schemes, CFG)]
    assert max(beats) > CFG.result_groups == CFG.steps(1, 8)     # a shared lane: it stalls
    want = [_pass_cycles(CFG, 25, CFG.steps(1, 8), b) for b in beats]
    assert all(abs(g - w) <= 1 for g, w in zip(cycles, want, strict=True)), (cycles, want)


def test_logits_go_one_slot_a_beat():
    """A logits layer (mode LOGITS; here a 1 x 1 conv, an fc at every pixel) leaves one slot
    a beat, every group ``result_lanes`` beats, with the golden model's logits, in the
    cycles the model gives it (``result_beats(..., logits=True)``)."""
    from rtl.cycle_model import _pass_cycles, result_beats

    rng = np.random.default_rng(11)
    x, schemes, params, node = random_conv_layer(
        rng, cin=8, cout=19, kernel=1, stride=1, pad=0, size=4, ratio=(60, 35, 5), relu=False,
        in_bits=4, act_bits=CFG.act_bits)
    cycles: list[int] = []
    got = run_core(x, schemes, params, node, pass_cycles=cycles, mode=PostMode.LOGITS)
    fc = {**params, "weight": params["weight"].reshape(19, -1)}
    want = np.stack([np.stack([golden.fc(x[:, :, i:i + 1, j:j + 1], fc)[0] for j in range(4)],
                              axis=-1) for i in range(4)], axis=-2)
    np.testing.assert_array_equal(got[0], want)
    assert np.abs(want).max() >= 1 << CFG.act_bits           # beyond an activation's bits
    beats = [result_beats(CFG, [None if s is None else s.channel
                                for s in plan.slots(params["bias"], params["mult"],
                                                    params["shift"])], logits=True)
             for plan in plan_passes(schemes, CFG)]
    assert beats == [CFG.result_groups * CFG.result_lanes] * len(beats)
    expect = [_pass_cycles(CFG, 16, CFG.steps(1, 8), b) for b in beats]
    assert all(abs(g - w) <= 2 for g, w in zip(cycles, expect, strict=True)), (cycles, expect)


def test_owed_pixel_count_stays_within_its_bound():
    """The core counts the pixels issued and not yet sent in a counter only as wide as the
    pipeline can hold (``rtl.conv_core``: stages 1 and 2, the DSP array's stages and the second
    entry of its output buffer, its result register, the serializer). A 1x1 layer of one chunk
    issues a pixel a beat; with the output stalled most of the time the pipeline fills: the
    count reaches its bound and never passes it."""
    rng = np.random.default_rng(11)
    x, schemes, params, node = random_conv_layer(
        rng, cin=CFG.vec_len, cout=9, kernel=1, stride=1, pad=0, size=7, ratio=(60, 35, 5),
        relu=True, in_bits=4, act_bits=CFG.act_bits)
    seen: list[int] = []
    got = run_core(x, schemes, params, node, seed=5, stall=0.9, owed=seen)
    np.testing.assert_array_equal(got, golden.conv(x, node, params, CFG.act_bits))
    bound = 2 + dsp_latency(CFG) + 1 + 2
    assert max(seen) == bound, (max(seen), bound)


@pytest.mark.parametrize("lanes", [4, 16])
def test_weight_banks_conflict_flags(lanes):
    """``group_conflict`` of each bank's groups, found as a pass's slots are written in order,
    equals the definition (two valid slots of a group share ``channel % vec_len``) for
    random passes written into both banks in turn, partial last groups and channels that
    collide often included."""
    from rtl.conv_core import WeightBanks
    cfg = CFG.replace(result_lanes=lanes, max_channels=64)
    rows = 2 * lanes + 3                        # a partial last group
    dut = WeightBanks(cfg=cfg, rows=rows, fixed8_pairs=0)
    groups = -(-rows // lanes)
    rng = np.random.default_rng(lanes)
    v = cfg.vec_len
    checked = []

    async def bench(ctx):
        expected = [[0] * groups, [0] * groups]
        for trial in range(40):
            bank = trial % 2
            spread = int(rng.choice([v, 2 * v, 64]))       # few lanes used: many conflicts
            slots = [(int(rng.integers(0, 2)), int(rng.integers(0, spread)))
                     for _ in range(rows)]
            ctx.set(dut.w_bank, bank)
            for j, (valid, channel) in enumerate(slots):
                ctx.set(dut.slot_we, 1)
                ctx.set(dut.slot_waddr, j)
                ctx.set(dut.slot_wdata, {"valid": valid, "channel": channel, "bias": 0,
                                         "mult": 0, "shift": 0})
                await ctx.tick()
            ctx.set(dut.slot_we, 0)
            await ctx.tick()
            for g in range(groups):
                used = [c % v for ok, c in slots[g * lanes:(g + 1) * lanes] if ok]
                expected[bank][g] = int(len(set(used)) < len(used))
            for b in range(2):
                ctx.set(dut.rd_bank, b)
                got = [ctx.get(dut.group_conflict[g]) for g in range(groups)]
                assert got == expected[b], (trial, b)
            checked.append(sum(expected[bank]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert 0 < sum(checked) < 40 * groups          # both outcomes were seen
