"""Per-device scheme ratios (PoT-4 : Fixed-4 : Fixed-8) and how many filters each gets."""

from __future__ import annotations

import re

from . import contract as C

__all__ = ["RATIO_PRESETS", "parse_ratio", "scheme_counts"]

#: Named ratios from the ILMPQ paper's Table I and the board defaults.
RATIO_PRESETS: dict[str, tuple[int, int, int]] = {
    "ilmpq-1": (60, 35, 5),   # XC7Z020 / PYNQ-Z2
    "ilmpq-2": (65, 30, 5),   # XC7Z045 / ZC706
    "fixed": (0, 100, 0),
    "pot": (100, 0, 0),
    "pot-fixed": (50, 50, 0),
}


def parse_ratio(text: str | tuple[int, ...]) -> tuple[int, int, int]:
    """``"60:35:5"`` (PoT-4:Fixed-4:Fixed-8) or a preset name to a tuple of three integers."""
    if isinstance(text, tuple):
        parts = text
    elif isinstance(text, str) and text in RATIO_PRESETS:
        return RATIO_PRESETS[text]
    elif isinstance(text, str) and re.fullmatch(r"\s*\d+\s*:\s*\d+\s*:\s*\d+\s*", text):
        parts = tuple(int(p) for p in text.split(":"))
    else:
        raise ValueError(
            f"ratio must look like 'POT4:FIXED4:FIXED8' with integers, e.g. '60:35:5', or be one "
            f"of {', '.join(RATIO_PRESETS)}; got {text!r}")
    if len(parts) != 3 or not all(isinstance(p, int) and p >= 0 for p in parts) or not sum(parts):
        raise ValueError(f"ratio needs three non-negative integers, not all zero; got {text!r}")
    return parts  # type: ignore[return-value]


def scheme_counts(rows: int, ratio: tuple[int, int, int]) -> dict[int, int]:
    """Filters per scheme code for a layer of ``rows`` filters (largest-remainder rounding;
    ties go to the earlier scheme), summing exactly to ``rows``."""
    total = sum(ratio)
    exact = [rows * r / total for r in ratio]
    counts = [int(e) for e in exact]
    order = sorted(range(3), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: rows - sum(counts)]:
        counts[i] += 1
    return {C.SCHEME_CODE[name]: n for name, n in zip(C.SCHEMES, counts, strict=True)}
