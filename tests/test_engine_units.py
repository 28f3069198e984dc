"""The engine's components alone in the Amaranth simulator (``rtl.engine``: docs/engine.md,
"Components"), each against an oracle of its own: the firmware emulator's descriptor checks,
the host's DDR packing."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from firmware import emu
from quant import golden
from rtl.config import HwConfig
from rtl.engine import (
    AHEAD_CYCLES,
    CHECK_CYCLES,
    DescriptorCheck,
    MapReader,
    WeightLoader,
    Writer,
)
from rtl.engine.unpack import Unroller
from rtl.engine.writer import out_vector_layout
from rtl.interface.ddr import (
    PASS_HEADER_WORDS,
    SLOT_FIELDS,
    SLOT_WORDS,
    feature_map_words,
    pack_slot,
    pass_block_words,
    pass_word_order,
    row_words,
    stored_input_words,
    unpack_values,
    weight_row_bits,
    word_bits,
    words_per_vector,
)
from rtl.interface.descriptor import (
    DESC_MAGIC,
    FIELDS,
    IN_BITS,
    OUT_BITS,
    PIXEL_BITS,
    POOL_LEAD,
    POOL_TOP,
    Op,
    PostMode,
    pack_descriptor,
    pooled_size,
    unpack_descriptor,
)
from rtl.interface.regmap import ErrorCode
from rtl.interface.stem import unroll_columns
from rtl.vector_units import lane_bits

#: A small build (``V = 8``, three weight ports), as the engine bench's.
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

CFG = HwConfig(name="units", part="xc7z020clg400-1", clock_mhz=100.0, pot_rows=4,
               pot_cols=8, dsp_rows=4, dsp_cols=8, max_reduction=7 * 7 * 8, max_channels=64,
               max_spatial=64, act_buf_depth=256, weight_buf_depth=64, out_buf_depth=64,
               result_lanes=4, weight_ports=3)
#: The same build with the first layer's pixels split into nibbles (``split`` descriptors).
CFG_SPLIT = CFG.replace(name="units-split", split_input=True)
#: The same build with a column unroller of 2 taps (``unroll`` descriptors on 4-lane pixels).
CFG_UNROLL = CFG.replace(name="units-unroll", unroll_taps=2)
#: Banks of 16 rows: passes of 17 to 32 steps are long passes (they span both banks).
CFG_LONG = CFG.replace(name="units-long", weight_buf_depth=16)


def _sim(dut, bench, background=None) -> None:
    """Run ``bench`` on ``dut`` (with ``background`` beside it, if given)."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if background is not None:
        sim.add_testbench(background, background=True)
    sim.run()


def _vectors(words: list[int], wpv: int, bits: int, v: int, *, signed: bool) -> np.ndarray:
    """The vectors a writer sent as ``wpv`` words each."""
    return np.array([unpack_values(np.array(words[j:j + wpv], np.uint64), bits, v,
                                   signed=signed) for j in range(0, len(words), wpv)])


# ---- DescriptorCheck ---------------------------------------------------------------------

WINDOW = (0x1000_0000, 0x0010_0000)


def _valid_descriptor(rng: np.random.Generator, cfg: HwConfig) -> dict[str, int]:
    """A random descriptor that the engine accepts."""
    while True:
        d = _random_descriptor(rng, cfg)
        if _emu_code(d, cfg) == ErrorCode.NONE:
            return d


