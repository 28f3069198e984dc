"""Analytical cycle model: hand-computed layers, totals, ratio checks and the report text."""

import math

import pytest

from quant.resnet_graph import resnet18_nodes
from rtl.config import preset
from rtl.perf import (
    PASS_OVERHEAD_CYCLES,
    default_ratio,
    estimate,
    layer_shapes,
)

# ResNet-18 224x224 conv/fc layers written out by hand: (out channels, in channels, kernel,
# output side). Multiply-accumulates = out * in * k * k * side * side.
_RESNET18 = (
    [(64, 3, 7, 112)]
    + [(64, 64, 3, 56)] * 4
    + [(128, 64, 3, 28), (128, 128, 3, 28), (128, 64, 1, 28), (128, 128, 3, 28),
       (128, 128, 3, 28)]
    + [(256, 128, 3, 14), (256, 256, 3, 14), (256, 128, 1, 14), (256, 256, 3, 14),
       (256, 256, 3, 14)]
    + [(512, 256, 3, 7), (512, 512, 3, 7), (512, 256, 1, 7), (512, 512, 3, 7), (512, 512, 3, 7)]
    + [(1000, 512, 1, 1)]
)


def test_total_macs_of_resnet18():
    expected = sum(o * i * k * k * s * s for o, i, k, s in _RESNET18)
    rep = estimate(preset("zc706"), "65:30:5")
    assert rep.total_macs == expected
    assert rep.total_macs == 1_814_073_344  # the usual "1.81 GMAC" of ResNet-18


def test_shapes():
    shapes = layer_shapes(resnet18_nodes(), 224, 3)
    assert shapes["conv1"] == (64, 112, 112)
    assert shapes["maxpool"] == (64, 56, 56)
    assert shapes["layer2.0.downsample.0"] == (128, 28, 28)
    assert shapes["layer4.1.add"] == (512, 7, 7)
    assert shapes["avgpool"] == (512, 1, 1)
    assert shapes["fc"] == (1000, 1, 1)


def _layer(rep, name):
    return next(layer for layer in rep.layers if layer.name == name)


def test_zc706_layer_by_hand():
    # 64 filters at 65:30:5: 41.6/19.2/3.2 -> 42/19/3 (largest remainders).
    rep = estimate(preset("zc706"), "65:30:5")
    layer = _layer(rep, "layer1.0.conv1")
    assert (layer.pot, layer.fixed4, layer.fixed8) == (42, 19, 3)
    assert layer.reduction == 576 and layer.pixels == 56 * 56
    # PoT: ceil(42/52) = 1 pass; DSP: 19 + 2*3 = 25 lanes, ceil(25/32) = 1 pass;
    # ceil(576/32) = 18 vectors per dot product.
    assert layer.pot_cycles == 1 * 18 * 3136 + 16
    assert layer.dsp_cycles == 1 * 18 * 3136 + 16
    assert layer.cycles == 56_464
    assert layer.bound == "both"
    assert _layer(rep, "maxpool").cycles == 2 * 3136          # 64 channels / 32 per vector
    assert _layer(rep, "avgpool").cycles == 16 * 49           # reads 512/32 vectors x 49
    assert _layer(rep, "layer4.0.add").cycles == 16 * 49


def test_pynq_z2_layer_by_hand():
    rep = estimate(preset("pynq-z2"), "60:35:5")
    layer = _layer(rep, "layer4.0.conv2")
    # 512 filters at 60:35:5: 307.2/179.2/25.6 -> 307/179/26.
    assert (layer.pot, layer.fixed4, layer.fixed8) == (307, 179, 26)
    steps = 4608 // 16
    assert layer.pot_cycles == 13 * steps * 49 + 13 * 16            # ceil(307/24) = 13
    assert layer.dsp_cycles == 13 * steps * 49 + 13 * 16            # ceil((179+52)/18) = 13
    assert layer.macs == 512 * 4608 * 49
    # weights: (307 + 179) * 4 bits + 26 * 8 bits per column of 4608, 8 bytes per cycle
    assert layer.weight_bytes == 4608 * (486 * 4 + 26 * 8) // 8
    assert layer.stream_cycles == math.ceil(layer.weight_bytes / 8)


def test_unbalanced_ratio_is_dsp_bound():
    rep = estimate(preset("pynq-z2"), "0:100:0")
    layer = _layer(rep, "layer1.0.conv1")
    assert layer.pot_cycles == 0
    assert layer.dsp_cycles == math.ceil(64 / 18) * 36 * 3136 + 4 * PASS_OVERHEAD_CYCLES
    assert layer.bound == "dsp"


def test_totals_and_units():
    cfg = preset("pynq-z2")
    rep = estimate(cfg, default_ratio("pynq-z2"))
    assert rep.total_cycles == sum(layer.cycles for layer in rep.layers)
    assert rep.latency_ms == rep.total_cycles / 100e3
    assert rep.gops == pytest.approx(2 * rep.total_macs / (rep.latency_ms / 1e3) / 1e9,
                                     rel=1e-12)
    assert rep.stream_bound_cycles >= rep.total_cycles


def test_ratio_needs_formats():
    cfg = preset("pynq-z2").replace(weight_formats=("pot4", "fixed4"))
    with pytest.raises(ValueError, match=r"^ratio 60:35:5 assigns fixed8 filters but config "
                                         r"'pynq-z2' implements only pot4, fixed4; change the "
                                         r"ratio \(--ratio\) or the config's weight_formats$"):
        estimate(cfg, "60:35:5")
    assert estimate(cfg, "60:40:0").total_cycles > 0


def test_bad_ratio_and_board():
    with pytest.raises(ValueError, match=r"^ratio must look like"):
        estimate(preset("zc706"), "a:b")
    with pytest.raises(ValueError, match=r"^no default ratio for board 'zedboard'; known: "
                                         r"pynq-z2, zc706$"):
        default_ratio("zedboard")
    with pytest.raises(TypeError, match=r"^estimate needs a HwConfig, not 3$"):
        estimate(3, "65:30:5")


def test_markdown_is_honest():
    md = estimate(preset("zc706"), "65:30:5").markdown()
    assert md.startswith("MAC-bound schedule (not a measurement")
    assert "ILMPQ-2 on XC7Z045, the same ratio): 421.1 GOP/s, 8.6 ms" in md
    md = estimate(preset("pynq-z2"), "50:50:0").markdown()
    assert "ILMPQ-1 on XC7Z020, ratio 60:35:5, not this build's 50:50:0" in md
