"""ResNet's stem max-pool (3 x 3, stride 2, padding 1) fused into the stem conv's write-back:
which pairs fuse, the network plan with and without fusion, the emulated network against the
golden model, and the emulator's refusal of pooled descriptors the engine does not run."""

from __future__ import annotations

import numpy as np
import pytest

from firmware import emu
from firmware.driver import Accelerator
from firmware.emu import EmuBackend
from firmware.network import plan_network
from quant import golden
from quant.random_model import random_images, random_resnet18
from rtl.config import preset
from rtl.interface.ddr import feature_map_words, pass_block_words, unpack_feature_map
from rtl.interface.descriptor import (
    DESC_MAGIC,
    FIELDS,
    POOL_LEAD,
    POOL_TOP,
    Op,
    PostMode,
    fusable_adds,
    fusable_pools,
    pooled_size,
    run_order,
    split_descriptors,
    unpack_descriptor,
)
from rtl.interface.regmap import ErrorCode
from rtl.interface.tiling import TilingError, layer_descriptors
from tests.firmware_util import SMALL, compiled, make_package

#: random_resnet18 keyword arguments of networks with the standard stem (7x7/2 conv, 3x3/2
#: max-pool): odd and even maps, square and not.
STEMS = {
    "stem-35": dict(seed=2, input_shape=(3, 35, 35), width=0.125, ratio="65:30:5"),
    "stem-30x41": dict(seed=6, input_shape=(3, 30, 41), width=0.125, ratio="60:35:5"),
    "stem-40x26-8bit": dict(seed=7, input_shape=(3, 40, 26), width=0.125, ratio="0:100:0",
                            first_last_8bit=True),
}


#: (config, network) where a pooled row's tiles do not fit: the folded stem's input band of
#: three conv rows (6 rows of 48 words) exceeds SMALL's 256-word act buffer, so the pool
#: runs on its own even where the fusion is forced (``fuse_pool=True``; on SMALL the fusion
#: never pays, see test_fusion_pays_where_the_out_buffer_holds_many_rows).
APART = {("engine-sim", "stem-30x41")}


def _model(name: str):
    return random_resnet18(**STEMS[name], small_stem=False)


def _descs(plan, job) -> list[dict[str, int]]:
    table = dict(plan.memory)[plan.chain_addr]
    first = (job.desc_addr - plan.chain_addr) // len(split_descriptors(table, 0, 1)[0])
    return [unpack_descriptor(d) for d in split_descriptors(table, first, job.desc_count)]


def test_fusable_pools_only_the_stems_pair() -> None:
    model = _model("stem-35")
    assert fusable_pools(model.nodes) == {"conv1": "maxpool"}
    conv = {"name": "c", "op": "conv", "inputs": ["input"], "relu": True}
    pool = {"name": "p", "op": "maxpool", "inputs": ["c"], "kernel": 3, "stride": 2,
            "padding": 1}
    after = {"name": "n", "op": "conv", "inputs": ["p"], "relu": True}
    assert fusable_pools([conv, pool, after]) == {"c": "p"}
    assert fusable_pools([{**conv, "relu": False}, pool, after]) == {}     # signed values
    for other in ({"kernel": 2}, {"stride": 1}, {"padding": 0}):
        assert fusable_pools([conv, {**pool, **other}, after]) == {}
    # The conv's output read elsewhere too: it must be stored.
    assert fusable_pools([conv, pool, {**after, "inputs": ["c"]}]) == {}
    assert fusable_pools([conv, pool, {**after, "op": "add", "inputs": ["p", "c"]}]) == {}


