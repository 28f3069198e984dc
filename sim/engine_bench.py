"""cocotb bench for the accelerator: layers run through AXI4-Lite control and an AXI RAM as
DDR, compared bit for bit with the golden model; guard bytes, malformed descriptors, reset
in the middle of a layer. The host side is the firmware's driver over the RTL backend and the
hardware/software interface modules; nothing of the protocol is written here again."""

from __future__ import annotations

import itertools
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster

from firmware.driver import Driver
from firmware.layer import prepare_conv
from firmware.package import BuildPackage
from quant import contract as C
from quant import golden
from quant.random_model import random_conv_layer
from rtl.config import HwConfig
from rtl.cycle_model import DdrTiming, chain_cycles
from rtl.interface.ddr import pack_feature_map, pack_slot, pass_block_words, unpack_feature_map
from rtl.interface.descriptor import (
    Op,
    PostMode,
    descriptor_bytes,
    pack_descriptor,
    split_descriptors,
    unpack_descriptor,
)
from rtl.interface.regmap import ErrorCode, RegisterMap
from rtl.interface.stem import Fold, fold_input, fold_weight
from rtl.interface.tiling import layer_descriptors
from sim.ddr import LatencyAxiRam, weight_port_rams
from sim.rtl_backend import RamBuffer, RtlBackend
from sim.runner import bench_params

PAUSES = {"aw": [1, 0, 0], "w": [0, 1], "b": [1, 0], "ar": [0, 0, 1], "r": [1, 0, 0, 1]}
LITE_PAUSES = {"aw": [0, 1], "w": [1, 0, 0], "b": [0, 1], "ar": [1, 0], "r": [0, 0, 1]}
RAM = 1 << 20
CLOCK_MHZ = 100.0
BASE, SIZE = 0x1000, RAM - 0x2000      # the window; everything outside must stay untouched
GUARD = 256
FILL = 0xC3


class TB:
    """Clock, reset, AXI RAM as DDR and the firmware's driver (``firmware.driver``) over the
    RTL backend: every register access below goes through the driver, by name."""

    def __init__(self, dut) -> None:
        p = bench_params()
        self.dut = dut
        self.cfg = HwConfig.from_json(p["config"])
        regmap = RegisterMap.from_json(p["regmap"])
        self.cases = p["cases"]
        self.vector_cases = p["vector_cases"]
        self.n_random = p["n_random"]
        self.seed = p["seed"]
        self.read_latency = p["read_latency"]
        #: With a tolerance, each case's cycles are checked against the cycle model, on a DDR
        #: without pauses.
        self.model_tolerance = p.get("model_tolerance")
        self.rng = random.Random(p["seed"])
        dut.rst.value = 1
        cocotb.start_soon(Clock(dut.clk, 1e3 / CLOCK_MHZ, unit="ns").start())
        self.ram = LatencyAxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=RAM,
                                 read_latency=p["read_latency"])
        self.lite = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        # The weight masters see the same memory; their read channels pause too.
        self.weight_rams = weight_port_rams(dut, self.ram, self.cfg.weight_ports,
                                            read_latency=p["read_latency"])
        for ram in (self.ram, *self.weight_rams) if self.model_tolerance is None else ():
            for name, chan in {"aw": ram.write_if.aw_channel, "w": ram.write_if.w_channel,
                               "b": ram.write_if.b_channel, "ar": ram.read_if.ar_channel,
                               "r": ram.read_if.r_channel}.items():
                chan.set_pause_generator(itertools.cycle(PAUSES[name]))
        for name, chan in {"aw": self.lite.write_if.aw_channel, "w": self.lite.write_if.w_channel,
                           "b": self.lite.write_if.b_channel, "ar": self.lite.read_if.ar_channel,
                           "r": self.lite.read_if.r_channel}.items():
            chan.set_pause_generator(itertools.cycle(LITE_PAUSES[name]))
        backend = RtlBackend(dut, self.lite, RamBuffer(self.ram, BASE, SIZE), CLOCK_MHZ)
        self.driver = Driver(backend, BuildPackage.of(self.cfg, regmap))

    async def reset(self) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 4)
        await self.driver.set_window(BASE, SIZE)

    async def write_reg(self, name: str, value: int) -> None:
        await self.driver.write(name, value)

    async def read_reg(self, name: str) -> int:
        return await self.driver.read(name)

    async def run_layer(self, desc_addr: int, timeout: int, count: int = 1,
                        abort_after: int | None = None) -> tuple[int, int]:
        """Start the ``count`` descriptors from ``desc_addr`` (and soft-reset the run
        ``abort_after`` cycles later if given); wait for the interrupt at most ``timeout``
        cycles; return (error code, cycles)."""
        driver = self.driver
        await driver.write("IRQ_ENABLE", done=1, error=1)
        await driver.start(desc_addr, count)
        if abort_after is not None:
            await ClockCycles(self.dut.clk, abort_after)
            assert (await driver.fields("STATUS"))["busy"], "the run should still be busy"
            await driver.soft_reset()
        assert await driver.wait(timeout / (CLOCK_MHZ * 1e6)), \
            "layer never finished (no interrupt)"
        status = await driver.fields("STATUS")
        assert (status["busy"], status["done"]) == (0, 1), f"STATUS {status}: done expected"
        code, _, cycles = await driver.outcome()       # also writes 1s to IRQ_STATUS
        await RisingEdge(self.dut.clk)
        assert not self.dut.irq.value, "writing 1s to IRQ_STATUS must clear the interrupt"
        return ErrorCode[code], cycles


