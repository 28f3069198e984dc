"""Quantizers: legal integer weights per scheme, PoT rounding, straight-through gradients, PACT."""

import numpy as np
import pytest
import torch

from quant import contract as C
from quant.quantizers import PACT, fake_quant_weight, weight_to_int


def test_weights_are_legal_for_each_filters_scheme():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(30, 4, 3, 3, generator=g) * torch.rand(30, 1, 1, 1, generator=g)
    schemes = torch.tensor([0, 1, 2] * 10)
    values, scale = weight_to_int(w, schemes)
    v = values.reshape(30, -1).numpy().astype(np.int64)
    for row in range(30):
        assert C.weights_legal(v[row], int(schemes[row])).all()
    assert (scale > 0).all()
    assert np.array_equal(v, np.round(v))
    # each scheme uses its top value somewhere (max-abs weight of a filter lands near the top)
    assert np.abs(v[schemes.numpy() == 0]).max() == 64
    assert np.abs(v[schemes.numpy() == 2]).max() >= 64


def test_pot_rounds_to_the_nearest_power_of_two():
    # one filter whose scale is fixed by its largest weight, 64 -> scale 1 with clip ratio 1
    mags = [64.0, 0.4, 0.5, 1.49, 1.5, 2.9, 3.0, 5.9, 6.0, 47.0, 48.0]
    w = torch.tensor([mags + [-m for m in mags[1:]]])
    values, scale = weight_to_int(w, torch.tensor([C.POT4]))
    if float(scale[0]) == 1.0:
        expect = [64, 0, 1, 1, 2, 2, 4, 4, 8, 32, 64]
        assert values[0].tolist() == [float(e) for e in expect + [-e for e in expect[1:]]]
    else:  # another clip won; the values must still be PoT and the nearest on that grid
        x = (w / scale[:, None])[0].numpy()
        pots = np.array(C.POT_VALUES, dtype=np.float64)
        nearest = pots[np.abs(x[:, None] - pots[None]).argmin(axis=1)]
        assert np.allclose(np.abs(values[0].numpy() - x), np.abs(nearest - x))


def test_fixed_scale_picks_least_error_clip():
    w = torch.tensor([[1.0, 0.01, -0.02, 0.03, 0.02, -0.01, 0.015, 0.0]])
    _, scale = weight_to_int(w, torch.tensor([C.FIXED4]))
    assert float(scale[0]) * 7 <= 1.0 + 1e-6


def test_fake_quant_weight_has_straight_through_gradient():
    w = torch.randn(5, 7, requires_grad=True)
    wq, scale = fake_quant_weight(w, torch.tensor([0, 1, 2, 1, 0]))
    (wq * torch.arange(35.0).view(5, 7)).sum().backward()
    assert torch.equal(w.grad, torch.arange(35.0).view(5, 7))
    values = wq.detach() / scale[:, None]
    assert torch.allclose(values, values.round(), atol=1e-4)


def test_pact_grid_clip_and_alpha_gradient():
    act = PACT(4, alpha=3.0)
    x = torch.tensor([-1.0, 0.0, 0.09, 0.11, 1.0, 2.95, 5.0], requires_grad=True)
    y = act(x)
    step = 3.0 / 15
    assert torch.allclose(y, torch.tensor([0, 0, 0, step, 5 * step, 3.0, 3.0]))
    y.sum().backward()
    assert float(act.alpha.grad) > 0  # clipped inputs pull alpha up
    assert x.grad.tolist()[0] == 0.0 and x.grad.tolist()[-1] == 0.0


def test_pact_rejects_bad_bits():
    with pytest.raises(ValueError, match=r"^activation bits must be 4 or 5, not 3$"):
        PACT(3)