@pytest.mark.parametrize("cfg", [SMALL, preset("pynq-z2")], ids=lambda c: c.name)
@pytest.mark.parametrize("name", list(STEMS))
def test_plan_fuses_the_stem_pool(cfg, name) -> None:
    """One "conv+maxpool" job named after the conv, writing the pool's tensor; its tiles
    start at the map's top and cover the pooled map; fuse=False plans the pool apart."""
    model = _model(name)
    info = model.infer()
    plan = plan_network(model, cfg, base=0, size=1 << 30, fuse_pool=True)
    apart = plan_network(model, cfg, base=0, size=1 << 30, fuse=False)
    assert plan_network(model, cfg, base=0, size=1 << 30, fuse_pool=False).jobs[1].op == \
        "maxpool"
    assert [(j.name, j.op) for j in apart.jobs[:2]] == [("conv1", "conv"),
                                                        ("maxpool", "maxpool")]
    assert apart.jobs[0].out.shape == info["conv1"].shape
    assert all(d["pool"] == 0 for job in apart.jobs for d in _descs(apart, job))
    if (cfg.name, name) in APART:
        with pytest.raises(TilingError, match=r"^conv1: one pooled output row needs 288 "):
            layer_descriptors(cfg, pad=0, name="conv1",
                              **{**_descs(apart, apart.jobs[0])[0], "pool": POOL_TOP,
                                 "in_h": apart.input.shape[1],
                                 "out_h": info["conv1"].shape[1]})
        assert [(j.name, j.op) for j in plan.jobs[:2]] == [("conv1", "conv"),
                                                           ("maxpool", "maxpool")]
        return
    jobs = {job.name: job for job in plan.jobs}
    assert "maxpool" not in jobs
    stem = jobs["conv1"]
    assert stem.op == "conv+maxpool"
    assert stem.out.shape == info["maxpool"].shape
    descs = _descs(plan, stem)
    assert [d["pool"] for d in descs] == [POOL_TOP] + [POOL_LEAD] * (len(descs) - 1)
    assert all(d["op"] == Op.CONV and d["mode"] == PostMode.RELU for d in descs)
    rows = [pooled_size(d["out_h"], d["out_w"], d["pool"]) for d in descs]
    assert sum(r for r, _ in rows) == stem.out.shape[1]
    assert {w for _, w in rows} == {stem.out.shape[2]}
    assert descs[0]["out_addr"] == stem.out.addr
    # The next layer reads the pooled map, the conv's own output is nowhere.
    assert _descs(plan, plan.jobs[1])[0]["in_addr"] == stem.out.addr
    if cfg is SMALL:
        assert len(descs) > 1                                   # tiled in pooled rows
    assert len(apart.jobs) == len(plan.jobs) + 1 + len(fusable_adds(model.nodes))


@pytest.mark.parametrize("cfg", [SMALL, preset("pynq-z2")], ids=lambda c: c.name)
@pytest.mark.parametrize("name", list(STEMS))
def test_emulated_network_with_fused_pool_equals_golden(tmp_path, cfg, name) -> None:
    """Layer by layer: each job's output map in DDR (for the fused stem: the max-pool's)
    equals the golden tensor of the node whose output it writes; the logits, bit for bit,
    layer by layer and as one chain."""
    model = _model(name)
    pkg = make_package(tmp_path / "pkg", cfg)
    _, _, net = compiled(model, pkg, tmp_path, fuse_pool=True)
    plan = plan_network(model, cfg, base=0, size=1 << cfg.axi_addr_width, fuse_pool=True)
    assert net.layers[0]["op"] == ("conv" if (cfg.name, name) in APART else "conv+maxpool")
    images = random_images(np.random.default_rng(3), 2, model.input_shape)
    values = golden.run_all(model, images[:1])
    expected = golden.run(model, images)
    acc = Accelerator(EmuBackend(pkg, memory_size=net.size + 4096), pkg)
    acc.load(net)
    # A job named after a conv that runs its add or max-pool writes that node's tensor.
    nodes = run_order(model.nodes)
    inside = {"conv+add": fusable_adds(nodes), "conv+maxpool": fusable_pools(nodes)}
    result = acc.infer(images[0], per_layer=True)
    np.testing.assert_array_equal(result.logits, expected[0])
    memory = acc.backend.memory
    for job, layer in zip(plan.jobs, net.layers, strict=True):
        assert (layer["name"], layer["out_offset"]) == (job.name, job.out.addr)
        if job.out.ttype.bits == 32:
            continue                                     # the logits, checked above
        words = np.frombuffer(memory.read(job.out.addr, 8 * job.out.words(cfg)), "<u8")
        got = unpack_feature_map(words, job.out.shape, job.out.ttype.bits,
                                 signed=job.out.ttype.signed, cfg=cfg)
        node = inside.get(job.op, {}).get(job.name, job.name)
        np.testing.assert_array_equal(got, values[node][0], err_msg=job.name)
    np.testing.assert_array_equal(acc.infer(images[1]).logits, expected[1])


def test_fusion_pays_where_the_out_buffer_holds_many_rows() -> None:
    """ResNet-18's stem at 224 x 224: on zc706 (18 conv rows of 112 x 64 channels in the out
    buffer, 8 tiles, 4 weight rows a pixel) the recomputed lead rows (7 x 112 x 4 cycles) are
    far fewer than the 2 x 50,176 words of the conv's output that the fusion keeps out of
    DDR: it fuses. On pynq-z2 the out buffer holds 4 conv rows of 112 x 4 chunks, so a tile
    pools one row from three, and recomputing a third of a 12-step conv costs more than the
    traffic it saves: the pool runs on its own. The tiny test networks never pay (16 steps a
    pixel against one word a pixel)."""
    model = random_resnet18(1, input_shape=(3, 224, 224), width=1.0, ratio="65:30:5",
                            small_stem=False)
    jobs = {b: plan_network(model, preset(b), base=0, size=1 << 32).jobs[:2]
            for b in ("zc706", "pynq-z2")}
    assert [j.op for j in jobs["zc706"]] == ["conv+maxpool", "conv"]
    assert [j.op for j in jobs["pynq-z2"]] == ["conv", "maxpool"]
    assert plan_network(_model("stem-35"), SMALL, base=0, size=1 << 30).jobs[1].op == "maxpool"