def _layout(cfg, case, rng):
    return random_conv_layer(
        rng, cin=case["cin"], cout=case["cout"], kernel=case["k"], stride=case["s"],
        pad=case["p"], size=case["size"], ratio=tuple(case["ratio"]), relu=case["relu"],
        in_bits=case["in_bits"], act_bits=cfg.act_bits)


class Staged:
    """A layer written into DDR: where its descriptor is and what it must produce."""

    def __init__(self, desc_addr, desc_count, out_addr, expected, out_bits, signed):
        self.desc_addr, self.out_addr, self.expected = desc_addr, out_addr, expected
        self.desc_count = desc_count
        self.out_bits, self.signed = out_bits, signed

    def out_words(self, cfg) -> int:
        """Bus words of the output map."""
        return len(pack_feature_map(np.zeros(self.expected.shape, np.int64), self.out_bits,
                                    signed=True, cfg=cfg))

    def check(self, tb, label: str) -> None:
        cfg = tb.cfg
        words = self.out_words(cfg)
        raw = np.frombuffer(tb.ram.read(self.out_addr, 8 * words), "<u8")
        got = unpack_feature_map(raw, self.expected.shape, self.out_bits, signed=self.signed,
                                 cfg=cfg)
        np.testing.assert_array_equal(got, self.expected, label)
        assert tb.ram.read(self.out_addr - GUARD, GUARD) == bytes([FILL]) * GUARD, label
        assert tb.ram.read(self.out_addr + 8 * words, GUARD) == bytes([FILL]) * GUARD, label


def stage_conv(tb, case, rng) -> Staged:
    """Write a random conv (or fc) layer, its weights and descriptor into a filled RAM."""
    cfg = tb.cfg
    x, schemes, params, node = _layout(cfg, case, rng)
    if case.get("fc"):
        fc_params = {**params, "weight": params["weight"].reshape(case["cout"], -1)}
        expected = golden.fc(x, fc_params)[0][:, None, None]
        mode, out_bits = PostMode.LOGITS, 32
    else:
        expected = golden.conv(x, node, params, cfg.act_bits)[0]
        conv_shape = expected.shape
        if case.get("pool"):        # ResNet's max-pool, in the conv's write-back
            expected = golden.maxpool(expected[None], 3, 2, 1)[0]
        mode = PostMode.RELU if case["relu"] else PostMode.SIGNED
        out_bits = cfg.act_bits if case["relu"] else cfg.act_bits + 1
    stride, pad = case["s"], case["p"]
    fold = None
    if case.get("unroll"):      # the stem as the host runs it: folded and unrolled (k' x 1)
        # "engine": the engine unrolls the folded map the host writes on tap_lanes channels
        fold = Fold(case["k"], pad, x.shape[1:], unroll=True,
                    lanes=cfg.tap_lanes if case["unroll"] == "engine" else 0)
        x = fold_input(x[0], fold)[None]
        params = {**params, "weight": fold_weight(params["weight"], fold)}
        stride, pad = 1, 0
    layer = prepare_conv(params["weight"], schemes, params["bias"], params["mult"],
                         params["shift"], cfg)
    act = pack_feature_map(x[0], case["in_bits"], signed=False, cfg=cfg)
    desc_addr, in_addr = BASE + 0x100, BASE + 0x1000
    w_addr = in_addr + 8 * len(act) + 0x40
    out_addr = w_addr + 8 * len(layer.weights) + GUARD
    tb.ram.write(0, bytes([FILL]) * RAM)
    tb.ram.write(in_addr, act.astype("<u8").tobytes())
    tb.ram.write(w_addr, layer.weights.astype("<u8").tobytes())
    descs = layer.descriptors(
        in_addr=in_addr, out_addr=out_addr, weight_addr=w_addr,
        in_shape=fold.folded_shape if fold else x.shape[1:], unroll=bool(fold and fold.lanes),
        out_shape=expected.shape if case.get("fc") else conv_shape, stride=stride, pad=pad,
        mode=mode, in_bits=case["in_bits"], out_bits=out_bits, pool=bool(case.get("pool")))
    assert in_addr - desc_addr >= len(descs) * descriptor_bytes()
    tb.ram.write(desc_addr, b"".join(descs))
    return Staged(desc_addr, len(descs), out_addr, expected, out_bits, mode != PostMode.RELU)


