"""DDR layouts shared by the engine and the host: narrow integers in bus words, feature-map
vectors, and the conv pass block (header, result slots, weight rows).

Only numpy is needed, so the same module runs on the board's ARM cores. docs/engine.md
describes the layouts; the engine (``rtl.engine``, ``rtl.conv_core``) and the host packing
(``firmware.layer``) both read their constants from here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import HwConfig
from .descriptor import PIXEL_BITS

__all__ = ["PASS_HEADER_WORDS", "SLOT_FIELDS", "SLOT_WORDS", "feature_map_words",
           "pack_feature_map", "pack_slot", "pack_values", "pass_block_words",
           "pass_word_order", "port_row_words", "port_span", "row_words", "stored_input",
           "stored_input_words", "unpack_feature_map", "unpack_slot",
           "unpack_values", "values_per_word", "vector_words", "weight_row_bits", "word_bits",
           "words_per_vector"]

#: Words before the slots of a pass block: the Fixed-8 pair flags.
PASS_HEADER_WORDS = 1
#: Words per result slot: the requantization word (``SLOT_FIELDS``), then the channel.
SLOT_WORDS = 2
#: (bit offset, width) of the fields of a slot's first word.
SLOT_FIELDS: dict[str, tuple[int, int]] = {"bias": (0, 32), "mult": (32, 16),
                                           "shift": (48, 6), "valid": (63, 1)}


def pack_slot(*, channel: int, bias: int, mult: int, shift: int, valid: int = 1) -> list[int]:
    """The ``SLOT_WORDS`` words of one result slot of a pass block: the fields of
    ``SLOT_FIELDS`` (each cut to its width; ``bias`` in two's complement), then the output
    channel. An empty slot is ``[0] * SLOT_WORDS``."""
    fields = {"bias": bias, "mult": mult, "shift": shift, "valid": valid}
    return [sum((fields[name] & ((1 << width) - 1)) << offset
                for name, (offset, width) in SLOT_FIELDS.items()), channel]


def unpack_slot(words: Any) -> dict[str, int] | None:
    """The fields of one result slot from its ``SLOT_WORDS`` words (``bias`` signed, and
    ``channel``), as the engine reads them; None for a slot whose ``valid`` bit is clear."""
    word = int(words[0])
    field = {name: (word >> offset) & ((1 << width) - 1)
             for name, (offset, width) in SLOT_FIELDS.items()}
    if not field.pop("valid"):
        return None
    bias_bits = SLOT_FIELDS["bias"][1]
    if field["bias"] >> (bias_bits - 1):
        field["bias"] -= 1 << bias_bits
    return {**field, "channel": int(words[1])}


# ---- narrow integers in bus words ---------------------------------------------------------------

def values_per_word(bits: int, word_bits: int = 64) -> int:
    """How many ``bits``-wide values one bus word holds (values never straddle two words)."""
    if not isinstance(bits, int) or not 1 <= bits <= 32:
        raise ValueError(f"value width must be an integer from 1 to 32 bits, not {bits!r}")
    if word_bits not in (32, 64):
        raise ValueError(f"bus word width must be 32 or 64 bits, not {word_bits!r}")
    return word_bits // bits


def _check_range(values: np.ndarray, bits: int, signed: bool) -> None:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if values.size and (values.min() < lo or values.max() > hi):
        bad = values[(values < lo) | (values > hi)].flat[0]
        raise ValueError(f"value {bad} does not fit {'s' if signed else 'u'}{bits} "
                         f"[{lo}, {hi}]")


def _pack_rows(lanes: np.ndarray, bits: int, word_bits: int) -> np.ndarray:
    """Rows of ``values_per_word`` unsigned lane values (uint64) to one word each."""
    dtype = np.dtype("<u8" if word_bits == 64 else "<u4")
    if bits in (8, 16, 32) and lanes.shape[-1] * bits == word_bits:
        # Whole bytes: value i of a little-endian word is simply its i-th byte group.
        narrow = lanes.astype(f"<u{bits // 8}", copy=False)
        return np.ascontiguousarray(narrow).view(dtype).reshape(lanes.shape[:-1])
    lanes = lanes.astype(np.uint64, copy=False)
    shifts = np.arange(lanes.shape[-1], dtype=np.uint64) * np.uint64(bits)
    words = np.bitwise_or.reduce(lanes << shifts, axis=-1)
    return words.astype(dtype)


def pack_values(values: np.ndarray, bits: int, *, signed: bool, word_bits: int = 64
                ) -> np.ndarray:
    """Pack a flat sequence of integers into little-endian words, value ``i`` of a word at
    bit ``i * bits``; signed values are stored in two's complement. The last word is padded
    with zeros. Values outside the type's range raise (nothing is silently truncated)."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    _check_range(values, bits, signed)
    per = values_per_word(bits, word_bits)
    padded = np.zeros(-(-values.size // per) * per, dtype=np.uint64)
    padded[:values.size] = (values & ((1 << bits) - 1)).astype(np.uint64)
    return _pack_rows(padded.reshape(-1, per), bits, word_bits)


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


# ---- geometry -----------------------------------------------------------------------------------

def word_bits(cfg: HwConfig) -> int:
    """DDR words are the AXI masters' data width (64 bits: ``HwConfig`` accepts no other)."""
    return cfg.axi_data_width


def words_per_vector(cfg: HwConfig, bits: int) -> int:
    """DDR words holding one ``V``-element feature-map vector of ``bits``-bit elements."""
    return -(-cfg.vec_len // values_per_word(bits, word_bits(cfg)))


def vector_words(cfg: HwConfig, bits: int, channels: int) -> int:
    """DDR words of one vector of a ``channels``-channel map of ``bits``-bit elements in DDR:
    :func:`words_per_vector`, except for a map of 8-bit pixels (``PIXEL_BITS``, the image or
    its fold, written by the host only) of at most ``V`` channels, whose vectors keep only the
    words their channels fill (the lanes past them read as zero): zc706's folded stem, 48
    channels, takes 6 words a pixel instead of 8."""
    if bits == PIXEL_BITS and channels <= cfg.vec_len:
        return max(1, -(-channels // values_per_word(bits, word_bits(cfg))))
    return words_per_vector(cfg, bits)


def feature_map_words(cfg: HwConfig, shape: tuple[int, int, int], bits: int) -> int:
    """DDR words of a (C, H, W) feature map of ``bits``-bit elements (:func:`vector_words`)."""
    c, h, w = shape
    return h * w * cfg.chunks(c) * vector_words(cfg, bits, c)


def stored_input(cfg: HwConfig, fields: dict[str, int]) -> tuple[int, int, int]:
    """(C, H, W) of a descriptor's input map as it is in DDR: ``in_c x in_h x in_w``, or for
    an ``unroll`` conv the pixel map the engine unrolls, ``tap_lanes`` channels and
    ``unroll_taps - 1`` more columns (``rtl.engine.unpack.Unroller``)."""
    c, h, w = fields["in_c"], fields["in_h"], fields["in_w"]
    if fields.get("unroll"):
        return cfg.tap_lanes, h, w + cfg.unroll_taps - 1
    return c, h, w


def stored_input_words(cfg: HwConfig, fields: dict[str, int]) -> int:
    """DDR words of a descriptor's input map (:func:`stored_input`)."""
    return feature_map_words(cfg, stored_input(cfg, fields), fields["in_bits"])


def weight_row_bits(cfg: HwConfig) -> int:
    """Width of one weight-buffer row: every PoT code, then every DSP lane nibble."""
    return 4 * cfg.vec_len * cfg.slots


def row_words(cfg: HwConfig) -> int:
    """DDR words of one weight-buffer row."""
    return -(-weight_row_bits(cfg) // word_bits(cfg))


def pass_block_words(cfg: HwConfig, steps: int) -> int:
    """DDR words of one conv pass block (header, slots, ``steps`` weight rows in the order of
    :func:`pass_word_order`)."""
    return (PASS_HEADER_WORDS + SLOT_WORDS * cfg.slots
            + steps * row_words(cfg))


def port_row_words(cfg: HwConfig, port: int) -> tuple[int, int]:
    """(first word, words) of every weight row that weight port ``port`` loads: the row's
    words are cut into ``weight_ports`` contiguous segments, the first ``row_words %
    weight_ports`` a word longer, so that the engine's loader puts a row together from the
    ports' segments side by side (no multiplexer over the ports). A port past the row's
    words loads nothing."""
    p, wpr = cfg.weight_ports, row_words(cfg)
    sizes = [wpr // p + (j < wpr % p) for j in range(p)]
    return sum(sizes[:port]), sizes[port]


def pass_word_order(cfg: HwConfig, steps: int) -> np.ndarray:
    """The words of a pass block's ``steps`` weight rows in DDR order, as indices into the
    rows' words row by row (``row * row_words + word``): port 0's segment of every row
    (:func:`port_row_words`), then port 1's, and so on, so that each port reads one
    contiguous run. With one port, the rows' words are in order."""
    wpr = row_words(cfg)
    runs = []
    for port in range(cfg.weight_ports):
        first, words = port_row_words(cfg, port)
        runs.append((np.arange(steps)[:, None] * wpr + first + np.arange(words)).ravel())
    return np.concatenate(runs)


def port_span(cfg: HwConfig, steps: int, port: int) -> tuple[int, int]:
    """(first word, words) of the pass block that weight port ``port`` reads: port 0 the
    header, the slots and its segments of the rows; every other port its segments."""
    head = PASS_HEADER_WORDS + SLOT_WORDS * cfg.slots
    first, words = port_row_words(cfg, port)
    return (0, head + steps * words) if port == 0 else (head + steps * first, steps * words)


# ---- feature maps -------------------------------------------------------------------------------

def pack_feature_map(x: np.ndarray, bits: int, *, signed: bool, cfg: HwConfig) -> np.ndarray:
    """(C, H, W) integers to DDR words: ``[h][w][chunk]`` vectors of ``V`` elements, each
    vector in its own ``ceil(V / (64 // bits))`` words (a pixel map's in fewer,
    :func:`vector_words`), element ``i`` of a word at bit ``i * bits`` (docs/engine.md).
    Vectorized: a 224 x 224 x 3 image packs in milliseconds."""
    x = np.asarray(x)
    c, h, w = x.shape
    v, word = cfg.vec_len, word_bits(cfg)
    _check_range(x, bits, signed)
    per_vec, per_word = vector_words(cfg, bits, c), values_per_word(bits, word)
    narrow = np.dtype(f"u{max(1, 1 << (bits - 1).bit_length() >> 3)}") if bits <= 32 else None
    # [h][w][chunk][element] holds channel chunk * V + element, two's complement; the last
    # chunk's missing channels and the elements past V in a vector's last word are zero.
    hwc = x.transpose(1, 2, 0).astype(np.int64 if signed else narrow) & ((1 << bits) - 1)
    full = np.zeros((h, w, cfg.chunks(c) * v), narrow)
    full[:, :, :c] = hwc
    lanes = full.reshape(h, w, -1, v)
    if per_vec * per_word < v:                  # a pixel map's vectors: the words it fills
        lanes = lanes[..., :per_vec * per_word]
    elif per_vec * per_word > v:
        lanes = np.concatenate([lanes, np.zeros((h, w, lanes.shape[2], per_vec * per_word - v),
                                                narrow)], axis=-1)
    return _pack_rows(lanes.reshape(-1, per_word), bits, word).astype(np.uint64, copy=False)


def unpack_feature_map(words: np.ndarray, shape: tuple[int, int, int], bits: int, *,
                       signed: bool, cfg: HwConfig) -> np.ndarray:
    """Inverse of :func:`pack_feature_map`: (C, H, W) int64."""
    c, h, w = shape
    v, word = cfg.vec_len, word_bits(cfg)
    per_vec = vector_words(cfg, bits, c)
    per_word = values_per_word(bits, word)
    words = np.asarray(words, np.uint64).reshape(-1)
    if words.size != feature_map_words(cfg, shape, bits):
        raise ValueError(f"{words.size} words do not hold a {c}x{h}x{w} map of {bits}-bit "
                         f"elements ({feature_map_words(cfg, shape, bits)} words)")
    shifts = np.arange(per_word, dtype=np.uint64) * np.uint64(bits)
    lanes = (words[:, None] >> shifts) & np.uint64((1 << bits) - 1)
    vectors = lanes.reshape(h, w, -1, per_vec * per_word)[..., :v].astype(np.int64)
    if signed:
        vectors = np.where(vectors >= (1 << (bits - 1)), vectors - (1 << bits), vectors)
    return vectors.reshape(h, w, -1)[:, :, :c].transpose(2, 0, 1).copy()