# ---- the emulator's checks of a pooled descriptor ------------------------------------------

CFG = SMALL
BASE, SIZE = 0x1000_0000, 1 << 20


def _pooled(**over: int) -> dict[str, int]:
    """A legal pooled tile: 3x3/1 conv of 7 x 9 on 8 channels, pool at the top."""
    d = {name: 0 for name, _ in FIELDS}
    d.update(magic=DESC_MAGIC, op=Op.CONV, in_h=7, in_w=9, in_c=8, out_h=7, out_w=9,
             out_c=8, kernel_h=3, kernel_w=3, stride=1, pad_top=1, pad_bottom=1, pad_left=1,
             pad_right=1, mode=PostMode.RELU, pool=POOL_TOP, in_bits=CFG.act_bits,
             out_bits=CFG.act_bits, passes=1, steps=CFG.steps((3, 3), 8))
    d.update(over)
    sizes = {"in_addr": feature_map_words(CFG, (8, d["in_h"], d["in_w"]), d["in_bits"]),
             "weight_addr": d["passes"] * pass_block_words(CFG, d["steps"])}
    d["in_addr"], d["weight_addr"] = BASE, BASE + 8 * sizes["in_addr"]
    d["out_addr"] = d["weight_addr"] + 8 * sizes["weight_addr"]
    d.update({k: v for k, v in over.items() if k.endswith("_addr")})
    return d


def _code(d: dict[str, int], size: int = SIZE) -> ErrorCode:
    bus = emu._Bus(emu.EmuMemory(8), BASE, size)
    try:
        emu.check_descriptor(bus, d, CFG)
    except emu._Fault as fault:
        return ErrorCode(fault.code)
    return ErrorCode.NONE


def test_a_pooled_tile_is_accepted() -> None:
    assert _code(_pooled()) == ErrorCode.NONE
    assert _code(_pooled(pool=POOL_LEAD)) == ErrorCode.NONE
    assert _code(_pooled(out_h=1, in_h=1, pool=POOL_TOP)) == ErrorCode.NONE   # 1 pooled row


@pytest.mark.parametrize("fields", [
    dict(mode=PostMode.SIGNED, out_bits=SMALL.act_bits + 1),
    dict(mode=PostMode.LOGITS, out_bits=32),
    dict(op=Op.CONV_ADD, mode=PostMode.RELU, in2_bits=SMALL.act_bits),
    dict(pool=3),
    dict(pool=0xFFFF_FFFF),
    dict(pool=POOL_LEAD, out_h=1, in_h=1),        # a lead row alone pools to no row
    dict(op=Op.MAXPOOL, pool=POOL_TOP),           # pool is a conv's field only
])
def test_bad_pooled_descriptors(fields) -> None:
    d = _pooled(**fields)
    d["in2_addr"] = BASE
    assert _code(d) == ErrorCode.BAD_DESCRIPTOR
    # The same fields without the pool are fine (unless the op is wrong for them anyway).
    if "pool" not in fields:
        assert _code({**d, "pool": 0}) == ErrorCode.NONE


@pytest.mark.parametrize("op", [Op.ADD, Op.MAXPOOL, Op.AVGPOOL])
def test_pool_field_on_other_ops_is_bad(op) -> None:
    d = {name: 0 for name, _ in FIELDS}
    d.update(magic=DESC_MAGIC, op=op, in_h=4, in_w=4, in_c=8, out_c=8, out_h=4, out_w=4,
             kernel_h=1, kernel_w=1, stride=1, in_bits=CFG.act_bits, in2_bits=CFG.act_bits,
             out_bits=CFG.act_bits, in_addr=BASE, in2_addr=BASE, out_addr=BASE)
    if op == Op.AVGPOOL:
        d.update(out_h=1, out_w=1)
    assert _code(d) == ErrorCode.NONE
    assert _code({**d, "pool": POOL_TOP}) == ErrorCode.BAD_DESCRIPTOR


def test_window_holds_the_pooled_map() -> None:
    """The output's byte range is the pooled map's (4 x 5 of 7 x 9), not the conv band's;
    the out-buffer limit is still the conv band's."""
    d = _pooled()
    pooled = 8 * feature_map_words(CFG, (8, 4, 5), CFG.act_bits)
    end = d["out_addr"] + pooled - BASE
    assert _code(d, size=end) == ErrorCode.NONE
    assert _code(d, size=end - 8) == ErrorCode.ADDR_OUT_OF_WINDOW
    assert _code({**d, "out_addr": d["out_addr"] + 4}) == ErrorCode.MISALIGNED_ADDR
    # 8 x 9 conv rows (72 words) exceed the 64-word out buffer, however small their pool.
    assert CFG.out_buf_depth == 64 and CFG.chunks(8) == 1
    assert _code(_pooled(in_h=8, out_h=8)) == ErrorCode.LAYER_TOO_LARGE