def stage_vector(tb, case, rng) -> Staged:
    """Write a random residual add, max-pool or average pool into a filled RAM."""
    cfg = tb.cfg
    act, sgn = cfg.act_bits, cfg.act_bits + 1
    in_addr, in2_addr, desc_addr = BASE + 0x1000, BASE + 0x8000, BASE + 0x100
    out_addr = BASE + 0x10000
    op, c, h = case["op"], case["c"], case["h"]
    fields = dict(in_addr=in_addr, out_addr=out_addr, in_c=c, in_h=h, in_w=h, out_c=c,
                  in_bits=act, out_bits=act, mode=int(PostMode.RELU))
    a = rng.integers(0, 1 << act, (1, c, h, h))
    b = None
    out_bits = act
    if op == "add":
        relu = case["relu"]
        if case["signed_a"]:
            a = rng.integers(-(1 << act), 1 << act, (1, c, h, h))
        b = (rng.integers(-(1 << act), 1 << act, (1, c, h, h)) if case["signed_b"] else
             rng.integers(0, 1 << act, (1, c, h, h)))
        ma, mb = (int(v) for v in rng.integers(1, 1 << 16, 2))
        sa, sb = (int(v) for v in rng.integers(14, 18, 2))
        expected = golden.add(a, b, {"mult": [ma, mb], "shift": [sa, sb], "relu": relu},
                              act)[0]
        out_bits = act if relu else sgn
        fields.update(op=Op.ADD, in2_addr=in2_addr, in_bits=sgn if case["signed_a"] else act,
                      in2_bits=sgn if case["signed_b"] else act, out_h=h, out_w=h,
                      out_bits=out_bits, mode=int(PostMode.RELU if relu else PostMode.SIGNED),
                      mult_a=ma, shift_a=sa, mult_b=mb, shift_b=sb)
    elif op == "maxpool":
        k, s, p = case.get("k", 3), case.get("s", 2), case.get("p", 1)
        expected = golden.maxpool(a, k, s, p)[0]
        fields.update(op=Op.MAXPOOL, kernel_h=k, kernel_w=k, stride=s, pad=p,
                      out_h=expected.shape[1],
                      out_w=expected.shape[2])
    else:
        mult, shift = C.quantize_multiplier(1.5 / (h * h))
        expected = golden.avgpool(a, mult, shift, act)[0]
        fields.update(op=Op.AVGPOOL, out_h=1, out_w=1, mult_a=mult, shift_a=shift)
    tb.ram.write(0, bytes([FILL]) * RAM)
    tb.ram.write(in_addr, pack_feature_map(a[0], fields["in_bits"],
                                           signed=fields["in_bits"] == sgn,
                                           cfg=cfg).astype("<u8").tobytes())
    if b is not None:
        tb.ram.write(in2_addr, pack_feature_map(b[0], fields["in2_bits"],
                                                signed=fields["in2_bits"] == sgn,
                                                cfg=cfg).astype("<u8").tobytes())
    descs = layer_descriptors(cfg, **fields)
    assert in_addr - desc_addr >= len(descs) * descriptor_bytes()
    tb.ram.write(desc_addr, b"".join(descs))
    return Staged(desc_addr, len(descs), out_addr, expected, out_bits, out_bits == sgn)