def _random_descriptor(rng: np.random.Generator, cfg: HwConfig) -> dict[str, int]:
    """A random descriptor of a well-formed layer."""
    act, sgn = cfg.act_bits, cfg.act_bits + 1
    op = Op(int(rng.choice([Op.CONV, Op.ADD, Op.MAXPOOL, Op.AVGPOOL, Op.CONV_ADD])))
    c = int(rng.integers(1, 33))
    h, w = (int(x) for x in rng.integers(1, 9, 2))
    kh, s = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    kw = kh if rng.random() < 0.7 else int(rng.integers(1, 4))      # some not square
    pads = [int(x) for x in rng.integers(0, kh // 2 + 1, 2)]
    pads += [int(x) for x in rng.integers(0, kw // 2 + 1, 2)]
    mode = PostMode(int(rng.integers(0, {Op.CONV: 3, Op.ADD: 2, Op.CONV_ADD: 2}.get(op, 1))))
    pool = split = 0
    if op == Op.CONV and rng.random() < 0.3:      # a pooled conv band
        pool, mode = int(rng.choice([POOL_TOP, POOL_LEAD])), PostMode.RELU
    pixels = 4 if cfg.split_input else 8
    if op == Op.CONV and cfg.split_input and rng.random() < 0.4:   # nibbles, chunks in pairs
        split, c = 1, 2 * cfg.vec_len * int(rng.integers(1, 3))
    unroll = int(op in (Op.CONV, Op.CONV_ADD) and cfg.tap_lanes > 0 and rng.random() < 0.4)
    if unroll:       # an unrolled pixel map: V channels, a k x 1 kernel over whole rows
        c, kw, s, pads[2:] = cfg.vec_len, 1, 1, [0, 0]
    return _layer(cfg, op, c, max(h, kh), max(w, kw), k=(kh, kw), s=s, pads=pads, mode=mode,
                  out_c=int(rng.integers(1, 33)), passes=int(rng.integers(1, 4)),
                  in_bits=4 if split else PIXEL_BITS if unroll else int(rng.choice(
                      [act, pixels if op in (Op.CONV, Op.CONV_ADD) else sgn])),
                  in2_bits=int(rng.choice([act, sgn])), at=8 * int(rng.integers(0, 64)),
                  pool=pool, split=split, unroll=unroll)


def _layer(cfg: HwConfig, op: Op, c: int, h: int, w: int, *, k: int | tuple[int, int] = 1,
           s: int = 1,
           pads: list[int] | None = None, mode: PostMode = PostMode.RELU, out_c: int = 0,
           passes: int = 1, in_bits: int = 0, in2_bits: int = 0, at: int = 0, pool: int = 0,
           split: int = 0, unroll: int = 0) -> dict[str, int]:
    """The descriptor of a layer as the host writes it: what ``op`` ignores is left out,
    its maps and pass blocks one after another from the window's base (``+ at``). ``k``:
    a square kernel's side, or ``(height, width)``."""
    act, sgn = cfg.act_bits, cfg.act_bits + 1
    kh, kw = (k, k) if isinstance(k, int) else k
    d = {name: 0 for name, _ in FIELDS}
    d.update(magic=DESC_MAGIC, op=op, in_h=h, in_w=w, in_c=c, out_c=c, out_h=h, out_w=w,
             kernel_h=1, kernel_w=1, stride=1, in_bits=act, out_bits=act, split=split,
             unroll=unroll)
    if op in (Op.CONV, Op.CONV_ADD, Op.MAXPOOL):
        pads = pads or [0] * 4
        d.update(out_h=(h + pads[0] + pads[1] - kh) // s + 1,
                 out_w=(w + pads[2] + pads[3] - kw) // s + 1, kernel_h=kh, kernel_w=kw,
                 stride=s,
                 pad_top=pads[0], pad_bottom=pads[1], pad_left=pads[2], pad_right=pads[3])
    if op in (Op.CONV, Op.CONV_ADD):
        d.update(out_c=out_c or c, mode=mode, in_bits=in_bits or act,
                 out_bits={PostMode.RELU: act, PostMode.SIGNED: sgn, PostMode.LOGITS: 32}[mode],
                 steps=cfg.steps((kh, kw), c), passes=passes)
    if op == Op.ADD:
        d.update(mode=mode, out_bits=act if mode == PostMode.RELU else sgn,
                 in_bits=in_bits or act)
    if op in (Op.ADD, Op.CONV_ADD):
        d["in2_bits"] = in2_bits or act
    if op == Op.AVGPOOL:
        d.update(out_h=1, out_w=1)
    written = (d["out_h"], d["out_w"])
    if pool:
        d["pool"] = pool
        written = pooled_size(d["out_h"], d["out_w"], pool)
    sizes = {"in_addr": stored_input_words(cfg, d),
             "out_addr": feature_map_words(cfg, (d["out_c"], *written), d["out_bits"]),
             "in2_addr": feature_map_words(cfg, (d["out_c"], d["out_h"], d["out_w"]),
                                           d["in2_bits"] or act),
             "weight_addr": d["passes"] * pass_block_words(cfg, d["steps"])}
    addr = WINDOW[0] + at
    for name in ("in_addr", "in2_addr", "out_addr", "weight_addr"):
        d[name] = addr
        addr += 8 * sizes[name]
    return d


#: Edge values a field is set to, beside a small step from its own value.
EDGES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 31, 32, 33, 63, 64, 65, 255, 256, 4096, 4097,
         0xFFFF, 1 << 31, 0xFFFF_FFFF)


def _mutate(rng: np.random.Generator, d: dict[str, int]) -> dict[str, int]:
    d = dict(d)
    for _ in range(int(rng.integers(1, 3))):
        if rng.random() < 0.3:
            name = str(rng.choice(["in_addr", "in2_addr", "out_addr", "weight_addr"]))
        else:
            name = FIELDS[int(rng.integers(0, len(FIELDS)))][0]
        if name.endswith("_addr"):
            options = [d[name] + int(rng.choice([1, 4, -8, 8])), WINDOW[0] - 8,
                       WINDOW[0] + WINDOW[1] - 8, WINDOW[0] + WINDOW[1], 0]
        else:
            options = [d[name] + int(rng.choice([-2, -1, 1, 2])), int(rng.choice(EDGES))]
        d[name] = int(rng.choice(options)) & 0xFFFF_FFFF
    return d


def _emu_code(d: dict[str, int], cfg: HwConfig) -> ErrorCode:
    bus = emu._Bus(emu.EmuMemory(8), *WINDOW)
    try:
        emu.check_descriptor(bus, d, cfg)
    except emu._Fault as fault:
        return ErrorCode(fault.code)
    return ErrorCode.NONE


def _descriptor_cases(n: int, cfg: HwConfig) -> list[dict[str, int]]:
    rng = np.random.default_rng(11)
    cases = []
    for i in range(n):
        d = _valid_descriptor(rng, cfg)
        cases.append(d if i % 3 == 0 else _mutate(rng, d))
    # The build's limits (rows, columns, channels, buffers, weight rows) and the fields'
    # ranges, each at the edge and one beyond it.
    avg, mp, conv = Op.AVGPOOL, Op.MAXPOOL, Op.CONV
    edges = [(avg, 1, 64, 1, {}), (avg, 1, 65, 1, {}), (avg, 1, 1, 64, {}),
             (avg, 1, 1, 65, {}), (avg, 64, 1, 1, {}), (avg, 65, 1, 1, {}),
             (avg, 8, 16, 16, {}), (avg, 8, 16, 17, {}), (mp, 8, 8, 8, {}), (mp, 8, 8, 9, {}),
             (conv, 8, 8, 1, {"k": 7, "pads": [3] * 4}),
             (conv, 9, 8, 1, {"k": 7, "pads": [3] * 4}),
             # the window just fits the padded input, or misses it by one
             (conv, 8, 8, 1, {"k": 7, "pads": [3, 3, 3, 2]}),
             (conv, 8, 1, 8, {"k": 7, "pads": [2, 3, 3, 3]}),
             (conv, 8, 2, 1, {"k": 7, "pads": [2, 3, 3, 3]}),
             (conv, 1, 1, 1, {"passes": 4096}), (conv, 1, 1, 1, {"passes": 4097}),
             (mp, 8, 4, 4, {"k": 3, "pads": [1, 1, 1, 1]}),
             (mp, 8, 4, 4, {"k": 3, "pads": [1, 2, 1, 1]}),
             (mp, 8, 4, 4, {"k": 3, "s": 3}), (mp, 8, 8, 8, {"k": 7}), (mp, 8, 8, 8, {"k": 8}),
             (conv, 8, 8, 8, {"k": (4, 1)}), (conv, 8, 8, 8, {"k": (1, 7)}),
             (conv, 8, 8, 8, {"k": (8, 1)}), (conv, 8, 8, 8, {"k": (1, 8)}),
             (conv, 8, 8, 8, {"k": (3, 1), "pads": [1, 1, 0, 0]}),
             (conv, 8, 8, 8, {"k": (3, 1), "pads": [1, 1, 1, 0]}),
             (conv, 8, 8, 8, {"k": (1, 3), "pads": [0, 0, 1, 1]}),
             (conv, 8, 8, 8, {"k": (1, 3), "pads": [1, 0, 1, 1]}),
             (conv, 8, 1, 8, {"pool": POOL_TOP}), (conv, 8, 1, 8, {"pool": POOL_LEAD}),
             (conv, 8, 2, 8, {"pool": POOL_LEAD}), (conv, 8, 5, 5, {"pool": 3}),
             (conv, 8, 5, 5, {"pool": POOL_TOP, "mode": PostMode.SIGNED}),
             (Op.CONV_ADD, 8, 5, 5, {"pool": POOL_TOP, "mode": PostMode.RELU}),
             (mp, 8, 5, 5, {"k": 3, "pool": POOL_TOP}),
             # split inputs: only a conv's, 4-bit, chunks in pairs, split 1 (on a split build)
             (conv, 16, 4, 4, {"split": 1, "in_bits": 4, "k": 3}),
             (conv, 9, 4, 4, {"split": 1, "in_bits": 4}),
             (conv, 8, 4, 4, {"split": 1, "in_bits": 4}),
             (conv, 16, 4, 4, {"split": 1, "in_bits": 8}),
             (conv, 16, 4, 4, {"split": 2, "in_bits": 4}),
             (conv, 16, 4, 4, {"in_bits": 8}), (conv, 16, 4, 4, {"in_bits": 4}),
             (Op.CONV_ADD, 16, 4, 4, {"split": 1, "in_bits": 4, "mode": PostMode.SIGNED}),
             (mp, 16, 4, 4, {"split": 1}), (avg, 16, 4, 4, {"split": 1}),
             (Op.ADD, 16, 4, 4, {"split": 1}),
             # unrolled pixel maps: a conv's, V channels of 8-bit pixels, k x 1, stride 1, no
             # column pads, unroll 1 (on a build with the unroller)
             (conv, 8, 4, 4, {"unroll": 1, "in_bits": 8, "k": (2, 1)}),
             (conv, 8, 4, 4, {"unroll": 1, "in_bits": 8, "k": (3, 1), "pads": [1, 1, 0, 0]}),
             (Op.CONV_ADD, 8, 4, 4, {"unroll": 1, "in_bits": 8, "k": (2, 1),
                                     "mode": PostMode.SIGNED}),
             (conv, 8, 4, 4, {"unroll": 2, "in_bits": 8, "k": (2, 1)}),
             (conv, 16, 4, 4, {"unroll": 1, "in_bits": 8, "k": (2, 1)}),
             (conv, 4, 4, 4, {"unroll": 1, "in_bits": 8, "k": (2, 1)}),
             (conv, 8, 4, 4, {"unroll": 1, "in_bits": 4, "k": (2, 1)}),
             (conv, 8, 4, 4, {"unroll": 1, "in_bits": 8, "k": (2, 3)}),
             (conv, 8, 5, 5, {"unroll": 1, "in_bits": 8, "k": (1, 1), "s": 2}),
             (conv, 8, 4, 4, {"unroll": 1, "in_bits": 8, "k": (3, 3), "pads": [0, 0, 1, 1]}),
             (mp, 8, 4, 4, {"unroll": 1, "k": 3}), (avg, 8, 4, 4, {"unroll": 1}),
             (Op.ADD, 8, 4, 4, {"unroll": 1})]
    cases += [_layer(cfg, op, c, h, w, **kw) for op, c, h, w, kw in edges]
    fused = _layer(cfg, Op.CONV_ADD, 8, 4, 4, k=3, pads=[1] * 4)
    cases += [{**fused, name: fused[name] + step} for step in (4, 2, 1)
              for name in ("in_addr", "in2_addr", "out_addr", "weight_addr")]
    return cases


@pytest.mark.parametrize("cfg", [CFG, CFG_SPLIT, CFG_UNROLL, CFG_LONG],
                         ids=["plain", "split", "unroll", "long"])
def test_descriptor_check_matches_the_emulator(cfg: HwConfig) -> None:
    """Each verdict CHECK_CYCLES - 1 cycles after the descriptor, in the engine's order, is
    the emulator's error code; every code comes up; on a split build, split convs are run
    and wrong ones refused; on a build with the unroller, unrolled convs likewise (and
    refused on the others)."""
    cases = _descriptor_cases(400, cfg)
    expected = [_emu_code(d, cfg) for d in cases]
    seen = {code: expected.count(code) for code in set(expected)}
    assert {ErrorCode.NONE, ErrorCode.BAD_DESCRIPTOR, ErrorCode.LAYER_TOO_LARGE,
            ErrorCode.MISALIGNED_ADDR, ErrorCode.ADDR_OUT_OF_WINDOW} <= set(seen), seen
    if cfg.split_input:
        split_ok = [d for d, code in zip(cases, expected, strict=True)
                    if d["split"] and code == ErrorCode.NONE]
        split_bad = [d for d, code in zip(cases, expected, strict=True)
                     if d["split"] and code == ErrorCode.BAD_DESCRIPTOR]
        assert len(split_ok) > 10 and len(split_bad) > 10, (len(split_ok), len(split_bad))
    unrolled = [code for d, code in zip(cases, expected, strict=True) if d["unroll"]]
    if cfg.tap_lanes:
        assert unrolled.count(ErrorCode.NONE) > 10, unrolled
        assert unrolled.count(ErrorCode.BAD_DESCRIPTOR) > 10, unrolled
    else:
        assert unrolled and set(unrolled) == {ErrorCode.BAD_DESCRIPTOR}, unrolled
    dut = DescriptorCheck(cfg=cfg)
    got = []

    async def bench(ctx):
        ctx.set(dut.window_base, WINDOW[0])
        ctx.set(dut.window_size, WINDOW[1])
        for d in cases:
            ctx.set(dut.desc.as_value(), int.from_bytes(pack_descriptor(**d), "little"))
            await ctx.tick().repeat(CHECK_CYCLES - 1)
            verdicts = [ctx.get(getattr(dut, name))
                        for name in ("shape_ok", "size_ok", "aligned", "window_ok")]
            codes = [ErrorCode.BAD_DESCRIPTOR, ErrorCode.LAYER_TOO_LARGE,
                     ErrorCode.MISALIGNED_ADDR, ErrorCode.ADDR_OUT_OF_WINDOW]
            got.append(next((c for c, ok in zip(codes, verdicts, strict=True) if not ok),
                            ErrorCode.NONE))

    _sim(dut, bench)
    for d, want, have in zip(cases, expected, got, strict=True):
        assert have == want, f"{have.name} for {want.name}: {d}"


@pytest.mark.parametrize("cfg", [CFG, CFG_SPLIT, CFG_UNROLL], ids=["plain", "split", "unroll"])
def test_descriptor_check_quantities(cfg: HwConfig) -> None:
    """The derived sizes of accepted descriptors: the host's word counts and byte ends."""
    rng = np.random.default_rng(5)
    cases = [_valid_descriptor(rng, cfg) for _ in range(40)]
    if cfg.split_input:
        assert any(d["split"] for d in cases)
    if cfg.tap_lanes:
        assert any(d["unroll"] for d in cases)
    dut = DescriptorCheck(cfg=cfg)

    async def bench(ctx):
        ctx.set(dut.window_base, WINDOW[0])
        ctx.set(dut.window_size, WINDOW[1])
        for d in cases:
            raw = pack_descriptor(**d)
            assert unpack_descriptor(raw) == d
            ctx.set(dut.desc.as_value(), int.from_bytes(raw, "little"))
            await ctx.tick().repeat(CHECK_CYCLES - 1)
            in_shape = (d["in_c"], d["in_h"], d["in_w"])
            out_shape = (d["out_c"], d["out_h"], d["out_w"])
            in_words = stored_input_words(cfg, d)
            pooled = pooled_size(d["out_h"], d["out_w"], d["pool"])
            out_words = feature_map_words(cfg, (d["out_c"], *pooled) if d["pool"]
                                          else out_shape, d["out_bits"])
            assert ctx.get(dut.in_words) == in_words
            assert ctx.get(dut.out_words) == out_words
            assert ctx.get(dut.in_end) == d["in_addr"] + 8 * in_words
            assert ctx.get(dut.out_end) == d["out_addr"] + 8 * out_words
            assert ctx.get(dut.out_last) == d["out_h"] * d["out_w"] * cfg.chunks(d["out_c"]) - 1
            if d["in2_bits"] in IN_BITS:
                shape2 = out_shape if d["op"] == Op.CONV_ADD else in_shape
                assert ctx.get(dut.in2_words) == feature_map_words(cfg, shape2, d["in2_bits"])
            assert ctx.get(dut.pass_words) == pass_block_words(cfg, d["steps"])
            assert ctx.get(dut.row_stride) == d["in_w"] * cfg.chunks(d["in_c"])
            assert ctx.get(dut.window_limit) == sum(WINDOW)
            assert ctx.get(dut.out_row) == d["out_w"] * cfg.chunks(d["out_c"])
            assert ctx.get(dut.is_split) == d["split"]
            assert ctx.get(dut.is_unroll) == d["unroll"]
            assert [ctx.get(dut.is_pool), ctx.get(dut.pool_top)] == [
                d["pool"] != 0, d["pool"] == POOL_TOP]
            if d["pool"]:
                assert (ctx.get(dut.pool_h), ctx.get(dut.pool_w)) == pooled
            assert [ctx.get(dut.is_conv), ctx.get(dut.is_fused), ctx.get(dut.is_add),
                    ctx.get(dut.is_max), ctx.get(dut.is_avg)] == [
                d["op"] in (Op.CONV, Op.CONV_ADD), d["op"] == Op.CONV_ADD, d["op"] == Op.ADD,
                d["op"] == Op.MAXPOOL, d["op"] == Op.AVGPOOL]

    _sim(dut, bench)


def test_descriptor_check_refuses_a_wrong_config() -> None:
    with pytest.raises(TypeError, match=r"^Descriptor check configuration must be a HwConfig"):
        DescriptorCheck(cfg=None)


# ---- MapReader ---------------------------------------------------------------------------


#: 32 lanes: a vector takes 2 to 4 bus words.
CFG_32 = CFG.replace(name="units-32", pot_cols=32, dsp_cols=32, max_reduction=7 * 7 * 32)


#: (config, element width, words a vector): every width at its full vector, and pixel maps
#: (``PIXEL_BITS``) of fewer channels in fewer words (``vector_words``), the rest zero.
MAP_READS = ([(c, b, words_per_vector(c, b)) for c in (CFG, CFG_32) for b in IN_BITS]
             + [(CFG_32, PIXEL_BITS, 1), (CFG_32, PIXEL_BITS, 3)])


@pytest.mark.parametrize("cfg, bits, wpv", MAP_READS,
                         ids=[f"v{c.vec_len}-{b}bit-{w}w" for c, b, w in MAP_READS])
def test_map_reader_unpacks_as_the_host_packs(cfg: HwConfig, bits: int, wpv: int) -> None:
    """Random bus words of each element width, under input gaps and output backpressure,
    become the vectors the host's unpacking reads from them; two maps, one ``start`` each.
    A pixel map's vector of fewer words has zeros past them, whatever came before."""
    v, lb = cfg.vec_len, lane_bits(cfg)
    signed = bits == cfg.act_bits + 1
    rng = np.random.default_rng(bits + 16 * wpv)
    full = words_per_vector(cfg, bits)
    # A full-width map first: the narrow one's lanes past its words must not keep its values.
    maps = [rng.integers(0, 1 << 63, (n, w), dtype=np.uint64) * 2 + 1
            for n, w in ((13, full), (7, wpv))]
    want = [[unpack_values(np.concatenate([vec, np.zeros(full - vec.size, np.uint64)]), bits, v,
                           signed=signed) & ((1 << lb) - 1) for vec in words]
            for words in maps]
    dut = MapReader(cfg=cfg)
    got: list[list[list[int]]] = [[] for _ in maps]

    async def producer(ctx):
        ctx.set(dut.bits, bits)
        ctx.set(dut.words, full)
        await ctx.tick().repeat(2)
        for words in maps:
            ctx.set(dut.words, words.shape[1])
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick()  # start is registered: no word in the cycle after it
            for word in words.reshape(-1):
                while rng.random() < 0.3:
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick()
                ctx.set(dut.i.payload, int(word))
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        held, cycles = None, 0
        for n, words in enumerate(maps):
            while len(got[n]) < len(words):
                ready = bool(rng.random() < 0.6)
                ctx.set(dut.o.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
                cycles += 1
                assert cycles < 2000, f"{sum(map(len, got))} vectors after {cycles} cycles"
                lanes = [int(x) for x in payload]
                if held is not None:
                    assert valid and lanes == held, "a stalled vector changed"
                held = None
                if valid and ready:
                    got[n].append(lanes)
                elif valid:
                    held = lanes

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    for n in range(len(maps)):
        np.testing.assert_array_equal(np.array(got[n]), np.array(want[n]))


@pytest.mark.parametrize("wpv", [1, 3, 4])
def test_map_reader_says_whether_its_words_are_whole_vectors(wpv: int) -> None:
    """After ``start`` and ``n`` words, ``whole`` is set exactly when ``n`` is a multiple of
    the words a vector (the prefetch uses a band's part past the band before only then)."""
    dut = MapReader(cfg=CFG_32)
    seen: list[tuple[int, int]] = []

    async def bench(ctx):
        ctx.set(dut.bits, PIXEL_BITS)
        ctx.set(dut.words, wpv)
        ctx.set(dut.o.ready, 1)
        await ctx.tick().repeat(2)
        for n in range(2 * wpv + 2):
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick()
            for k in range(n):
                ctx.set(dut.i.payload, k + 1)
                ctx.set(dut.i.valid, 1)
                await ctx.tick()
            ctx.set(dut.i.valid, 0)
            await ctx.tick()
            seen.append((n, ctx.get(dut.whole)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [(n, int(n % wpv == 0)) for n in range(2 * wpv + 2)]


@pytest.mark.parametrize("taps, v", [(2, 8), (4, 8), (4, 16)])
def test_unroller_puts_a_rows_pixels_side_by_side(taps: int, v: int) -> None:
    """Rows of random pixels on ``tap_lanes`` lanes (the lanes past them random too), in
    gaps, become the host's ``unroll_columns`` of them, ``row`` vectors a row; then a map
    with ``on`` low passes unchanged, and a new ``start`` begins a row anew."""
    cfg = CFG.replace(name=f"units-unroll{taps}-{v}", pot_cols=v, dsp_cols=v,
                      max_reduction=7 * 7 * v, unroll_taps=taps)
    lanes, lb = cfg.tap_lanes, lane_bits(cfg)
    rng = np.random.default_rng(taps + v)
    h, row = 3, 5
    pixels = rng.integers(0, 1 << lb, (h, row + taps - 1, v))        # (row, column, lane)
    want = unroll_columns(pixels[:, :, :lanes].transpose(2, 0, 1), taps)   # (V, h, row)
    want = list(want.transpose(1, 2, 0).reshape(-1, v))
    plain = rng.integers(0, 1 << lb, (4, v))
    dut = Unroller(cfg=cfg)
    got: list[list[int]] = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for on, vectors in ((1, pixels.reshape(-1, v)), (0, plain), (1, pixels.reshape(-1, v))):
            ctx.set(dut.on, on)
            ctx.set(dut.row, row)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick().repeat(2)
            for vec in vectors:
                while rng.random() < 0.3:
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick()
                ctx.set(dut.i.payload, [int(x) for x in vec])
                ctx.set(dut.i.valid, 1)
                if ctx.get(dut.o.valid):
                    got.append([int(x) for x in ctx.get(dut.o.payload)])
                await ctx.tick()
            ctx.set(dut.i.valid, 0)

    _sim(dut, bench)
    expect = want + [list(map(int, p)) for p in plain] + want
    np.testing.assert_array_equal(np.array(got), np.array(expect))


def test_unroller_needs_taps() -> None:
    with pytest.raises(ValueError, match="builds no unroller"):
        Unroller(cfg=CFG)


# ---- Writer ------------------------------------------------------------------------------


class _WriterBench(Elaboratable):
    """The writer over an out buffer the testbench also writes (``wr``)."""

    def __init__(self, cfg: HwConfig, init: list) -> None:
        self.writer = Writer(cfg=cfg)
        self.mem = Memory(shape=out_vector_layout(cfg), depth=cfg.out_buf_depth, init=init)
        self.wr = self.mem.write_port()

    def elaborate(self, platform):
        m = Module()
        m.submodules.writer, m.submodules.mem = self.writer, self.mem
        rd = self.mem.read_port()
        m.d.comb += [rd.addr.eq(self.writer.rd_addr), rd.en.eq(self.writer.rd_en),
                     self.writer.rd_data.eq(rd.data)]
        return m


@pytest.mark.parametrize("bits", OUT_BITS)
def test_writer_packs_as_the_host_unpacks(bits: int) -> None:
    """Two write-backs of random out-buffer vectors under output backpressure: the words are
    the host's packing of the vectors (read back with ``unpack_values``), each vector is read
    before ``idx`` passes it (the testbench overwrites it then), ``count`` and ``err``
    follow the DMA writer's ``done`` and ``error``."""
    cfg, v = CFG_32, CFG_32.vec_len
    signed = bits != cfg.act_bits
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    rng = np.random.default_rng(bits)
    wpv = words_per_vector(cfg, bits)
    jobs = [(0x2000, 5), (0x4000, cfg.out_buf_depth)]          # (addr, vectors)
    mem = [rng.integers(lo, hi, v).tolist() for _ in range(cfg.out_buf_depth)]
    tb = _WriterBench(cfg, [list(x) for x in mem])
    dut = tb.writer
    words: list[list[int]] = [[] for _ in jobs]
    snapshots = []

    async def driver(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        for n, (addr, vecs) in enumerate(jobs):
            snapshots.append([list(x) for x in mem])
            ctx.set(dut.i.payload, {"addr": addr, "words": vecs * wpv, "last": vecs - 1,
                                    "wpv": wpv, "bits": bits})
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.cmd.ready, 0)
            await ctx.tick().repeat(2)
            assert not ctx.get(dut.busy), "started before the DMA writer took its command"
            ctx.set(dut.cmd.ready, 1)
            assert ctx.get(dut.cmd.valid) and ctx.get(dut.cmd.payload.addr) == addr
            assert ctx.get(dut.cmd.payload.words) == vecs * wpv
            await ctx.tick()
            ctx.set(dut.i.valid, 0)
            cleared = 0
            for _ in range(20 * vecs * wpv + 100):
                if len(words[n]) == vecs * wpv:
                    break
                ready = bool(rng.random() < 0.7)
                ctx.set(dut.o.ready, ready)
                # A vector that the writer has read may be overwritten at once.
                idx = ctx.get(dut.idx)
                ctx.set(tb.wr.en, cleared < idx)
                if cleared < idx:
                    mem[cleared] = rng.integers(lo, hi, v).tolist()
                    ctx.set(tb.wr.addr, cleared)
                    ctx.set(tb.wr.data, mem[cleared])
                    cleared += 1
                _, _, valid, word = await ctx.tick().sample(dut.o.valid, dut.o.payload)
                if valid and ready:
                    words[n].append(word)
            assert len(words[n]) == vecs * wpv, f"{len(words[n])} of {vecs * wpv} words came"
            ctx.set(dut.o.ready, 0)
            ctx.set(tb.wr.en, 0)
            await ctx.tick().repeat(3)
            assert ctx.get(dut.busy) and not ctx.get(dut.o.valid)
            ctx.set(dut.done, 1)
            ctx.set(dut.error, n == 1)
            await ctx.tick()
            ctx.set(dut.done, 0)
            await ctx.tick()
            assert not ctx.get(dut.busy)
            assert (ctx.get(dut.count), ctx.get(dut.err)) == (1, n == 1)

    _sim(tb, driver)
    for n, (_, vecs) in enumerate(jobs):
        got = [unpack_values(np.array(words[n][j * wpv:(j + 1) * wpv], np.uint64), bits, v,
                             signed=signed) for j in range(vecs)]
        np.testing.assert_array_equal(np.array(got), np.array(snapshots[n][:vecs]))


@pytest.mark.parametrize("every", [1, 3, 9])
@pytest.mark.parametrize("bits", [4, 32])
def test_writer_streams_behind_avail(every: int, bits: int) -> None:
    """A write-back given while its vectors are still being computed (``avail`` grows, a
    vector every ``every`` cycles, each written into the out buffer over a garbage word two
    cycles before ``avail`` passes it, as the engine's registered writes land): the words are
    the final vectors', so no vector was read before it was final; as 4-bit values and as
    32-bit logits (16 words a vector)."""
    cfg, v = CFG_32, CFG_32.vec_len
    rng = np.random.default_rng(every + bits)
    wpv, vecs = words_per_vector(cfg, bits), 40
    lo, hi = (0, 16) if bits == 4 else (-(1 << 31), 1 << 31)
    final = [rng.integers(lo, hi, v).tolist() for _ in range(vecs)]
    garbage = [rng.integers(lo, hi, v).tolist() for _ in range(cfg.out_buf_depth)]
    tb = _WriterBench(cfg, [list(x) for x in garbage])
    dut = tb.writer
    words: list[int] = []

    async def producer(ctx):
        ctx.set(dut.avail, 0)
        for j in range(vecs):
            ctx.set(tb.wr.en, 1)
            ctx.set(tb.wr.addr, j)
            ctx.set(tb.wr.data, final[j])
            await ctx.tick()
            ctx.set(tb.wr.en, 0)
            await ctx.tick().repeat(2)
            ctx.set(dut.avail, j + 1)
            if every > 1:
                await ctx.tick().repeat(every - 1)
        ctx.set(dut.avail, (1 << len(dut.avail)) - 1)

    async def driver(ctx):
        while ctx.get(dut.avail) == 0:            # vector 0 is final when the job comes
            await ctx.tick()
        ctx.set(dut.i.payload, {"addr": 0x2000, "words": vecs * wpv, "last": vecs - 1,
                                "wpv": wpv, "bits": bits})
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.cmd.ready, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(20 * vecs * (wpv + every) + 100):
            if len(words) == vecs * wpv:
                break
            ready = bool(rng.random() < 0.8)
            ctx.set(dut.o.ready, ready)
            _, _, valid, word = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                words.append(word)
        assert len(words) == vecs * wpv, f"{len(words)} of {vecs * wpv} words came"

    _sim(tb, driver, producer)
    np.testing.assert_array_equal(_vectors(words, wpv, bits, v, signed=bits == 32),
                                  np.array(final))


@pytest.mark.parametrize("bits", [4, 5])
def test_writer_writes_a_stream(bits: int) -> None:
    """A ``stream`` job (a conv-add's): vectors come on ``vin`` at random gaps and wait for
    its ready, and the words leave under output backpressure: they are the vectors' packing,
    in order; the out buffer (garbage) is never read; ``idx`` counts the vectors streamed."""
    cfg, v = CFG_32, CFG_32.vec_len
    rng = np.random.default_rng(100 + bits)
    signed = bits == cfg.act_bits + 1
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    wpv, vecs = words_per_vector(cfg, bits), 23
    vectors = [rng.integers(lo, hi, v).tolist() for _ in range(vecs)]
    garbage = [rng.integers(-99, 99, v).tolist() for _ in range(cfg.out_buf_depth)]
    tb = _WriterBench(cfg, [list(x) for x in garbage])
    dut = tb.writer
    words: list[int] = []

    async def producer(ctx):
        await ctx.tick().repeat(3)
        for vec in vectors:
            while rng.random() < 0.4:
                ctx.set(dut.vin.valid, 0)
                await ctx.tick()
            ctx.set(dut.vin.payload, [x & ((1 << lane_bits(cfg)) - 1) for x in vec])
            ctx.set(dut.vin.valid, 1)
            await ctx.tick().until(dut.vin.ready)
        ctx.set(dut.vin.valid, 0)

    async def driver(ctx):
        ctx.set(dut.i.payload, {"addr": 0x2000, "words": vecs * wpv, "last": vecs - 1,
                                "wpv": wpv, "bits": bits, "stream": 1})
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.cmd.ready, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        taken = 0
        while len(words) < vecs * wpv:
            ready = bool(rng.random() < 0.7)
            ctx.set(dut.o.ready, ready)
            assert not ctx.get(dut.rd_en), "a stream job read the out buffer"
            taken += ctx.get(dut.streamed)
            _, _, valid, word = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            assert ctx.get(dut.idx) == taken
            if valid and ready:
                words.append(word)
        ctx.set(dut.o.ready, 0)
        await ctx.tick().repeat(3)
        assert ctx.get(dut.busy) and taken == vecs
        ctx.set(dut.done, 1)
        await ctx.tick()
        ctx.set(dut.done, 0)
        await ctx.tick()
        assert not ctx.get(dut.busy) and ctx.get(dut.count) == 1

    _sim(tb, driver, producer)
    np.testing.assert_array_equal(_vectors(words, wpv, bits, v, signed=signed),
                                  np.array(vectors))


@pytest.mark.parametrize(("h", "w", "c", "pool"), [
    (7, 4, 12, POOL_TOP),      # a whole map: a zero row above, one below the last window
    (5, 5, 8, POOL_LEAD),      # a middle band: its first row leads into the windows
    (6, 9, 3, POOL_LEAD),      # the bottom band of an odd map: one zero row below
    (2, 1, 8, POOL_TOP),
])
def test_writer_pools_the_band(h: int, w: int, c: int, pool: int) -> None:
    """A pooled write-back: the words are the max-pool (3 x 3, stride 2) of the band in the
    out buffer (``quant.golden.maxpool`` of the band with its zero rows and columns), while
    the testbench overwrites every vector as soon as ``idx`` passes it; ``idx`` ends past the
    band."""
    cfg, v, act = CFG, CFG.vec_len, CFG.act_bits
    chunks = cfg.chunks(c)
    rng = np.random.default_rng(h * 100 + w * 10 + pool)
    band = rng.integers(0, 1 << act, (chunks * v, h, w))
    band[c:] = 0
    top = pool == POOL_TOP
    padded = np.pad(band, ((0, 0), (int(top), 1), (1, 1)))
    ph, pw = pooled_size(h, w, pool)
    want = golden.maxpool(padded[None], 3, 2, 0)[0][:, :ph, :pw]
    assert want.shape[1:] == (ph, pw)
    vecs = h * w * chunks
    mem = [band[k * v:(k + 1) * v, y, x].tolist() for y in range(h) for x in range(w)
           for k in range(chunks)]
    mem += [[0] * v for _ in range(cfg.out_buf_depth - vecs)]
    tb = _WriterBench(cfg, [list(x) for x in mem])
    dut = tb.writer
    wpv = words_per_vector(cfg, act)
    out_words: list[int] = []

    async def driver(ctx):
        window = {"height": h, "width": w, "chunks": chunks, "row_stride": w * chunks,
                  "out_h": ph, "out_w": pw, "kernel_h": 0, "kernel_w": 0, "stride": 0,
                  "pad_top": int(top), "pad_left": 0}
        ctx.set(dut.i.payload, {"addr": 0x2000, "words": ph * pw * chunks * wpv,
                                "last": vecs - 1, "wpv": wpv, "bits": act, "pool": 1,
                                "window": window})
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.cmd.ready, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        cleared = 0
        for _ in range(100 * vecs + 200):
            ready = bool(rng.random() < 0.7)
            ctx.set(dut.o.ready, ready)
            idx = ctx.get(dut.idx)
            ctx.set(tb.wr.en, cleared < min(idx, vecs))
            if cleared < min(idx, vecs):       # a freed vector is overwritten at once
                ctx.set(tb.wr.addr, cleared)
                ctx.set(tb.wr.data, [(1 << act) - 1] * v)
                cleared += 1
            _, _, valid, word = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                out_words.append(word)
            if len(out_words) == ph * pw * chunks * wpv and ctx.get(dut.idx) == vecs:
                break
        ctx.set(tb.wr.en, 0)
        await ctx.tick().repeat(3)
        assert ctx.get(dut.busy) and not ctx.get(dut.o.valid)
        assert ctx.get(dut.idx) == vecs
        ctx.set(dut.done, 1)
        await ctx.tick()
        ctx.set(dut.done, 0)
        await ctx.tick()
        assert not ctx.get(dut.busy) and ctx.get(dut.count) == 1

    _sim(tb, driver)
    assert len(out_words) == ph * pw * chunks * wpv
    got = np.array([unpack_values(np.array(out_words[j * wpv:(j + 1) * wpv], np.uint64), act,
                                  v, signed=False) for j in range(ph * pw * chunks)])
    got = got.reshape(ph, pw, chunks * v).transpose(2, 0, 1)
    np.testing.assert_array_equal(got, want)


# ---- WeightLoader ------------------------------------------------------------------------


def _pass_blocks(cfg: HwConfig, rng: np.random.Generator, passes: int, steps: int,
                 flags: int = 0) -> tuple[list[int], list[dict]]:
    """Random pass blocks in DDR order (``rtl.interface.ddr``: the header, two words per
    slot, the rows in port order) and what each should put in its bank."""
    wpr, word = row_words(cfg), word_bits(cfg)
    half = 1 << (cfg.acc_bits - 1)
    words, want = [], []
    for _ in range(passes):
        rows = [int(rng.integers(0, 1 << 62)) << (wpr * word - 62) | int(rng.integers(0, 1 << 62))
                for _ in range(steps)]
        slots = []
        words.append(flags)
        for _ in range(cfg.slots):
            valid = int(rng.random() < 0.8)
            # An invalid slot's bias may be anything; a valid one's fits the accumulator.
            bias = int(rng.integers(-half, half)) if valid else int(rng.integers(-1 << 31,
                                                                                 1 << 31))
            fields = {"bias": bias, "mult": int(rng.integers(0, 1 << 16)),
                      "shift": int(rng.integers(0, 64)), "valid": valid}
            channel = int(rng.integers(0, cfg.max_channels))
            words += pack_slot(channel=channel, **fields)
            # The bank keeps the bias's low acc_bits bits (all of a valid slot's).
            kept = (bias + half) % (2 * half) - half
            slots.append({**fields, "bias": kept, "channel": channel})
        flat = [(row >> (word * i)) & ((1 << word) - 1) for row in rows for i in range(wpr)]
        words += [flat[k] for k in pass_word_order(cfg, steps)]
        want.append({"rows": [r & ((1 << weight_row_bits(cfg)) - 1) for r in rows],
                     "slots": slots, "flags": flags & ((1 << (cfg.dsp_rows // 2)) - 1)})
    return words, want


def _run_loader(cfg: HwConfig, words: list[int], passes: int, steps: int, *,
                tiles: int = 1, error_port: int | None = None, seed: int = 0):
    """Runs the loader over ``words`` at ``BASE`` with a DMA reader model behind each port
    (random gaps, ``done`` a cycle after the last word), ``tiles`` times over (the later
    ones through ``follow``), emptying each bank as its pass comes. Returns the banks'
    contents per pass, the passes marked full, and the final (code, full). A long pass's
    rows past ``weight_buf_depth`` are read from the other bank; no row may be written into
    a bank whose pass has been marked full and not yet released (both banks, for a long
    pass)."""
    base = 0x4000
    mem = dict(enumerate(words))
    dut = WeightLoader(cfg=cfg)
    rng = np.random.default_rng(seed)
    banks = {0: {"rows": {}, "slots": {}, "flags": None}, 1: {"rows": {}, "slots": {},
                                                               "flags": None}}
    got: list[dict] = []
    end = {}
    held: set[int] = set()               # banks of passes marked full, not yet released
    depth = cfg.weight_buf_depth
    fixed8 = "fixed8" in cfg.weight_formats
    names = ["w_we", "w_bank", "w_waddr", "w_wdata", "slot_we", "slot_waddr"]
    names += ["fixed8_we", "fixed8_wdata"] if fixed8 else []
    fields = ["valid", "bias", "mult", "shift", "channel"]

    def port_model(j):
        port = getattr(dut, f"port{j}")

        async def run(ctx):
            while True:
                ctx.set(port.cmd.ready, 1)
                while True:
                    _, _, valid, addr, count = await ctx.tick().sample(
                        port.cmd.valid, port.cmd.payload.addr, port.cmd.payload.words)
                    if valid:
                        break
                ctx.set(port.cmd.ready, 0)
                await ctx.tick().repeat(int(rng.integers(1, 6)))
                for i in range(count):
                    while rng.random() < 0.3:
                        ctx.set(port.data.valid, 0)
                        await ctx.tick()
                    ctx.set(port.data.payload, mem[(addr - base) // 8 + i])
                    ctx.set(port.data.valid, 1)
                    await ctx.tick().until(port.data.ready)
                ctx.set(port.data.valid, 0)
                ctx.set(port.done, 1)
                ctx.set(port.error, j == error_port)
                await ctx.tick()
                ctx.set(port.done, 0)
        return run

    async def observer(ctx):
        while True:
            sampled = await ctx.tick().sample(*[getattr(dut.banks, n) for n in names],
                                              *[getattr(dut.banks.slot_wdata, f)
                                                for f in fields])
            s = dict(zip(names + fields, sampled[2:], strict=True))
            if s["w_we"]:
                bank, row = s["w_bank"] ^ (s["w_waddr"] >= depth), s["w_waddr"] % depth
                assert bank not in held, f"row {s['w_waddr']} written into held bank {bank}"
                banks[bank]["rows"][row] = s["w_wdata"]
            if s["slot_we"]:
                banks[s["w_bank"]]["slots"][s["slot_waddr"]] = {f: s[f] for f in fields}
            if fixed8 and s["fixed8_we"]:
                banks[s["w_bank"]]["flags"] = s["fixed8_wdata"].as_value().value

    async def control(ctx):
        ctx.set(dut.weight_addr, base)
        ctx.set(dut.steps, steps)
        ctx.set(dut.passes, passes)
        ctx.set(dut.pass_words, pass_block_words(cfg, steps))
        # The rows per port settle in AHEAD_CYCLES, as the engine allows them.
        await ctx.tick().repeat(AHEAD_CYCLES)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        bank0 = 0
        for tile in range(tiles):
            for p in range(passes):
                bank = (p & 1) ^ bank0
                for _ in range(3000):
                    if ctx.get(dut.full) >> bank & 1 or ctx.get(dut.code):
                        break
                    await ctx.tick()
                if not ctx.get(dut.full) >> bank & 1:
                    break
                b = banks[bank]
                spans = {bank, bank ^ 1} if steps > depth else {bank}
                held.update(spans)
                got.append({"rows": [banks[bank ^ (r >= depth)]["rows"].get(r % depth)
                                     for r in range(steps)],
                            "slots": [b["slots"].get(s) for s in range(cfg.slots)],
                            "flags": b["flags"] if fixed8 else 0, "bank": bank})
                for k in spans:
                    banks[k]["rows"] = {}
                banks[bank] = {"rows": {}, "slots": {}, "flags": None}
                if tile + 1 < tiles and p == passes - 1:
                    # The next tile's passes follow on once this one's are all loaded.
                    ctx.set(dut.follow, 1)
                    await ctx.tick().until(dut.carried)
                    ctx.set(dut.follow, 0)
                    bank0 ^= passes & 1
                # The core runs the pass a while: the loader fills the free bank meanwhile,
                # and must not touch a held one.
                await ctx.tick().repeat(1 + int(rng.integers(0, 2 * steps)))
                ctx.set(dut.release, 1)
                ctx.set(dut.release_bank, bank)
                await ctx.tick()
                ctx.set(dut.release, 0)
                held.difference_update(spans)
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
        await ctx.tick().repeat(20)
        end.update(code=ctx.get(dut.code), full=ctx.get(dut.full), busy=ctx.get(dut.busy),
                   carried=ctx.get(dut.carried))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for j in range(cfg.weight_ports):
        sim.add_testbench(port_model(j), background=True)
    sim.add_testbench(observer, background=True)
    sim.add_testbench(control)
    sim.run()
    return got, end


@pytest.mark.parametrize(("cfg", "steps"), [(CFG, 1), (CFG, 2), (CFG, 10), (CFG_LONG, 16),
                                            (CFG_LONG, 17), (CFG_LONG, 32)])
def test_weight_loader_fills_the_banks(cfg: HwConfig, steps: int) -> None:
    """Three passes of random rows, slots and flags over three weight ports, twice (the
    second tile through ``follow``): each pass lands whole in its bank, pass 0 of the second
    tile in the bank after the first tile's last; a long pass's later rows in the other
    bank, which no pass is loaded into until it is released."""
    passes = 3
    words, want = _pass_blocks(cfg, np.random.default_rng(steps), passes, steps, flags=0b10)
    got, end = _run_loader(cfg, words, passes, steps, tiles=2, seed=steps)
    assert len(got) == 2 * passes
    for n, g in enumerate(got):
        w = want[n % passes]
        assert g["bank"] == (n % passes & 1) ^ (n // passes)
        assert g["rows"] == w["rows"], f"pass {n}: rows"
        assert g["slots"] == w["slots"], f"pass {n}: slots"
        assert g["flags"] == w["flags"], f"pass {n}: flags"
    assert end == {"code": ErrorCode.NONE, "full": 0, "busy": 0, "carried": 0}


@pytest.mark.parametrize("fault", ["bias", "format", "axi"])
def test_weight_loader_error_codes(fault: str) -> None:
    """A valid slot's bias beyond the accumulator, Fixed-8 pairs on a build without Fixed-8,
    an error response on one port: the loader stops with its code, and the pass that had it
    is not marked full (the pass before it is)."""
    cfg, passes, steps = CFG, 3, 4
    if fault == "format":
        cfg = CFG.replace(name="units-no-fixed8", weight_formats=("pot4", "fixed4"))
    words, _ = _pass_blocks(cfg, np.random.default_rng(3), passes, steps)
    block = pass_block_words(cfg, steps)
    if fault == "bias":                  # pass 1, slot 2
        offset, width = SLOT_FIELDS["bias"]
        at = block + PASS_HEADER_WORDS + 2 * SLOT_WORDS
        big = 1 << (cfg.acc_bits - 1)
        words[at] = (words[at] & ~(((1 << width) - 1) << offset)) | (1 << 63) | big << offset
    elif fault == "format":              # pass 1's header
        words[block] = 1
    got, end = _run_loader(cfg, words, passes, steps,
                           error_port=0 if fault == "axi" else None)
    code = {"bias": ErrorCode.BAD_DESCRIPTOR, "format": ErrorCode.UNSUPPORTED_FORMAT,
            "axi": ErrorCode.AXI_RESPONSE}[fault]
    loaded = 0 if fault == "axi" else 1
    assert len(got) == loaded and (end["code"], end["busy"]) == (code, 0)
    assert end["full"] == 0
