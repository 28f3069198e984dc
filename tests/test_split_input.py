"""First-layer pixels split into nibbles on a ``split_input`` build (``rtl.interface.stem``):
the split map's layout, the same integers as the layer, the plan and descriptors, the
emulated network against the golden model, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.driver import Accelerator
from firmware.emu import EmuBackend
from firmware.network import plan_network
from quant import golden
from quant.fit import ModelMismatchError
from quant.random_model import random_conv_layer, random_images, random_resnet18
from rtl.config import preset
from rtl.cycle_model import resnet18_cycles
from rtl.interface.ddr import unpack_feature_map
from rtl.interface.descriptor import split_descriptors, unpack_descriptor
from rtl.interface.stem import (
    Fold,
    fold_input,
    fold_plan,
    fold_weight,
    split_channels,
    split_pixels,
    split_weight,
)
from tests.firmware_util import SMALL, compiled, make_package
from tests.test_stem import _taps

#: SMALL with the pixels split (its act buffer doubled: the split stem's band of one output
#: row takes 288 words).
SPLIT = SMALL.replace(name="engine-sim-split", split_input=True, dsp_pack=4, act_buf_depth=512)


def test_split_map_layout_by_hand() -> None:
    """Chunk 2k: the low nibbles of chunk k's channels; chunk 2k + 1: their high nibbles."""
    v = SPLIT.vec_len                                   # 8
    x = np.zeros((10, 1, 2), np.int64)                  # two chunks of 8 channels
    x[0, 0, 0], x[1, 0, 1], x[9, 0, 0] = 0xAB, 0x0F, 0xF0
    s = split_pixels(x, SPLIT)
    assert s.shape == (4 * v, 1, 2) == (split_channels(10, SPLIT), 1, 2)
    assert (s[0, 0, 0], s[v, 0, 0]) == (0xB, 0xA)
    assert (s[1, 0, 1], s[v + 1, 0, 1]) == (0xF, 0x0)
    assert (s[2 * v + 1, 0, 0], s[3 * v + 1, 0, 0]) == (0x0, 0xF)
    assert np.count_nonzero(s) == 4
    w = np.arange(10 * 3 * 3).reshape(1, 10, 3, 3).astype(np.int8)
    ws = split_weight(w, SPLIT)
    assert ws.shape == (1, 4 * v, 3, 3) and ws.dtype == w.dtype
    np.testing.assert_array_equal(ws[0, 0], w[0, 0])
    np.testing.assert_array_equal(ws[0, v + 1], w[0, 1])
    np.testing.assert_array_equal(ws[0, 3 * v + 1], w[0, 9])
    assert not ws[0, 3 * v + 2:].any()
    assert split_weight(w[:, :, 0, 0], SPLIT).shape == (1, 4 * v)


@pytest.mark.parametrize("fold", [False, True])
@pytest.mark.parametrize(("k", "s", "p", "size", "cin"), [
    (7, 2, 3, 20, 3), (3, 1, 1, 9, 12), (1, 1, 0, 5, 3)])
def test_split_layer_equals_the_layer(fold, k, s, p, size, cin) -> None:
    """The split layer with its odd chunks' products times 16 gives the layer's integers
    (against the golden model's conv of the whole pixels), folded or not."""
    rng = np.random.default_rng(k + size)
    x, _, params, _ = random_conv_layer(rng, cin=cin, cout=7, kernel=k, stride=s, pad=p,
                                        size=size, ratio=(60, 35, 5), relu=True, in_bits=8,
                                        act_bits=4)
    x[0, 0, 0, 0] = 255                                 # both nibbles at their top
    expected = golden.conv2d_acc(x, params["weight"], s, p)[0]
    xs, w, stride, pad = x[0], params["weight"], s, p
    if fold and s == 2:
        f = Fold(k, p, (cin, size, size), unroll=True)
        xs, w, stride, pad = fold_input(xs, f), fold_weight(w, f), 1, 0
    xs, w = split_pixels(xs, SPLIT), split_weight(w, SPLIT)
    assert xs.max() <= 15
    hi = np.arange(xs.shape[0]) // SPLIT.vec_len % 2 == 1
    scaled = np.where(hi[:, None, None], 16 * xs, xs)
    got = golden.conv2d_acc(scaled[None], w, stride, pad)[0] if w.shape[2] == w.shape[3] \
        else _taps(scaled, w)
    np.testing.assert_array_equal(got, expected)


def test_split_pixels_refuses_values_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"^pixels to split must be in \[0, 255\], found "
                                         r"\[0, 256\]$"):
        split_pixels(np.array([[[0, 256]]]), SPLIT)