async def run_staged(tb, staged: Staged, label: str) -> int:
    code, cycles = await tb.run_layer(staged.desc_addr, timeout=400_000,
                                      count=staged.desc_count)
    assert code == 0, f"{label}: error code {code}"
    assert await tb.read_reg("DESC_DONE") == staged.desc_count, label
    staged.check(tb, label)
    return cycles


@cocotb.test()
async def layers_match_golden(dut):
    tb = TB(dut)
    await tb.reset()
    for i, case in enumerate(tb.cases):
        case = {"k": 1, "s": 1, "p": 0, **case}
        staged = stage_conv(tb, case, np.random.default_rng(100 + i))
        image = tb.ram.read(0, RAM)
        descs = split_descriptors(image[staged.desc_addr:], 0, staged.desc_count)
        model = chain_cycles(tb.cfg, descs, DdrTiming(read_latency=tb.read_latency),
                             memory=[(0, image)])
        cycles = await run_staged(tb, staged, f"case {i}: {case}")
        # The model knows no pauses: with them its figure is a floor, not a check (the
        # network benches check it, and this one without pauses).
        dut._log.info(f"case {i} {case}: {staged.desc_count} tile(s), {cycles} cycles "
                      f"(modelled without AXI pauses: {model}, "
                      f"{100 * (model - cycles) / cycles:+.2f} %)")
        if tb.model_tolerance is not None:
            assert abs(model - cycles) <= tb.model_tolerance * cycles, (case, cycles, model)


@cocotb.test()
async def malformed_descriptors_set_error_codes(dut):
    tb = TB(dut)
    await tb.reset()
    cfg = tb.cfg
    good = dict(op=1, in_addr=BASE + 0x400, out_addr=BASE + 0x8000, weight_addr=BASE + 0x4000,
                in_c=4, in_h=5, in_w=5, out_c=4, out_h=5, out_w=5, kernel_h=3, kernel_w=3,
                stride=1,
                pad_top=1, pad_bottom=1, pad_left=1, pad_right=1,
                mode=0, in_bits=4, out_bits=cfg.act_bits, passes=1,
                steps=cfg.steps(3, 4))
    cases = [
        (dict(magic=0x1234), 1), (dict(op=9), 1), (dict(kernel_h=8), 1), (dict(out_h=4), 1),
        (dict(kernel_w=0), 1), (dict(kernel_w=1), 1),
        (dict(in_c=0), 1), (dict(stride=3), 1), (dict(steps=5), 1), (dict(out_bits=8), 1),
        (dict(pad_bottom=2), 1), (dict(pad_left=0), 1), (dict(pad_top=0), 1),
        (dict(in_c=cfg.max_channels + 1, steps=cfg.steps(3, cfg.max_channels + 1)),
         4), (dict(in_h=200, in_w=200, out_h=200,
                                                   out_w=200), 4),
        (dict(in_addr=BASE + 0x404), 3), (dict(out_addr=BASE - 0x1000), 2),
        (dict(weight_addr=BASE + SIZE - 8), 2),
    ]
    tb.ram.write(0, bytes([FILL]) * RAM)
    snapshot = tb.ram.read(0, RAM)
    desc_addr = BASE + 0x100
    for change, code in cases:
        tb.ram.write(desc_addr, pack_descriptor(**{**good, **change}))
        got, _ = await tb.run_layer(desc_addr, timeout=5000)
        assert got == code, f"{change}: error code {got}, expected {code}"
    # The descriptor itself outside the window, or misaligned.
    got, _ = await tb.run_layer(BASE + SIZE, timeout=5000)
    assert got == 2
    got, _ = await tb.run_layer(desc_addr + 4, timeout=5000)
    assert got == 3
    got, _ = await tb.run_layer(desc_addr, timeout=5000, count=0)
    assert got == 1, "an empty chain must be refused"
    tb.ram.write(desc_addr, bytes([FILL]) * descriptor_bytes())
    assert tb.ram.read(0, RAM) == snapshot, "a refused layer wrote to memory"
    # A chain stops at its first bad descriptor; DESC_DONE counts the ones before it.
    act = cfg.act_bits
    avg = dict(op=Op.AVGPOOL, in_addr=BASE + 0x400, out_addr=BASE + 0x8000, in_c=4, in_h=2,
               in_w=2, out_c=4, out_h=1, out_w=1, in_bits=act, out_bits=act, mult_a=1,
               shift_a=2)
    tb.ram.write(desc_addr, pack_descriptor(**avg) * 2 + pack_descriptor(**good, magic=0))
    got, _ = await tb.run_layer(desc_addr, timeout=20000, count=5)
    assert got == 1 and await tb.read_reg("DESC_DONE") == 2


