"""Host-side data packing shared by firmware and tests: narrow integers in bus words, and the
per-layer filter reordering that puts each weight scheme in one contiguous group.

Only numpy is needed, so the same module runs on the board's ARM cores.
"""

from __future__ import annotations

import numpy as np

__all__ = ["inverse_order", "pack_values", "scheme_order", "unpack_values", "values_per_word"]


def values_per_word(bits: int, word_bits: int = 64) -> int:
    """How many ``bits``-wide values one bus word holds (values never straddle two words)."""
    if not isinstance(bits, int) or not 1 <= bits <= 32:
        raise ValueError(f"value width must be an integer from 1 to 32 bits, not {bits!r}")
    if word_bits not in (32, 64):
        raise ValueError(f"bus word width must be 32 or 64 bits, not {word_bits!r}")
    return word_bits // bits


def pack_values(values: np.ndarray, bits: int, *, signed: bool, word_bits: int = 64
                ) -> np.ndarray:
    """Pack a flat sequence of integers into little-endian words, value ``i`` of a word at
    bit ``i * bits``; signed values are stored in two's complement. The last word is padded
    with zeros. Values outside the type's range raise (nothing is silently truncated)."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if values.size and (values.min() < lo or values.max() > hi):
        bad = values[(values < lo) | (values > hi)][0]
        raise ValueError(f"value {bad} does not fit {'s' if signed else 'u'}{bits} "
                         f"[{lo}, {hi}]")
    per = values_per_word(bits, word_bits)
    padded = np.zeros(-(-values.size // per) * per, dtype=np.uint64)
    padded[:values.size] = (values & ((1 << bits) - 1)).astype(np.uint64)
    lanes = padded.reshape(-1, per)
    shifts = (np.arange(per, dtype=np.uint64) * np.uint64(bits))
    words = np.bitwise_or.reduce(lanes << shifts, axis=1) if per > 1 else lanes[:, 0]
    return words.astype(np.uint64 if word_bits == 64 else np.uint32)


def unpack_values(words: np.ndarray, bits: int, count: int, *, signed: bool,
                  word_bits: int = 64) -> np.ndarray:
    """Inverse of ``pack_values``: the first ``count`` values, as int64."""
    per = values_per_word(bits, word_bits)
    words = np.asarray(words, dtype=np.uint64).reshape(-1)
    if count > words.size * per:
        raise ValueError(f"{words.size} words of {word_bits} bits hold at most "
                         f"{words.size * per} {bits}-bit values, not {count}")
    shifts = (np.arange(per, dtype=np.uint64) * np.uint64(bits))
    lanes = (words[:, None] >> shifts) & np.uint64((1 << bits) - 1)
    values = lanes.reshape(-1)[:count].astype(np.int64)
    if signed:
        values = np.where(values >= (1 << (bits - 1)), values - (1 << bits), values)
    return values


def scheme_order(schemes: np.ndarray) -> np.ndarray:
    """Permutation putting filters in scheme groups (PoT-4, then Fixed-4, then Fixed-8),
    keeping the original order inside each group: ``reordered = weights[order]``."""
    schemes = np.asarray(schemes)
    return np.argsort(schemes, kind="stable")


def inverse_order(order: np.ndarray) -> np.ndarray:
    """Where each original filter landed: ``outputs_original = outputs_reordered[inverse]``."""
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return inverse