def test_fold_plan_counts_the_split_chunks() -> None:
    stem = {"op": "conv", "kernel": 7, "stride": 2, "padding": 3}
    # zc706: 48 unrolled channels split into 2 chunks of 64: 4 x 2 rows a pixel.
    zc = preset("zc706").replace(split_input=True, dsp_pack=4)
    assert fold_plan(stem, (3, 224, 224), zc) == Fold(7, 3, (3, 224, 224), unroll=True)
    # pynq-z2 (an act buffer of 8192): unrolled, 4 x 6 rows a pixel, one output row's band of
    # 4 x 112 pixels of 6 chunks (2688 vectors) within half the act buffer.
    pz = preset("pynq-z2")
    assert pz.split_input
    assert fold_plan(stem, (3, 224, 224), pz) == Fold(7, 3, (3, 224, 224), unroll=True)
    # With 4096 that band passes half of it, so the plain fold (12 channels: 2 chunks, 16
    # taps) runs.
    half = pz.replace(act_buf_depth=4096)
    assert fold_plan(stem, (3, 224, 224), half) == Fold(7, 3, (3, 224, 224))


def _model():
    return random_resnet18(seed=4, input_shape=(3, 30, 30), width=0.125, ratio="60:35:5",
                           small_stem=False)


def test_plan_splits_the_first_conv_only() -> None:
    model = _model()
    plan = plan_network(model, SPLIT, base=0, size=1 << 32)
    assert plan.split and plan.input.ttype.bits == 4
    assert plan.input.shape[0] == split_channels(plan.fold.folded_shape[0], SPLIT)
    table = dict(plan.memory)[plan.chain_addr]
    descs = [unpack_descriptor(d) for d in split_descriptors(table)]
    first = plan.jobs[0].desc_count
    assert all(d["split"] == 1 and d["in_bits"] == 4 and d["in_c"] == plan.input.shape[0]
               and d["steps"] == SPLIT.steps((d["kernel_h"], d["kernel_w"]), d["in_c"])
               for d in descs[:first])
    assert not any(d["split"] for d in descs[first:])
    plain = plan_network(model, SMALL, base=0, size=1 << 32)
    assert not plain.split and plain.input.ttype.bits == 8


@pytest.mark.parametrize("fuse_pool", [False, True])
def test_emulated_split_network_equals_golden(tmp_path, fuse_pool) -> None:
    """The compiled network on the split build, emulated: the logits and every stored map
    bit for bit against the golden model, layer by layer and as one chain."""
    model = _model()
    pkg = make_package(tmp_path / "pkg", SPLIT)
    _, _, net = compiled(model, pkg, tmp_path, fuse_pool=fuse_pool)
    assert net.manifest["input"]["split"] and net.manifest["input"]["bits"] == 4
    images = random_images(np.random.default_rng(5), 2, model.input_shape)
    images[0][0, 0, 0] = 255
    expected = golden.run(model, images)
    values = golden.run_all(model, images[:1])
    acc = Accelerator(EmuBackend(pkg, memory_size=net.size + 4096), pkg)
    acc.load(net)
    result = acc.infer(images[0], per_layer=True)
    np.testing.assert_array_equal(result.logits, expected[0])
    plan = plan_network(model, SPLIT, base=0, size=1 << 32, fuse_pool=fuse_pool)
    job = plan.jobs[0]
    if job.op == "conv":                       # the split conv's own output map
        words = np.frombuffer(acc.backend.memory.read(job.out.addr, 8 * job.out.words(SPLIT)),
                              "<u8")
        got = unpack_feature_map(words, job.out.shape, job.out.ttype.bits, signed=False,
                                 cfg=SPLIT)
        np.testing.assert_array_equal(got, values[job.name][0])
    np.testing.assert_array_equal(acc.infer(images[1]).logits, expected[1])


def test_split_build_refuses_a_network_whose_input_is_not_a_convs() -> None:
    model = _model()
    pool = next(n for n in model.manifest["nodes"] if n["op"] == "maxpool")
    # A second reader of the image, a max-pool of it whose output nothing reads.
    model.manifest["nodes"].insert(0, {**pool, "name": "peek", "inputs": ["input"]})
    model.infer()
    with pytest.raises(ModelMismatchError, match=r"peek read\(s\) the network input, but "
                                                 r"this hardware \(split_input\)"):
        plan_network(model, SPLIT, base=0, size=1 << 32)
    plan_network(model, SMALL, base=0, size=1 << 32)       # the plain build runs it


def test_cycle_model_runs_the_split_stem() -> None:
    """ResNet-18 on a split zc706: the stem's descriptors are split, their steps doubled."""
    cfg = preset("zc706").replace(split_input=True, dsp_pack=4)
    descs: list[bytes] = []
    layers = resnet18_cycles(cfg, "65:30:5", descriptors=descs)
    fields = [unpack_descriptor(d) for d in descs]
    stem = [d for d in fields if d["split"]]
    assert len(stem) == layers[0].tiles and stem == fields[:len(stem)]
    assert all(d["in_c"] == 128 and d["in_bits"] == 4 and d["steps"] == 8 for d in stem)