@cocotb.test()
async def error_responses_during_a_conv_end_it_with_axi_response(dut):
    """A conv whose input band, or whose weights, the memory answers with error responses
    (inside the window, which here reaches past the RAM, whose reads beyond its end come back
    SLVERR): the run lets what runs finish and ends with AXI_RESPONSE, having written nothing,
    and the same layer then runs right."""
    tb = TB(dut)
    await tb.reset()
    size = descriptor_bytes()
    staged = stage_conv(tb, tb.cases[0], np.random.default_rng(12))
    first = unpack_descriptor(tb.ram.read(staged.desc_addr, size))
    snapshot = tb.ram.read(0, RAM)
    await tb.driver.set_window(BASE, RAM - BASE + (1 << 18))
    for change in (dict(in_addr=RAM), dict(weight_addr=RAM)):
        tb.ram.write(staged.desc_addr, pack_descriptor(**{**first, **change}))
        got, _ = await tb.run_layer(staged.desc_addr, timeout=100_000)
        assert got == ErrorCode.AXI_RESPONSE, f"{change}: error code {got}"
        assert await tb.read_reg("DESC_DONE") == 0, change
        tb.ram.write(staged.desc_addr, pack_descriptor(**first))
        assert tb.ram.read(0, RAM) == snapshot, f"{change}: the failed conv wrote to memory"
    await tb.driver.set_window(BASE, SIZE)
    await run_staged(tb, staged, "the conv after error responses")


@cocotb.test()
async def a_bad_conv_after_a_good_one_fails_at_its_own_index(dut):
    """The loader goes on with the next conv's passes while a conv computes, before that one
    is checked: a next conv whose weights lie outside the window still fails with
    ADDR_OUT_OF_WINDOW as its own (DESC_DONE counts the good one, whose output is whole and
    right), and one whose passes hold a bias beyond the accumulator with BAD_DESCRIPTOR."""
    tb = TB(dut)
    await tb.reset()
    size = descriptor_bytes()
    for code in (ErrorCode.ADDR_OUT_OF_WINDOW, ErrorCode.BAD_DESCRIPTOR):
        staged = stage_conv(tb, tb.cases[0], np.random.default_rng(11))
        last = staged.desc_addr + (staged.desc_count - 1) * size
        bad = unpack_descriptor(tb.ram.read(last, size))
        words = pass_block_words(tb.cfg, bad["steps"]) * bad["passes"]
        if code == ErrorCode.ADDR_OUT_OF_WINDOW:
            change = dict(weight_addr=BASE + SIZE - 8)
        else:
            # Its pass blocks, at the top of the window, clear of the good conv's descriptors,
            # maps and weights: no Fixed-8 pairs, a first slot whose bias does not fit the
            # accumulator, the rest zeros.
            change = dict(weight_addr=(BASE + SIZE - 8 * words) & ~63)
            assert change["weight_addr"] >= staged.out_addr + GUARD + 8 * staged.out_words(tb.cfg)
            block = [0, *pack_slot(channel=0, bias=1 << 30, mult=1, shift=0)]
            tb.ram.write(change["weight_addr"],
                         np.array(block + [0] * (words - len(block)), "<u8").tobytes())
        bad.update(change)
        tb.ram.write(last + size, pack_descriptor(**bad))
        got, _ = await tb.run_layer(staged.desc_addr, timeout=400_000,
                                    count=staged.desc_count + 1)
        assert got == code, f"{change}: error code {got}, expected {code}"
        assert await tb.read_reg("DESC_DONE") == staged.desc_count, change
        staged.check(tb, f"the good conv before {change}")


