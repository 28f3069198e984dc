"""Space-to-depth of a stride-2 first layer: the folded layer gives the same integers."""

from dataclasses import replace

import numpy as np
import pytest

from quant import golden
from quant.random_model import random_conv_layer
from rtl.config import preset
from rtl.interface.stem import Fold, fold_input, fold_plan, fold_weight, unroll_columns


@pytest.mark.parametrize(("k", "p", "size", "cin"), [
    (7, 3, 32, 3),     # ResNet's stem: padded size even
    (7, 3, 33, 3),     # padded size odd: one more zero row and column
    (3, 1, 15, 4),     # a 3x3/2 layer
    (5, 2, 10, 2),
    (1, 0, 9, 3),      # 1x1/2: a folded 1x1 on a quarter of the channels' blocks
])
def test_folded_layer_equals_the_layer(k, p, size, cin):
    rng = np.random.default_rng(k * 100 + size)
    x, _, params, node = random_conv_layer(rng, cin=cin, cout=9, kernel=k, stride=2, pad=p,
                                           size=size, ratio=(60, 35, 5), relu=True,
                                           in_bits=8, act_bits=4)
    fold = Fold(k, p, (cin, size, size))
    xf = fold_input(x[0], fold)[None]
    assert xf.shape[1:] == fold.folded_shape
    folded = {**params, "weight": fold_weight(params["weight"], fold)}
    assert folded["weight"].dtype == params["weight"].dtype
    fnode = {**node, "kernel": fold.folded_kernel[0], "stride": 1, "padding": 0}
    np.testing.assert_array_equal(golden.conv(xf, fnode, folded, 4),
                                  golden.conv(x, node, params, 4))


def _taps(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Dot products of a stride-1 conv without padding of (C, H, W) by (O, C, kh, kw), tap
    by tap (any kernel shape; the golden model's conv takes square kernels only)."""
    _, kh, kw = w.shape[1:]
    ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    return sum(np.einsum("oc,cyx->oyx", w[:, :, a, b].astype(np.int64),
                         x[:, a:a + ho, b:b + wo].astype(np.int64))
               for a in range(kh) for b in range(kw))


@pytest.mark.parametrize(("k", "p", "size", "cin"), [
    (7, 3, 32, 3), (7, 3, 33, 3), (3, 1, 15, 4), (5, 2, 10, 2), (1, 0, 9, 3),
])
def test_unrolled_fold_equals_the_layer(k, p, size, cin):
    """The folded kernel's columns unrolled into the channels: a k' x 1 kernel on 4C k'
    channels gives the layer's dot products."""
    rng = np.random.default_rng(k * 10 + size)
    x, _, params, _ = random_conv_layer(rng, cin=cin, cout=9, kernel=k, stride=2, pad=p,
                                           size=size, ratio=(60, 35, 5), relu=True,
                                           in_bits=8, act_bits=4)
    fold = Fold(k, p, (cin, size, size), unroll=True)
    xu = fold_input(x[0], fold)
    wu = fold_weight(params["weight"], fold)
    side = -(-k // 2)
    assert xu.shape == fold.folded_shape == (4 * cin * side, -(-(size + 2 * p) // 2),
                                             -(-(size + 2 * p) // 2) - side + 1)
    assert wu.shape == (9, 4 * cin * side, side, 1) and fold.folded_kernel == (side, 1)
    np.testing.assert_array_equal(_taps(xu, wu),
                                  golden.conv2d_acc(x, params["weight"], 2, p)[0])


def test_fold_plan_only_when_it_saves_rows():
    stem = {"op": "conv", "kernel": 7, "stride": 2, "padding": 3}
    # Unrolled: 4 rows of 3 16-lane chunks (pynq-z2), against 16 of one chunk folded only.
    fold = fold_plan(stem, (3, 224, 224), preset("pynq-z2"))
    assert fold == Fold(7, 3, (3, 224, 224), unroll=True)
    assert fold.folded_shape == fold.stored_shape == (48, 115, 112)
    assert fold.folded_kernel == (4, 1)
    # zc706: 4 rows of one 64-lane chunk either way; its engine unrolls (4 taps of 16 lanes),
    # so the host writes the folded map on 16 channels, 2 bus words a pixel instead of 6.
    zc = preset("zc706")
    fold = fold_plan(stem, (3, 224, 224), zc)
    assert fold == Fold(7, 3, (3, 224, 224), unroll=True, lanes=16)
    assert fold.folded_shape == (64, 115, 112) and fold.stored_shape == (16, 115, 115)
    assert fold_plan(stem, (3, 224, 224), zc.replace(unroll_taps=0)) == Fold(
        7, 3, (3, 224, 224), unroll=True)
    # Taps other than k' (a 3 x 3 stem folds to k' = 2), or more channels than a tap's
    # lanes: the host unrolls.
    assert fold_plan({**stem, "kernel": 3, "padding": 1}, (3, 224, 224), zc).lanes == 0
    assert fold_plan(stem, (5, 224, 224), zc).lanes == 0
    # 4 lanes: 16 rows of 3 chunks folded, 4 rows of 12 chunks unrolled: the same count,
    # so it stays folded (fewer bytes).
    narrow = replace(preset("pynq-z2"), pot_cols=4, dsp_cols=4)
    assert fold_plan(stem, (3, 224, 224), narrow) == Fold(7, 3, (3, 224, 224))
    # 64 channels already fill the vectors: folding would not save rows.
    assert fold_plan({**stem, "kernel": 3, "padding": 1}, (64, 56, 56), preset("pynq-z2")) is None
    assert fold_plan({**stem, "stride": 1}, (3, 224, 224), preset("pynq-z2")) is None


def test_fold_input_checks_the_shape():
    with pytest.raises(ValueError, match=r"^input of shape \(3, 8, 9\), the fold expects "
                                         r"\(3, 8, 8\)$"):
        fold_input(np.zeros((3, 8, 9), np.int64), Fold(7, 3, (3, 8, 8)))


@pytest.mark.parametrize(("k", "p", "size", "cin", "lanes"), [
    (7, 3, 32, 3, 16), (7, 3, 33, 3, 12), (3, 1, 15, 1, 4), (5, 2, 10, 2, 8),
])
def test_engine_unrolled_fold_equals_the_layer(k, p, size, cin, lanes):
    """Where the engine unrolls: the host writes the folded map on ``lanes`` channels, the
    engine's view of it (``unroll_columns`` by k' taps, as ``rtl.engine.unpack.Unroller``)
    by the weights folded with the taps ``lanes`` channels apart gives the layer's dot
    products."""
    rng = np.random.default_rng(k * 7 + size)
    x, _, params, _ = random_conv_layer(rng, cin=cin, cout=9, kernel=k, stride=2, pad=p,
                                        size=size, ratio=(60, 35, 5), relu=True,
                                        in_bits=8, act_bits=4)
    fold = Fold(k, p, (cin, size, size), unroll=True, lanes=lanes)
    stored = fold_input(x[0], fold)
    assert stored.shape == fold.stored_shape and not stored[4 * cin:].any()
    xu = unroll_columns(stored, fold.side)
    wu = fold_weight(params["weight"], fold)
    assert xu.shape == fold.folded_shape and wu.shape == (9, lanes * fold.side, fold.side, 1)
    np.testing.assert_array_equal(_taps(xu, wu),
                                  golden.conv2d_acc(x, params["weight"], 2, p)[0])
