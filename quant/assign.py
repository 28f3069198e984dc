"""Per-filter scheme assignment: Fixed-8 to the filters with the largest top Hessian
eigenvalue, then PoT-4 to the lowest-variance filters and Fixed-4 to the rest."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import contract as C
from .qmodel import fold_layer, layer_names
from .resnet import ResNet18
from .schemes import scheme_counts

__all__ = ["Assignment", "assign_schemes", "filter_hessian_eigenvalues", "filter_variances"]


@dataclass
class Assignment:
    """Scheme code per filter of every weight layer, with the statistics that chose them."""

    schemes: dict[str, np.ndarray]
    ratio: tuple[int, int, int]
    first_last_8bit: bool
    eigenvalues: dict[str, np.ndarray] = field(default_factory=dict)
    variances: dict[str, np.ndarray] = field(default_factory=dict)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"ratio": list(self.ratio), "first_last_8bit": self.first_last_8bit,
                "seed": self.seed,
                "schemes": {k: v.astype(int).tolist() for k, v in self.schemes.items()},
                "eigenvalues": {k: v.tolist() for k, v in self.eigenvalues.items()},
                "variances": {k: v.tolist() for k, v in self.variances.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Assignment:
        return cls(schemes={k: np.array(v, np.uint8) for k, v in d["schemes"].items()},
                   ratio=tuple(d["ratio"]), first_last_8bit=bool(d["first_last_8bit"]),
                   eigenvalues={k: np.array(v) for k, v in d.get("eigenvalues", {}).items()},
                   variances={k: np.array(v) for k, v in d.get("variances", {}).items()},
                   seed=int(d.get("seed", 0)))

    def torch_schemes(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v.astype(np.int64)) for k, v in self.schemes.items()}

    def totals(self) -> dict[str, int]:
        """Filters per scheme over the whole network."""
        codes = np.concatenate(list(self.schemes.values()))
        return {name: int((codes == code).sum()) for code, name in enumerate(C.SCHEMES)}


def _hvp_fn(net: ResNet18, names: list[str],
            batches: Iterable[tuple[torch.Tensor, torch.Tensor]]):
    """A function ``v -> H v`` (lists of tensors shaped like the layers' weights), ``H`` the
    Hessian of the mean cross-entropy over ``batches`` with respect to those weights."""
    params = [net.get_submodule(n).weight for n in names]
    data = [(x, y) for x, y in batches]
    if not data:
        raise ValueError("Hessian estimation needs at least one calibration batch")
    total = sum(len(y) for _, y in data)
    grads = []
    for x, y in data:
        loss = F.cross_entropy(net(x), y, reduction="sum") / total
        grads.append(torch.autograd.grad(loss, params, create_graph=True))

    def hvp(v: list[torch.Tensor]) -> list[torch.Tensor]:
        out = [torch.zeros_like(p) for p in params]
        for g in grads:
            hs = torch.autograd.grad(g, params, grad_outputs=v, retain_graph=True)
            for o, h in zip(out, hs, strict=True):
                o += h.detach()
        return out

    return hvp, params


def filter_hessian_eigenvalues(net: ResNet18, batches: Iterable[tuple[torch.Tensor,
                                                                       torch.Tensor]],
                               *, iters: int = 10, probes: int = 8, exact: bool = False,
                               seed: int = 0, layers: list[str] | None = None
                               ) -> dict[str, np.ndarray]:
    """Top eigenvalue of each filter's diagonal Hessian block ``H_ff``, by power iteration.

    ``H`` is the Hessian of the mean cross-entropy over ``batches`` (images as floats in
    [0, 1], BatchNorm in eval mode) with respect to every conv and fc weight; ``H_ff`` is its
    block for the weights of filter ``f`` alone (one output channel of a conv, one row of
    ``fc``). Each power step needs ``H_ff v_f`` for every filter:

    * ``exact=True``: one Hessian-vector product per filter, with the vector zero outside
      filter ``f``; its block on ``f`` is exactly ``H_ff v_f``. Costs one HVP per filter per
      step (minutes for a whole ResNet-18; meant for small models and for checking).
    * default: all filters of the network at once. For random signs ``e_f = +-1`` put
      ``z = sum_f e_f v_f`` and take ``e_f (H z)_f = H_ff v_f + sum_{g != f} e_f e_g H_fg v_g``.
      The cross terms have mean zero because ``E[e_f e_g] = 0`` for ``f != g``, so the average
      over ``probes`` sign draws is an unbiased estimate of ``H_ff v_f`` for every filter from
      ``probes`` HVPs per step; its noise falls as ``1 / sqrt(probes)``.

    Returns the Rayleigh quotient ``v_f^T H_ff v_f`` (estimated the same way) of the last
    iterate: the eigenvalue of largest magnitude, signed. Start vectors and signs come from
    ``seed``, so the result is reproducible. ``layers`` restricts the work (and the probes'
    cross terms) to some layers; ``H_ff`` itself does not depend on it.
    """
    net.eval()
    names = layers or layer_names(net)
    hvp, params = _hvp_fn(net, names, batches)
    gen = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in params]

    def unit(t: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for x in t:
            n = x.reshape(x.shape[0], -1).norm(dim=1).clamp_min(1e-30)
            out.append(x / n.view(-1, *([1] * (x.dim() - 1))))
        return out

    def block_hvp(v: list[torch.Tensor]) -> list[torch.Tensor]:
        if exact:
            out = [torch.zeros_like(x) for x in v]
            for li, x in enumerate(v):
                for f in range(x.shape[0]):
                    z = [torch.zeros_like(y) for y in v]
                    z[li][f] = x[f]
                    out[li][f] = hvp(z)[li][f]
            return out
        acc = [torch.zeros_like(x) for x in v]
        for _ in range(probes):
            signs = [torch.randint(0, 2, (x.shape[0],), generator=gen).to(x) * 2 - 1
                     for x in v]
            shaped = [s.view(-1, *([1] * (x.dim() - 1))) for s, x in zip(signs, v, strict=True)]
            hz = hvp([s * x for s, x in zip(shaped, v, strict=True)])
            for a, s, h in zip(acc, shaped, hz, strict=True):
                a += s * h
        return [a / probes for a in acc]

    v = unit(v)
    lam = [torch.zeros(x.shape[0], device=x.device) for x in v]
    for _ in range(iters):
        hv = block_hvp(v)
        lam = [(h * x).reshape(x.shape[0], -1).sum(dim=1) for h, x in zip(hv, v, strict=True)]
        v = unit(hv)
    return {n: val.cpu().numpy().astype(np.float64) for n, val in zip(names, lam, strict=True)}


@torch.no_grad()
def filter_variances(net: ResNet18) -> dict[str, np.ndarray]:
    """Variance of each filter's weights after BatchNorm folding (the weights quantized)."""
    return {n: fold_layer(net, n)[0].reshape(net.get_submodule(n).weight.shape[0], -1)
            .double().var(dim=1, unbiased=False).cpu().numpy() for n in layer_names(net)}


def assign_schemes(net: ResNet18, ratio: tuple[int, int, int], *,
                   eigenvalues: dict[str, np.ndarray] | None = None,
                   first_last_8bit: bool = False, seed: int = 0) -> Assignment:
    """Scheme codes per filter for ``ratio`` (PoT-4:Fixed-4:Fixed-8) in every layer.

    Per layer (``scheme_counts`` gives the numbers): Fixed-8 to the filters with the largest
    ``eigenvalues`` (needed only when the ratio has Fixed-8); of the rest, PoT-4 to the
    lowest-variance filters, Fixed-4 to the others. Ties go to the lower filter index. With
    ``first_last_8bit``, ``conv1`` and ``fc`` are all Fixed-8.
    """
    variances = filter_variances(net)
    names = layer_names(net)
    schemes: dict[str, np.ndarray] = {}
    for name in names:
        var = variances[name]
        rows = len(var)
        if first_last_8bit and name in (names[0], names[-1]):
            schemes[name] = np.full(rows, C.FIXED8, np.uint8)
            continue
        counts = scheme_counts(rows, ratio)
        codes = np.full(rows, C.FIXED4, np.uint8)
        rest = np.arange(rows)
        if counts[C.FIXED8]:
            if eigenvalues is None or name not in eigenvalues:
                raise ValueError(f"ratio {ratio} has Fixed-8 filters, so layer {name!r} needs "
                                 f"Hessian eigenvalues; run filter_hessian_eigenvalues first")
            order = np.argsort(-eigenvalues[name], kind="stable")
            codes[order[:counts[C.FIXED8]]] = C.FIXED8
            rest = np.sort(order[counts[C.FIXED8]:])
        by_var = rest[np.argsort(var[rest], kind="stable")]
        codes[by_var[:counts[C.POT4]]] = C.POT4
        schemes[name] = codes
    return Assignment(schemes=schemes, ratio=tuple(ratio), first_last_8bit=first_last_8bit,
                      eigenvalues=dict(eigenvalues or {}), variances=variances, seed=seed)
