"""Fake quantizers with straight-through gradients: per-filter PoT-4 / Fixed-4 / Fixed-8
weights and PACT-style activations, producing exactly the contract's integer values."""

from __future__ import annotations

import torch
from torch import nn

from . import contract as C

__all__ = [
    "CLIP_CANDIDATES",
    "PACT",
    "fake_quant_weight",
    "ste_round",
    "weight_levels",
    "weight_scale",
    "weight_to_int",
]

#: Clipping ratios (of max |w|) tried per filter; the one with the least squared error wins.
CLIP_CANDIDATES: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest, with the identity as gradient (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def weight_levels(schemes: torch.Tensor) -> torch.Tensor:
    """Largest integer magnitude per filter: 64 for PoT-4, 7 for Fixed-4, 127 for Fixed-8
    (symmetric ranges, so -8 and -128 are never used)."""
    top = torch.tensor([C.max_abs_weight(C.POT4), C.weight_range(C.FIXED4)[1],
                        C.weight_range(C.FIXED8)[1]], dtype=torch.float32,
                       device=schemes.device)
    return top[schemes.long()]


def _pot_round(m: torch.Tensor) -> torch.Tensor:
    """Nearest value of {0, 1, 2, 4, ..., 64} to each magnitude ``m >= 0`` (ties go up)."""
    k = torch.floor(torch.log2(m.clamp_min(1.0)))
    low = torch.exp2(k)
    up = torch.where(m >= 1.5 * low, 2.0 * low, low)
    up = up.clamp_max(float(1 << C.POT_EXP_MAX))
    return torch.where(m < 0.5, torch.zeros_like(m), up)


def _to_levels(w: torch.Tensor, scale: torch.Tensor, schemes: torch.Tensor) -> torch.Tensor:
    """Integer weight values (as floats) of ``w`` (F, K) for per-filter ``scale`` (F,), or for
    several candidate scales at once (``scale`` (n, F) gives (n, F, K))."""
    x = w / scale[..., None]
    top = weight_levels(schemes)[:, None]
    out = torch.round(x).clamp(-top, top)
    pot = schemes == C.POT4
    if bool(pot.any()):  # the PoT rounding only where it is used: it is the costly part
        xp = x[..., pot, :]
        out[..., pot, :] = torch.sign(xp) * _pot_round(xp.abs().clamp_max(top[pot]))
    return out


@torch.no_grad()
def weight_scale(w: torch.Tensor, schemes: torch.Tensor) -> torch.Tensor:
    """Per-filter scale of ``w`` (F, K): the clip of ``CLIP_CANDIDATES`` x max|w| giving the
    smallest squared quantization error (the first candidate on a tie), divided by the
    scheme's largest integer."""
    w = w.detach()
    top = weight_levels(schemes)
    peak = w.abs().amax(dim=1).clamp_min(1e-12)
    ratios = torch.tensor(CLIP_CANDIDATES, dtype=w.dtype, device=w.device)[:, None]
    scales = peak[None] * ratios / top[None]                       # (candidates, F)
    err = ((_to_levels(w, scales, schemes) * scales[..., None] - w) ** 2).sum(dim=2)
    best = err.argmin(dim=0)                                       # first minimum on ties
    return scales.gather(0, best[None])[0]


def weight_to_int(w: torch.Tensor, schemes: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(integer values (F, K) as float, scale (F,))`` with ``w ~= values * scale``; the
    values are legal for each filter's scheme (``contract.weights_legal``)."""
    w2 = w.detach().reshape(w.shape[0], -1)
    scale = weight_scale(w2, schemes)
    return _to_levels(w2, scale, schemes).reshape(w.shape), scale


def fake_quant_weight(w: torch.Tensor, schemes: torch.Tensor) -> tuple[torch.Tensor,
                                                                        torch.Tensor]:
    """Quantized weights ``values * scale`` with a straight-through gradient to ``w``, and the
    per-filter scale (no gradient)."""
    values, scale = weight_to_int(w, schemes)
    shape = (-1,) + (1,) * (w.dim() - 1)
    wq = values * scale.view(shape)
    return w + (wq - w).detach(), scale


class PACT(nn.Module):
    """Unsigned ``bits``-bit activation with a learnable clipping level ``alpha``.

    ``forward`` returns values on the grid ``k * alpha / (2**bits - 1)``; the gradient passes
    straight through the rounding and reaches ``alpha`` through the clip and the step size.
    With ``calibrating`` set, the next forward first sets ``alpha`` to a high percentile of
    its input.
    """

    def __init__(self, bits: int, alpha: float = 4.0) -> None:
        super().__init__()
        if bits not in (4, 5):
            raise ValueError(f"activation bits must be 4 or 5, not {bits!r}")
        self.bits = bits
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.calibrating = False

    @property
    def levels(self) -> int:
        return (1 << self.bits) - 1

    def scale(self) -> torch.Tensor:
        return self.alpha.clamp_min(1e-3) / self.levels

    def calibrate(self, x: torch.Tensor) -> None:
        pos = x.detach().flatten().float()
        pos = pos[pos > 0]
        if pos.numel():
            q = torch.quantile(pos[:: max(1, pos.numel() // 100_000)], 0.999)
            self.alpha.data.fill_(max(float(q), 1e-2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            self.calibrate(x)
        s = self.scale()
        return ste_round(torch.minimum(torch.relu(x), self.alpha.clamp_min(1e-3)) / s) * s

    def extra_repr(self) -> str:
        return f"bits={self.bits}, alpha={float(self.alpha.detach()):.4g}"
