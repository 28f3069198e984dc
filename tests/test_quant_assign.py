"""Scheme assignment: exact per-filter Hessian eigenvalues, ratio counts, variance ordering."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from quant import contract as C
from quant.assign import Assignment, assign_schemes, filter_hessian_eigenvalues
from quant.qmodel import fold_layer, layer_names
from quant.resnet import ResNet18
from quant.schemes import scheme_counts


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    net = ResNet18(num_classes=4, in_channels=1, width=0.05, small_stem=True, input_size=8)
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.weight.shape, generator=g) + 0.5
    net.eval()
    x = torch.rand(16, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (16,), generator=g)
    return net, x, y


def _explicit_top(net, x, y, name, f):
    """Largest-magnitude eigenvalue of H_ff from the explicit Hessian matrix."""
    w = net.get_submodule(name).weight
    base = w.detach().clone()

    def loss(row):
        full = base.clone()
        full[f] = row.view(base.shape[1:])
        mod = net.get_submodule(name)
        old = mod.weight
        del mod.weight
        mod.weight = full
        try:
            return F.cross_entropy(net(x), y)
        finally:
            mod.weight = old

    h = torch.autograd.functional.hessian(loss, base[f].reshape(-1))
    ev = torch.linalg.eigvalsh(h.double())
    return float(ev[ev.abs().argmax()])


def test_exact_power_iteration_matches_explicit_hessian(tiny):
    net, x, y = tiny
    got = filter_hessian_eigenvalues(net, [(x, y)], iters=60, exact=True, layers=["fc"])
    for f in range(4):
        want = _explicit_top(net, x, y, "fc", f)
        assert got["fc"][f] == pytest.approx(want, rel=1e-3, abs=1e-6)


def test_probe_estimate_is_seeded(tiny):
    net, x, y = tiny
    a = filter_hessian_eigenvalues(net, [(x, y)], iters=2, probes=2, seed=3)
    b = filter_hessian_eigenvalues(net, [(x, y)], iters=2, probes=2, seed=3)
    assert list(a) == layer_names(net)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_assignment_counts_and_order(tiny):
    net, _, _ = tiny
    rng = np.random.default_rng(0)
    eig = {n: rng.normal(size=net.get_submodule(n).weight.shape[0]) for n in layer_names(net)}
    a = assign_schemes(net, (60, 35, 5), eigenvalues=eig)
    for name, codes in a.schemes.items():
        counts = scheme_counts(len(codes), (60, 35, 5))
        assert {c: int((codes == c).sum()) for c in range(3)} == counts
        e8 = eig[name][codes == C.FIXED8]
        if len(e8):
            assert e8.min() >= eig[name][codes != C.FIXED8].max()
        w = fold_layer(net, name)[0].detach().reshape(len(codes), -1).double()
        var = w.var(dim=1, unbiased=False).numpy()
        if (codes == C.POT4).any() and (codes == C.FIXED4).any():
            assert var[codes == C.POT4].max() <= var[codes == C.FIXED4].min()
    assert sum(a.totals().values()) == sum(len(c) for c in a.schemes.values())
    back = Assignment.from_dict(a.to_dict())
    for name in a.schemes:
        np.testing.assert_array_equal(back.schemes[name], a.schemes[name])


def test_first_last_8bit_and_missing_eigenvalues(tiny):
    net, _, _ = tiny
    a = assign_schemes(net, (0, 100, 0), first_last_8bit=True)
    assert (a.schemes["conv1"] == C.FIXED8).all() and (a.schemes["fc"] == C.FIXED8).all()
    assert (a.schemes["layer1.0.conv1"] == C.FIXED4).all()
    with pytest.raises(ValueError, match=r"needs Hessian eigenvalues"):
        assign_schemes(net, (60, 35, 5))
