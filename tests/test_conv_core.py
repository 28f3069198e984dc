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
from rtl.postproc import PostMode
from rtl.vector_units import lane_bits

CFG = HwConfig(name="conv-test", part="xc7z020clg400-1", clock_mhz=100.0, pot_rows=4,
               pot_cols=4, dsp_rows=4, dsp_cols=4, max_reduction=7 * 7 * 8, max_channels=64,
               max_spatial=32, act_buf_depth=1024, weight_buf_depth=128, out_buf_depth=256)


class Harness(Elaboratable):
    """ConvCore with an act buffer in front, loaded through a plain write port."""

    def __init__(self) -> None:
        self.core = ConvCore(cfg=CFG)
        self.act_we = Signal()
        self.act_waddr = Signal(range(CFG.act_buf_depth))
        self.act_wdata = Signal(CFG.vec_len * lane_bits(CFG))

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = self.core
        m.submodules.act = mem = Memory(shape=len(self.act_wdata), depth=CFG.act_buf_depth,
                                        init=[])
        wr = mem.write_port()
        m.d.comb += [wr.en.eq(self.act_we), wr.addr.eq(self.act_waddr),
                     wr.data.eq(self.act_wdata)]
        wiring.connect(m, self.core.rd, mem.read_port())
        return m


def run_core(x, schemes, params, node, *, seed=0, stall=0.0):
    """Load buffers the way the firmware will, run every pass, gather the outputs."""
    w, bias, mult, shift = params["weight"], params["bias"], params["mult"], params["shift"]
    cout, cin, k, _ = w.shape
    _, _, h, wd = x.shape
    v = CFG.vec_len
    chunks = -(-cin // v)
    ho = (h + 2 * node["padding"] - k) // node["stride"] + 1
    wo = (wd + 2 * node["padding"] - k) // node["stride"] + 1
    act_words = []
    for y in range(h):
        for xx in range(wd):
            for c in range(chunks):
                vec = [int(x[0, c * v + i, y, xx]) if c * v + i < cin else 0 for i in range(v)]
                lb = lane_bits(CFG)
                act_words.append(sum(a << (lb * i) for i, a in enumerate(vec)))
    passes = plan_passes(schemes, CFG)
    out = np.full((cout, ho, wo), -999, np.int64)
    harness = Harness()
    dut = harness.core
    rng = np.random.default_rng(seed)
    mode = PostMode.RELU if node["relu"] else PostMode.SIGNED

    async def bench(ctx):
        for a, word in enumerate(act_words):
            ctx.set(harness.act_we, 1)
            ctx.set(harness.act_waddr, a)
            ctx.set(harness.act_wdata, word)
            await ctx.tick()
        ctx.set(harness.act_we, 0)
        ctx.set(dut.layer, {"height": h, "width": wd, "chunks": chunks,
                            "row_stride": wd * chunks, "out_h": ho, "out_w": wo, "kernel": k,
                            "stride": node["stride"], "pad": node["padding"], "mode": mode,
                            "fixed8": [0] * (CFG.dsp_rows // 2)})
        for plan in passes:
            for t, row in enumerate(weight_rows(w, schemes, plan, CFG)):
                ctx.set(dut.w_we, 1)
                ctx.set(dut.w_waddr, t)
                ctx.set(dut.w_wdata, row)
                await ctx.tick()
            ctx.set(dut.w_we, 0)
            for j, slot in enumerate(plan.slots(bias, mult, shift)):
                ctx.set(dut.slot_we, 1)
                ctx.set(dut.slot_waddr, j)
                ctx.set(dut.slot_wdata, {"valid": 0, "channel": 0, "bias": 0, "mult": 0,
                                         "shift": 0} if slot is None else
                        {"valid": 1, "channel": slot.channel, "bias": slot.bias,
                         "mult": slot.mult, "shift": slot.shift})
                await ctx.tick()
            ctx.set(dut.slot_we, 0)
            ctx.set(dut.layer.fixed8, [int(f) for f in plan.fixed8])
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 0
            while True:
                ready = bool(rng.random() >= stall)
                ctx.set(dut.o.ready, ready)
                _, _, valid, payload, done = await ctx.tick().sample(dut.o.valid, dut.o.payload,
                                                                     dut.done)
                if valid and ready:
                    pix, ch = int(payload.pixel), int(payload.channel)
                    assert out[ch, pix // wo, pix % wo] == -999, "result written twice"
                    out[ch, pix // wo, pix % wo] = int(payload.value)
                if done:
                    break
                cycles += 1
                assert cycles < 200 * ho * wo * k * k * chunks + 1000, "pass never finished"
            assert not ctx.get(dut.busy)

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
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
