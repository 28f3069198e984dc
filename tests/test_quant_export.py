"""Export: golden model integer logits equal the torch integer emulation exactly."""

import numpy as np
import pytest
import torch

from quant import contract as C
from quant import golden
from quant.data import digits
from quant.export import export_qmodel
from quant.model_format import QModel
from quant.qmodel import QuantResNet, emulate, layer_names
from quant.random_model import random_images
from quant.resnet import ResNet18


def _qnet(seed: int, *, in_channels: int, size: int, small_stem: bool, width: float = 0.25,
          act_bits: int = 4, calib: torch.Tensor | None = None) -> QuantResNet:
    torch.manual_seed(seed)
    net = ResNet18(num_classes=10, in_channels=in_channels, width=width, small_stem=small_stem,
                   input_size=size)
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():  # non-trivial BatchNorm so every block does something
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.weight.shape, generator=g) + 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
            m.running_mean.data = torch.randn(m.running_mean.shape, generator=g) * 0.1
            m.running_var.data = torch.rand(m.running_var.shape, generator=g) + 0.5
    net.eval()
    schemes = {n: torch.randint(0, 3, (net.get_submodule(n).weight.shape[0],), generator=g)
               for n in layer_names(net)}
    q = QuantResNet(net, schemes, act_bits).eval()
    if calib is None:
        calib = torch.rand(16, in_channels, size, size, generator=g)
    q.calibrate(calib)
    return q


@pytest.fixture(scope="module")
def digit_set():
    return digits()


@pytest.fixture(scope="module")
def digit_model(digit_set):
    x, _ = digit_set.test_arrays()
    q = _qnet(0, in_channels=1, size=8, small_stem=True,
              calib=torch.from_numpy(x[:64]).float() / 255)
    return q, export_qmodel(q)


def test_golden_equals_emulation_on_every_digits_test_image(digit_set, digit_model):
    _, qm = digit_model
    x, _ = digit_set.test_arrays()
    assert len(x) == 359
    ref = golden.run(qm, x)
    np.testing.assert_array_equal(emulate(qm, x).numpy(), ref)
    # the comparison is not vacuous: logits vary over images and classes
    assert len(np.unique(ref)) > 100


def test_golden_equals_emulation_on_random_images(digit_model):
    _, qm = digit_model
    x = random_images(np.random.default_rng(5), 64, (1, 8, 8))
    np.testing.assert_array_equal(emulate(qm, x).numpy(), golden.run(qm, x))


@pytest.mark.parametrize("act_bits", [4, 5])
def test_standard_stem_rgb_exact(act_bits):
    q = _qnet(3, in_channels=3, size=32, small_stem=False, width=0.125, act_bits=act_bits)
    qm = export_qmodel(q)
    assert [n["name"] for n in qm.nodes][:2] == ["conv1", "maxpool"]
    x = random_images(np.random.default_rng(2), 24, (3, 32, 32))
    np.testing.assert_array_equal(emulate(qm, x).numpy(), golden.run(qm, x))


def test_integer_model_tracks_fake_quant_forward(digit_set, digit_model):
    q, qm = digit_model
    x, _ = digit_set.test_arrays()
    with torch.no_grad():
        fake = q(torch.from_numpy(x).float() / 255).numpy()
    ints = golden.run(qm, x) * qm.manifest["meta"]["logit_scale"]
    # Only the 16-bit multipliers and rounding ties (half up vs torch's half to even) differ;
    # a flipped 4-bit step can travel through the blocks, so compare on average.
    agree = (fake.argmax(1) == ints.argmax(1)).mean()
    assert agree >= 0.95, agree
    assert np.abs(fake - ints).mean() < 0.1 * np.abs(fake).mean()


def test_export_fields(digit_model):
    q, qm = digit_model
    assert qm.input_shape == (1, 8, 8) and qm.input_bits == 8 and qm.act_bits == 4
    for name in layer_names(q.net):
        np.testing.assert_array_equal(qm.arrays[f"{name}.scheme"],
                                      q.schemes(name).numpy().astype(np.uint8))
    for node in qm.layers("add"):
        assert node["inputs"][0].endswith(".conv2")
        assert (node["mult"][0], node["shift"][0]) == C.quantize_multiplier(1.0)
    w = qm.arrays["layer1.0.conv1.weight"].reshape(len(qm.arrays["layer1.0.conv1.scheme"]), -1)
    pot = qm.arrays["layer1.0.conv1.scheme"] == C.POT4
    assert np.isin(w[pot], C.POT_VALUES).all()


def test_saved_file_round_trips(tmp_path, digit_model):
    _, qm = digit_model
    path = qm.save(tmp_path / "m")
    loaded = QModel.load(path)
    x = random_images(np.random.default_rng(9), 8, (1, 8, 8))
    np.testing.assert_array_equal(golden.run(loaded, x), emulate(qm, x).numpy())
