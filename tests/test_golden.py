"""Golden model: hand-computed ops, an independent loop/torch reference, whole ResNet-18 runs."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from quant import contract as C
from quant import golden
from quant.fit import ModelMismatchError, check_fits, layer_acc_bound
from quant.model_format import FORMAT_NAME, FORMAT_VERSION, QModel
from quant.random_model import random_images, random_resnet18
from quant.schemes import parse_ratio, scheme_counts
from rtl.config import preset

IMG = np.arange(1, 10).reshape(1, 1, 3, 3)


# ---- single ops, by hand ----------------------------------------------------------------------

def test_conv_acc_by_hand():
    ones = np.ones((1, 1, 3, 3), np.int8)
    np.testing.assert_array_equal(golden.conv2d_acc(IMG, ones, 1, 1)[0, 0],
                                  [[12, 21, 16], [27, 45, 33], [24, 39, 28]])
    np.testing.assert_array_equal(golden.conv2d_acc(IMG, ones, 2, 1)[0, 0], [[12, 16], [24, 28]])
    np.testing.assert_array_equal(golden.conv2d_acc(IMG, ones, 1, 0)[0, 0], [[45]])
    # Two filters, two input channels, a negative weight.
    x = np.stack([IMG[0, 0], 10 * IMG[0, 0]])[None]        # (1, 2, 3, 3)
    w = np.zeros((2, 2, 1, 1), np.int8)
    w[0, 0, 0, 0], w[0, 1, 0, 0] = 1, -1                   # x0 - x1 = -9 * x0
    w[1, 1, 0, 0] = 64                                     # 640 * x0
    acc = golden.conv2d_acc(x, w, 1, 0)
    np.testing.assert_array_equal(acc[0, 0], -9 * IMG[0, 0])
    np.testing.assert_array_equal(acc[0, 1], 640 * IMG[0, 0])


def _conv_node(relu=True, k=3, stride=1, padding=1):
    return {"name": "c", "op": "conv", "inputs": ["input"], "in_channels": 1, "out_channels": 1,
            "kernel": k, "stride": stride, "padding": padding, "relu": relu}


def test_conv_layer_bias_requant_relu_by_hand():
    w = np.zeros((1, 1, 3, 3), np.int8)
    w[0, 0, 1, 1] = 2
    p = {"weight": w, "bias": np.array([-3], np.int32), "mult": np.array([1], np.uint16),
         "shift": np.array([1], np.uint8)}
    # ((2x - 3) + 1) >> 1 = x - 1 for x = 1..9
    np.testing.assert_array_equal(golden.conv(IMG, _conv_node(), p, 4)[0, 0],
                                  [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    p["mult"] = np.array([5], np.uint16)
    # ((2x - 3) * 5 + 1) >> 1: x=1 -> -2 (clamped 0 with ReLU), x=9 -> 38 -> 15
    out = golden.conv(IMG, _conv_node(relu=True), p, 4)[0, 0]
    np.testing.assert_array_equal(out, [[0, 3, 8], [13, 15, 15], [15, 15, 15]])
    out = golden.conv(IMG, _conv_node(relu=False), p, 4)[0, 0]
    np.testing.assert_array_equal(out, [[-2, 3, 8], [13, 15, 15], [15, 15, 15]])


def test_maxpool_by_hand():
    x = np.array([[1, 2, 0, 3], [4, 9, 1, 1], [0, 0, 7, 2], [5, 1, 2, 8]])[None, None]
    # windows centred on (0,0), (0,2), (2,0), (2,2) with zero padding
    np.testing.assert_array_equal(golden.maxpool(x, 3, 2, 1)[0, 0], [[9, 9], [9, 9]])
    np.testing.assert_array_equal(golden.maxpool(x, 2, 2, 0)[0, 0], [[9, 3], [5, 8]])


def test_avgpool_by_hand():
    x = np.array([[1, 2], [3, 4]])[None, None]              # sum 10
    np.testing.assert_array_equal(golden.avgpool(x, 1, 2, 4), [[[[3]]]])   # 10/4 = 2.5 -> 3
    np.testing.assert_array_equal(golden.avgpool(15 * np.ones((1, 2, 7, 7)), 1337, 16, 4),
                                  [[[[15]], [[15]]]])


def test_fc_by_hand():
    x = np.array([[[[2]], [[3]]]])                          # (1, 2, 1, 1)
    p = {"weight": np.array([[1, -1], [4, 2]], np.int8), "bias": np.array([10, -5], np.int32),
         "mult": np.array([1, 3], np.uint16), "shift": np.array([0, 1], np.uint8)}
    # row 0: 2 - 3 + 10 = 9 ; row 1: (8 + 6 - 5) * 3 / 2 = 13.5 -> 14
    np.testing.assert_array_equal(golden.fc(x, p), [[9, 14]])


def test_add_by_hand():
    node = {"mult": [3, 5], "shift": [2, 3], "relu": True}
    a, b = np.array([-12, 20]), np.array([9, 3])
    # -9 + 6 = -3 -> 0 ; 15 + 2 (1.875 -> 2) = 17 -> 15
    np.testing.assert_array_equal(golden.add(a, b, node, 4), [0, 15])


# ---- independent references -------------------------------------------------------------------

def _loop_conv(x, w, stride, padding):
    """Textbook six-loop convolution in Python integers."""
    n, cin, h, wd = x.shape
    cout, _, k, _ = w.shape
    ho, wo = (h + 2 * padding - k) // stride + 1, (wd + 2 * padding - k) // stride + 1
    out = np.zeros((n, cout, ho, wo), dtype=object)
    for b in range(n):
        for o in range(cout):
            for i in range(ho):
                for j in range(wo):
                    s = 0
                    for c in range(cin):
                        for di in range(k):
                            for dj in range(k):
                                y, xx = i * stride + di - padding, j * stride + dj - padding
                                if 0 <= y < h and 0 <= xx < wd:
                                    s += int(x[b, c, y, xx]) * int(w[o, c, di, dj])
                    out[b, o, i, j] = s
    return out


@pytest.mark.parametrize(("k", "stride", "padding", "size"), [
    (3, 1, 1, 5), (3, 2, 1, 6), (1, 2, 0, 5), (7, 2, 3, 9), (3, 1, 0, 4)])
def test_conv_matches_loops(k, stride, padding, size):
    rng = np.random.default_rng(k * 100 + size)
    x = rng.integers(0, 256, (2, 3, size, size))
    w = rng.integers(-128, 128, (4, 3, k, k)).astype(np.int8)
    np.testing.assert_array_equal(golden.conv2d_acc(x, w, stride, padding),
                                  _loop_conv(x, w, stride, padding).astype(np.int64))


def _torch_reference(model: QModel, images: np.ndarray) -> np.ndarray:
    """The same network through torch's float64 conv (exact: all sums are far below 2**53) and
    the contract on int64 tensors: an implementation independent of golden's im2col."""
    vals = {"input": torch.from_numpy(images.astype(np.int64))}
    for node in model.nodes:
        x = [vals[i] for i in node["inputs"]]
        op, p = node["op"], {k: torch.from_numpy(v.astype(np.int64))
                             for k, v in model.params(node["name"]).items()}
        if op == "conv":
            acc = F.conv2d(x[0].double(), p["weight"].double(), stride=node["stride"],
                           padding=node["padding"]).round().long()
            acc = acc + p["bias"][None, :, None, None]
            y = C.activation(acc, p["mult"][None, :, None, None], p["shift"][None, :, None, None],
                             node["relu"], model.act_bits)
        elif op == "fc":
            acc = (x[0].flatten(1).double() @ p["weight"].double().T).round().long() + p["bias"]
            y = C.logits(acc, p["mult"], p["shift"])
        elif op == "add":
            (ma, mb), (sa, sb) = node["mult"], node["shift"]
            y = C.residual_add(x[0], x[1], ma, sa, mb, sb, node["relu"], model.act_bits)
        elif op == "maxpool":
            y = F.max_pool2d(x[0].double(), node["kernel"], node["stride"],
                             node["padding"]).long()
        else:
            y = C.avgpool_requant(x[0].sum(dim=(2, 3), keepdim=True), node["mult"],
                                  node["shift"], model.act_bits)
        vals[node["name"]] = y
    return vals[model.output].numpy()


