"""The one performance model's report: MACs and weights of ResNet-18 counted by hand, the
MAC-bound column, the ratio checks and the paper's figures beside the model."""

import math

import pytest

from quant.resnet_graph import layer_shapes, resnet18_nodes
from rtl.boards import BOARDS
from rtl.config import preset
from rtl.cycle_model import DdrTiming, markdown, resnet18_cycles, resnet18_latency

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
TIMING = DdrTiming.zynq_hp()


def _layer(layers, name):
    return next(layer for layer in layers if layer.name == name)


def test_total_macs_of_resnet18():
    expected = sum(o * i * k * k * s * s for o, i, k, s in _RESNET18)
    layers = resnet18_cycles(preset("zc706"), "65:30:5", timing=TIMING)
    assert sum(layer.macs for layer in layers) == expected == 1_814_073_344   # "1.81 GMAC"


def test_shapes():
    shapes = layer_shapes(resnet18_nodes(), 224, 3)
    assert shapes["conv1"] == (64, 112, 112)
    assert shapes["maxpool"] == (64, 56, 56)
    assert shapes["layer2.0.downsample.0"] == (128, 28, 28)
    assert shapes["layer4.1.add"] == (512, 7, 7)
    assert shapes["avgpool"] == (512, 1, 1)
    assert shapes["fc"] == (1000, 1, 1)


def test_mac_bound_and_weights_by_hand():
    cfg = preset("pynq-z2")
    layer = _layer(resnet18_cycles(cfg, "60:35:5", timing=TIMING), "layer4.0.conv2")
    assert layer.macs == 512 * 4608 * 49
    # Every multiplier of both arrays busy: vec_len x (PoT rows + DSP lanes) MACs a cycle.
    assert layer.mac_cycles == math.ceil(layer.macs / (16 * (39 + 30)))
    # 512 filters at 60:35:5: 307/179/26 (largest remainders); 4 bits each, 8 for Fixed-8.
    assert layer.weight_bytes == 4608 * (486 * 4 + 26 * 8) // 8
    assert layer.cycles >= layer.mac_cycles
    vector = _layer(resnet18_cycles(cfg, "60:35:5", timing=TIMING), "layer4.0.add")
    assert (vector.macs, vector.mac_cycles, vector.weight_bytes) == (0, 0, 0)


def test_ratio_needs_formats():
    cfg = preset("pynq-z2").replace(weight_formats=("pot4", "fixed4"))
    with pytest.raises(ValueError, match=r"^ratio 60:35:5 assigns fixed8 filters but config "
                                         r"'pynq-z2' implements only pot4, fixed4; change the "
                                         r"ratio \(--ratio\) or the config's weight_formats$"):
        resnet18_cycles(cfg, "60:35:5", timing=TIMING)
    assert sum(layer.cycles for layer in resnet18_cycles(cfg, "60:40:0", timing=TIMING)) > 0
    with pytest.raises(ValueError, match=r"^ratio must look like"):
        resnet18_cycles(preset("zc706"), "a:b", timing=TIMING)


def test_markdown_puts_the_paper_beside_the_model():
    cfg = preset("zc706")
    layers, chain = resnet18_latency(cfg, "65:30:5", timing=TIMING)
    md = markdown(cfg, "65:30:5", layers, TIMING, chain)
    ms = chain / 150e3
    assert f"Modelled latency: **{ms:.2f} ms** per image at 150 MHz (the network as" in md
    paper = BOARDS["zc706"].paper
    assert (f"ILMPQ-2 on XC7Z045, the same ratio): {paper.gops} GOP/s, {paper.latency_ms} ms"
            in md)
    assert f"modelled here: {paper.latency_ms / ms:.2f}x its speed" in md
    cfg = preset("pynq-z2")
    layers, chain = resnet18_latency(cfg, "50:50:0", timing=TIMING)
    md = markdown(cfg, "50:50:0", layers, TIMING, chain)
    assert "ILMPQ-1 on XC7Z020, ratio 60:35:5, not 50:50:0" in md