@cocotb.test()
async def reset_mid_layer_then_rerun(dut):
    tb = TB(dut)
    await tb.reset()
    staged = stage_conv(tb, tb.cases[0], np.random.default_rng(7))
    await tb.driver.start(staged.desc_addr, staged.desc_count)
    await ClockCycles(dut.clk, 300)
    assert (await tb.driver.fields("STATUS"))["busy"], "layer should still be running"
    await tb.reset()
    assert set((await tb.driver.fields("STATUS")).values()) == {0}
    await run_staged(tb, staged, "rerun after reset")
    # Soft reset of a chain of row tiles: the run stops at its next safe point with ABORTED
    # before the last tile, writes nothing outside the layer's output, and the layer reruns.
    # The soft reset comes when the cycle model expects half the tiles done.
    staged = stage_conv(tb, tb.cases[3], np.random.default_rng(8))
    assert staged.desc_count > 4
    half = split_descriptors(tb.ram.read(staged.desc_addr, staged.desc_count
                                         * descriptor_bytes()), 0, staged.desc_count // 2)
    abort_after = chain_cycles(tb.cfg, half, DdrTiming(read_latency=tb.read_latency))
    code, _ = await tb.run_layer(staged.desc_addr, timeout=50_000, count=staged.desc_count,
                                 abort_after=abort_after)
    assert code == ErrorCode.ABORTED, f"error code {code} after a soft reset"
    assert 0 < await tb.read_reg("DESC_DONE") < staged.desc_count
    await run_staged(tb, staged, "rerun after soft reset")


@cocotb.test()
async def vector_layers_match_golden(dut):
    """Residual adds (signed and unsigned inputs), max-pool and global average pool."""
    tb = TB(dut)
    await tb.reset()
    rng = np.random.default_rng(11)
    for case in tb.vector_cases:
        staged = stage_vector(tb, case, rng)
        cycles = await run_staged(tb, staged, f"{case}")
        dut._log.info(f"{case}: {staged.desc_count} tile(s), {cycles} cycles")


def random_case(rng: random.Random, cfg: HwConfig) -> tuple[str, dict]:
    """A constrained-random layer that fits the bench's buffers."""
    v = cfg.vec_len
    kind = rng.choices(["conv", "fc", "add", "maxpool", "avgpool"], [60, 5, 15, 10, 10])[0]
    if kind in ("conv", "fc"):
        while True:
            k = 1 if kind == "fc" else rng.choice([1, 2, 3, 4, 5, 7])
            s = 1 if kind == "fc" else rng.choice([1, 2])
            p = 0 if kind == "fc" else rng.randint(0, k // 2)
            size = 1 if kind == "fc" else rng.randint(max(1, k - 2 * p), 7)
            cin = rng.randint(1, min(2 * v + 3, cfg.max_channels))
            cout = rng.randint(1, min(3 * (v + 1), cfg.max_channels))
            chunks = -(-cin // v)
            out = (size + 2 * p - k) // s + 1
            # Larger maps are cut into row tiles; one output row must fit the buffers.
            if (k * k * chunks <= cfg.max_pass_rows
                    and k * k * chunks * v < cfg.max_reduction + v
                    and min(k, size) * size * chunks <= cfg.act_buf_depth
                    and out * -(-cout // v) <= cfg.out_buf_depth):
                break
        ratio = [rng.randint(0, 10) for _ in range(3)]
        ratio[rng.randrange(3)] += 1
        return "conv", dict(cin=cin, cout=cout, k=k, s=s, p=p, size=size, ratio=ratio,
                            relu=rng.random() < 0.6, in_bits=rng.choice([4, 4, 8]),
                            fc=kind == "fc")
    c, h = rng.randint(1, min(3 * v, cfg.max_channels)), rng.randint(1, 6)
    case = dict(op=kind, c=c, h=h)
    if kind == "add":
        case.update(signed_a=rng.random() < 0.7, signed_b=rng.random() < 0.4,
                    relu=rng.random() < 0.7)
    elif kind == "maxpool":
        k = rng.randint(1, 3)
        case.update(k=k, s=rng.randint(1, 2), p=rng.randint(0, min(1, k // 2)), h=max(h, k))
    return kind, case


@cocotb.test()
async def random_layers_match_golden(dut):
    """Constrained-random layer shapes and scheme mixes, each bit-exact with golden."""
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(tb.seed)
    for n in range(tb.n_random):
        kind, case = random_case(rng, tb.cfg)
        nrng = np.random.default_rng(1000 + n)
        staged = stage_conv(tb, case, nrng) if kind == "conv" else stage_vector(tb, case, nrng)
        await run_staged(tb, staged, f"random layer {n}: {case}")
    dut._log.info(f"{tb.n_random} random layers passed")