@pytest.mark.parametrize(("seed", "shape", "width", "ratio", "eight"), [
    (0, (3, 32, 32), 0.25, "60:35:5", False),
    (1, (3, 64, 64), 0.125, "65:30:5", False),      # standard stem: 7x7/2 conv + max-pool
    (2, (1, 8, 8), 0.25, "100:0:0", False),
    (3, (3, 32, 32), 0.25, "0:100:0", True),        # Fixed-4 with 8-bit first/last layers
    (4, (3, 20, 28), 0.125, "50:50:0", False),      # odd size, not a multiple of anything
])
def test_resnet18_matches_torch_reference(seed, shape, width, ratio, eight):
    model = random_resnet18(seed, input_shape=shape, width=width, ratio=ratio,
                            first_last_8bit=eight)
    images = random_images(np.random.default_rng(seed + 10), 3, shape)
    logits = golden.run(model, images)
    assert logits.shape == (3, 10) and logits.dtype == np.int64
    np.testing.assert_array_equal(logits, _torch_reference(model, images))
    # run_all agrees with run, and a batch equals its images one by one.
    np.testing.assert_array_equal(golden.run_all(model, images)["fc"], logits)
    for i in range(3):
        np.testing.assert_array_equal(golden.run(model, images[i]), logits[i:i + 1])


