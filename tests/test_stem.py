"""Space-to-depth of a stride-2 first layer: the folded layer gives the same integers."""

import numpy as np
import pytest

from quant import golden
from quant.random_model import random_conv_layer
from rtl.config import preset
from rtl.interface.stem import Fold, fold_input, fold_plan, fold_weight


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
    fnode = {**node, "kernel": fold.folded_kernel, "stride": 1, "padding": 0}
    np.testing.assert_array_equal(golden.conv(xf, fnode, folded, 4),
                                  golden.conv(x, node, params, 4))


def test_fold_plan_only_when_it_saves_rows():
    stem = {"op": "conv", "kernel": 7, "stride": 2, "padding": 3}
    for board in ("pynq-z2", "zc706"):
        fold = fold_plan(stem, (3, 224, 224), preset(board))
        assert fold is not None and fold.folded_shape == (12, 115, 115)
        assert fold.folded_kernel == 4
    # 64 channels already fill the vectors: folding would not save rows.
    assert fold_plan({**stem, "kernel": 3, "padding": 1}, (64, 56, 56), preset("pynq-z2")) is None
    assert fold_plan({**stem, "stride": 1}, (3, 224, 224), preset("pynq-z2")) is None


def test_fold_input_checks_the_shape():
    with pytest.raises(ValueError, match=r"^input of shape \(3, 8, 9\), the fold expects "
                                         r"\(3, 8, 8\)$"):
        fold_input(np.zeros((3, 8, 9), np.int64), Fold(7, 3, (3, 8, 8)))
