"""The integer arithmetic contract, implemented once (see docs/arithmetic.md).

Every function here works element-wise on integer numpy arrays and, unchanged, on integer
``torch`` tensors, so the PyTorch emulation, the numpy golden model and the RTL tests share
one definition of every rounding, shift and clamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "FIXED4",
    "FIXED8",
    "LOGIT_BITS",
    "MULT_BITS",
    "MULT_MAX",
    "POT4",
    "POT_EXP_MAX",
    "POT_VALUES",
    "SCHEMES",
    "SCHEME_CODE",
    "SHIFT_MAX",
    "TensorType",
    "activation",
    "avgpool_requant",
    "clamp",
    "conv_out_type",
    "logits",
    "max_abs_weight",
    "pot_decode",
    "pot_encode",
    "quantize_multiplier",
    "requantize",
    "residual_add",
    "weight_range",
    "weights_legal",
]

#: Per-filter weight schemes; a scheme's code is its index (stored in model files).
SCHEMES: tuple[str, ...] = ("pot4", "fixed4", "fixed8")
SCHEME_CODE: dict[str, int] = {name: code for code, name in enumerate(SCHEMES)}
POT4, FIXED4, FIXED8 = (SCHEME_CODE[s] for s in SCHEMES)

#: Requantization multipliers are unsigned integers of this width.
MULT_BITS = 16
MULT_MAX = (1 << MULT_BITS) - 1
#: Largest right shift of a requantization.
SHIFT_MAX = 47
#: Integer logits saturate to signed 32 bits.
LOGIT_BITS = 32
#: PoT-4 magnitudes are 2**0 .. 2**POT_EXP_MAX (exponent codes 1..7; code 0 is zero).
POT_EXP_MAX = 6
POT_VALUES: tuple[int, ...] = tuple(sorted(
    [0] + [s * (1 << e) for e in range(POT_EXP_MAX + 1) for s in (1, -1)]))

_RANGES = {"pot4": (-(1 << POT_EXP_MAX), 1 << POT_EXP_MAX),
           "fixed4": (-8, 7), "fixed8": (-128, 127)}


@dataclass(frozen=True)
class TensorType:
    """Element type of a feature map: unsigned or signed integers of ``bits`` bits."""

    signed: bool
    bits: int

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def __str__(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.bits}"

    @classmethod
    def parse(cls, text: str) -> TensorType:
        if (not isinstance(text, str) or len(text) < 2 or text[0] not in "su"
                or not text[1:].isdigit() or not 1 <= int(text[1:]) <= 32):
            raise ValueError(f"tensor type must look like 'u4' or 's5', not {text!r}")
        return cls(text[0] == "s", int(text[1:]))


def _scheme_name(scheme: str | int) -> str:
    if isinstance(scheme, str) and scheme in _RANGES:
        return scheme
    if isinstance(scheme, (int, np.integer)) and 0 <= int(scheme) < len(SCHEMES):
        return SCHEMES[int(scheme)]
    raise ValueError(f"unknown weight scheme {scheme!r}; allowed: {', '.join(SCHEMES)} "
                     f"(codes 0..{len(SCHEMES) - 1})")


def weight_range(scheme: str | int) -> tuple[int, int]:
    """Smallest and largest integer weight of a scheme."""
    return _RANGES[_scheme_name(scheme)]


def max_abs_weight(scheme: str | int) -> int:
    lo, hi = weight_range(scheme)
    return max(-lo, hi)


def weights_legal(values: np.ndarray, scheme: str | int) -> np.ndarray:
    """Boolean mask: which integer weights are representable in ``scheme``."""
    name = _scheme_name(scheme)
    values = np.asarray(values)
    if name == "pot4":
        return np.isin(values, POT_VALUES)
    lo, hi = _RANGES[name]
    return (values >= lo) & (values <= hi)


def pot_decode(code: Any) -> np.ndarray:
    """PoT-4 code (bit 3 sign, bits 2..0 exponent code ``e``) to its integer value.

    ``e == 0`` is zero (code 0b0000; 0b1000 is reserved and also decodes to zero, but model
    files never hold it); otherwise the magnitude is ``2 ** (e - 1)``.
    """
    code = np.asarray(code, dtype=np.int64)
    if np.any((code < 0) | (code > 15)):
        raise ValueError("PoT-4 codes are 4-bit values 0..15")
    e = code & 7
    mag = np.where(e == 0, 0, np.left_shift(1, np.maximum(e - 1, 0)))
    return np.where(code & 8, -mag, mag)


def pot_encode(value: Any) -> np.ndarray:
    """Integer PoT-4 value (0 or +-2**k, k <= 6) to its 4-bit code; other values raise."""
    value = np.asarray(value, dtype=np.int64)
    bad = ~np.isin(value, POT_VALUES)
    if np.any(bad):
        raise ValueError(f"{value[bad].flat[0]} is not a PoT-4 value; allowed: {POT_VALUES}")
    mag = np.abs(value)
    # log2 of an exact power of two, in integers: position of the single set bit.
    e = np.zeros_like(mag)
    for k in range(POT_EXP_MAX + 1):
        e = np.where(mag == (1 << k), k + 1, e)
    return np.where(value < 0, 8, 0) | e


def _clamp(x: Any, lo: int, hi: int) -> Any:
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return np.clip(x, lo, hi)
    return x.clamp(lo, hi)  # torch tensor


def clamp(x: Any, ttype: TensorType) -> Any:
    return _clamp(x, ttype.lo, ttype.hi)


def requantize(acc: Any, mult: Any, shift: Any) -> Any:
    """``floor((acc * mult + 2**(shift-1)) / 2**shift)``: rounding half up, exact in int64.

    ``acc`` is signed, ``mult`` in [0, MULT_MAX], ``shift`` in [0, SHIFT_MAX]; for shift 0
    there is no rounding term. ``>>`` on signed integers is an arithmetic (floor) shift.
    """
    rounding = (1 << shift) >> 1
    return (acc * mult + rounding) >> shift


def activation(acc: Any, mult: Any, shift: Any, relu: bool, act_bits: int) -> Any:
    """Output of a convolution: requantize, then ReLU-clamp to ``u{act_bits}`` or, without
    ReLU (the branch into a residual add), clamp to ``s{act_bits + 1}``."""
    return clamp(requantize(acc, mult, shift), conv_out_type(relu, act_bits))


def conv_out_type(relu: bool, act_bits: int) -> TensorType:
    return TensorType(False, act_bits) if relu else TensorType(True, act_bits + 1)


def residual_add(a: Any, b: Any, mult_a: int, shift_a: int, mult_b: int, shift_b: int,
                 relu: bool, act_bits: int) -> Any:
    """Add two feature maps of different scales: each requantized to the output scale, summed,
    then clamped like a convolution output."""
    total = requantize(a, mult_a, shift_a) + requantize(b, mult_b, shift_b)
    return clamp(total, conv_out_type(relu, act_bits))


def avgpool_requant(total: Any, mult: int, shift: int, act_bits: int) -> Any:
    """Global average pool from the per-channel integer sum of all pixels: requantize with
    ``mult / 2**shift`` (about 1/(H*W) times a scale ratio), clamp to ``u{act_bits}``."""
    return clamp(requantize(total, mult, shift), TensorType(False, act_bits))


def logits(acc: Any, mult: Any, shift: Any) -> Any:
    """Final layer: requantize per class to a common scale, saturate to signed 32 bits."""
    return clamp(requantize(acc, mult, shift), TensorType(True, LOGIT_BITS))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Integer ``(mult, shift)`` with ``mult / 2**shift`` closest to ``real`` (> 0), using the
    largest shift that keeps ``mult <= MULT_MAX`` so the approximation is as fine as it gets."""
    if not real > 0 or not np.isfinite(real):
        raise ValueError(f"requantization scale must be a positive finite number, not {real!r}")
    for shift in range(SHIFT_MAX, -1, -1):
        mult = round(real * (1 << shift))
        if mult <= MULT_MAX:
            return mult, shift
    raise ValueError(f"requantization scale {real!r} is too large (largest is {MULT_MAX})")