def test_resnet18_layers_hold_varied_values():
    """Calibration of random models keeps activations spread (strong RTL comparisons)."""
    model = random_resnet18(7)
    values = golden.run_all(model, random_images(np.random.default_rng(0), 2, (3, 32, 32)))
    for node in model.layers("conv"):
        v = values[node["name"]]
        assert len(np.unique(v)) >= 8, node["name"]
    assert len(np.unique(values["fc"])) == values["fc"].size


def test_any_input_size_and_schemes_in_every_layer():
    model = random_resnet18(5, input_shape=(3, 32, 32), width=0.25, ratio="60:35:5")
    for node in model.layers():
        schemes = model.params(node["name"])["scheme"]
        counts = scheme_counts(len(schemes), parse_ratio("60:35:5"))
        assert {c: int((schemes == c).sum()) for c in counts} == counts
    for hw in ((3, 16, 16), (3, 40, 24)):
        images = random_images(np.random.default_rng(1), 1, hw)
        assert golden.run(model, images).shape == (1, 10)


def test_bad_images_rejected():
    model = random_resnet18(0, input_shape=(3, 8, 8), width=0.125)
    with pytest.raises(ValueError, match=r"^image pixels must be in \[0, 255\] \(u8\), found "
                                         r"\[256, 256\]$"):
        golden.run(model, np.full((1, 3, 8, 8), 256))
    with pytest.raises(ValueError, match=r"^images must be \(N, 3, H, W\) or \(3, H, W\), not "
                                         r"\(1, 1, 8, 8\)$"):
        golden.run(model, np.zeros((1, 1, 8, 8), np.int64))
    with pytest.raises(TypeError, match=r"^images must be integers"):
        golden.run(model, np.zeros((1, 3, 8, 8)))


def test_empty_batch_gives_empty_result():
    from quant.qmodel import emulate

    model = random_resnet18(0, input_shape=(3, 8, 8), width=0.125)
    empty = np.zeros((0, 3, 8, 8), np.uint8)
    logits = golden.run(model, empty)
    assert logits.shape == (0, 10) and logits.dtype == np.int64
    assert golden.predict(model, empty).shape == (0,)
    assert golden.run_all(model, empty)["layer4.1.add"].shape == (0, 64, 1, 1)
    assert tuple(emulate(model, empty).shape) == (0, 10)


def test_fc_flattens_a_map_in_channel_row_column_order():
    """fc reading a C x H x W map takes its values in C-order: index c*H*W + y*W + x."""
    x = np.arange(2 * 2 * 3).reshape(1, 2, 2, 3)
    weight = np.zeros((12, 12), np.int8)
    weight[np.arange(12), np.arange(12)] = 1           # row i picks flat input i
    p = {"weight": weight, "bias": np.zeros(12, np.int32), "mult": np.ones(12, np.uint16),
         "shift": np.zeros(12, np.uint8)}
    np.testing.assert_array_equal(golden.fc(x, p)[0], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    np.testing.assert_array_equal(golden.fc(x[:, :, ::-1], p)[0],
                                  [3, 4, 5, 0, 1, 2, 9, 10, 11, 6, 7, 8])


# ---- the accumulator proof --------------------------------------------------------------------

def _single_conv_model(cin, weight_value, bias, scheme=C.FIXED8, k=3):
    node = {"name": "c", "op": "conv", "inputs": ["input"], "in_channels": cin,
            "out_channels": 1, "kernel": k, "stride": 1, "padding": 0, "relu": False}
    manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "act_bits": 4,
                "input_bits": 8, "input_shape": [cin, k, k], "output": "c", "nodes": [node]}
    arrays = {"c.weight": np.full((1, cin, k, k), weight_value, np.int8),
              "c.scheme": np.array([scheme], np.uint8), "c.bias": np.array([bias], np.int32),
              "c.mult": np.array([1], np.uint16), "c.shift": np.array([0], np.uint8)}
    return QModel(manifest, arrays)


@pytest.mark.parametrize("board", ["pynq-z2", "zc706"])
def test_worst_case_accumulator_fits(board):
    cfg = preset(board)
    cin = cfg.max_reduction // 9                 # 512 channels x 3 x 3 = ResNet-18's longest
    d = cfg.max_abs_dot
    for weight, bias in ((-128, -d), (127, d)):
        model = _single_conv_model(cin, weight, bias)
        check_fits(model, cfg)                   # the proof's premises hold for this layer
        x = np.full((1, cin, 3, 3), 255)
        acc = golden.conv2d_acc(x, model.params("c")["weight"], 1, 0)[0, 0, 0, 0] + bias
        assert acc == cin * 9 * weight * 255 + bias            # exact in int64
        assert -(1 << (cfg.acc_bits - 1)) <= acc < (1 << (cfg.acc_bits - 1))
        assert abs(acc) == layer_acc_bound(model, "c")
    # The extreme is reached: one bit fewer would not hold it.
    assert 2 * d >= 1 << (cfg.acc_bits - 2)


def test_full_resnet18_fits_both_presets():
    model = random_resnet18(0, input_shape=(3, 32, 32), width=1.0, ratio="60:35:5",
                            calib_images=1)
    assert max(n["in_channels"] * n["kernel"] ** 2 for n in model.layers("conv")) == 4608
    for board in ("pynq-z2", "zc706"):
        check_fits(model, preset(board))


def test_misfit_models_are_rejected_with_reasons():
    cfg = preset("pynq-z2")
    with pytest.raises(ModelMismatchError, match=r"dot products of length 4617 exceed "
                                                 r"max_reduction 4608"):
        check_fits(_single_conv_model(513, 1, 0), cfg)
    with pytest.raises(ModelMismatchError, match=r"uses fixed8 weights, which the hardware does "
                                                 r"not implement"):
        check_fits(_single_conv_model(4, 1, 0), cfg.replace(weight_formats=("pot4", "fixed4")))
    with pytest.raises(ModelMismatchError, match=r"a pass needs 288 weight rows, the two "
                                                 r"weight banks hold 256 \(2 x "
                                                 r"weight_buf_depth 128\)"):
        check_fits(_single_conv_model(512, 1, 0), cfg.replace(weight_buf_depth=128))
    model = _single_conv_model(4, 1, 0)
    model.manifest = copy.deepcopy(model.manifest)
    model.manifest["act_bits"] = 5
    with pytest.raises(ModelMismatchError, match=r"model uses 5-bit activations, hardware 4-bit"):
        check_fits(model, cfg)
    with pytest.raises(ModelMismatchError, match=r"c: a bias exceeds the accumulator-domain limit"):
        check_fits(_single_conv_model(4, 1, cfg.max_abs_dot + 1), cfg)


def test_any_fitting_layer_stays_inside_the_accumulator():
    """The proof, sampled: whatever passes check_fits cannot overflow acc_bits."""
    rng = np.random.default_rng(3)
    for _ in range(50):
        cfg = preset("pynq-z2").replace(max_reduction=int(rng.integers(9, 200)) * 9)
        cin = int(rng.integers(1, cfg.max_reduction // 9 + 1))
        weight = int(rng.choice([-128, 127, -64, 5]))
        bias = int(rng.integers(-cfg.max_abs_dot, cfg.max_abs_dot + 1))
        model = _single_conv_model(cin, weight, bias)
        check_fits(model, cfg)
        assert layer_acc_bound(model, "c") < 1 << (cfg.acc_bits - 1)


# ---- property-based: random small layers against the loop reference ---------------------------

@st.composite
def _layers(draw):
    k = draw(st.sampled_from([1, 3, 5, 7]))
    stride = draw(st.sampled_from([1, 2]))
    padding = draw(st.integers(0, k // 2))
    size = draw(st.integers(k - 2 * padding if k > 2 * padding else 1, 9))
    cin, cout = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (1, cin, size, size))
    scheme = draw(st.sampled_from(C.SCHEMES))
    if scheme == "pot4":
        w = rng.choice(np.array(C.POT_VALUES), (cout, cin, k, k)).astype(np.int8)
    else:
        lo, hi = C.weight_range(scheme)
        w = rng.integers(lo, hi + 1, (cout, cin, k, k)).astype(np.int8)
    return x, w, stride, padding


@settings(max_examples=60, deadline=None)
@given(_layers())
def test_conv_property_matches_loops(layer):
    x, w, stride, padding = layer
    np.testing.assert_array_equal(golden.conv2d_acc(x, w, stride, padding),
                                  _loop_conv(x, w, stride, padding).astype(np.int64))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.sampled_from([(2, 2, 0), (3, 2, 1), (3, 1, 1)]),
       st.integers(0, 2**32 - 1))
def test_maxpool_property_matches_python_max(h, w, kernel_stride_pad, seed):
    k, s, p = kernel_stride_pad
    if h + 2 * p < k or w + 2 * p < k:
        return
    x = np.random.default_rng(seed).integers(0, 16, (1, 2, h, w))
    out = golden.maxpool(x, k, s, p)
    for c in range(2):
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                window = [int(x[0, c, y, xx]) if 0 <= y < h and 0 <= xx < w else 0
                          for y in range(i * s - p, i * s - p + k)
                          for xx in range(j * s - p, j * s - p + k)]
                assert out[0, c, i, j] == max(window)
