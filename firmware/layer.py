"""Host-side layer preparation: feature maps and conv weights packed into DDR words, and the
descriptor that points the engine at them. Shared by the firmware and the RTL benches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtl.config import HwConfig
from rtl.descriptor import Op

from .conv import plan_passes, weight_row_bits, weight_rows
from .pack import pack_values, unpack_values, values_per_word

__all__ = ["PASS_HEADER_WORDS", "SLOT_FIELDS", "SLOT_WORDS", "ConvLayer", "pack_feature_map",
           "pass_block_words", "prepare_conv", "row_words", "unpack_feature_map", "word_bits",
           "words_per_vector"]

#: Words before the slots of a pass block: the Fixed-8 pair flags.
PASS_HEADER_WORDS = 1
#: Words per result slot: the requantization word (``SLOT_FIELDS``), then the channel.
SLOT_WORDS = 2
#: (bit offset, width) of the fields of a slot's first word.
SLOT_FIELDS: dict[str, tuple[int, int]] = {"bias": (0, 32), "mult": (32, 16),
                                           "shift": (48, 6), "valid": (63, 1)}



def word_bits(cfg: HwConfig) -> int:
    """DDR words are the AXI master's data width; the engine's layouts need 64 bits."""
    if cfg.axi_data_width != 64:
        raise ValueError(f"the engine's DDR layouts need a 64-bit AXI master, not "
                         f"{cfg.axi_data_width}-bit (HwConfig.axi_data_width)")
    return cfg.axi_data_width


def _chunks(channels: int, v: int) -> int:
    return -(-channels // v)


def words_per_vector(cfg: HwConfig, bits: int) -> int:
    """DDR words holding one ``V``-element feature-map vector of ``bits``-bit elements."""
    return -(-cfg.vec_len // values_per_word(bits, word_bits(cfg)))


def row_words(cfg: HwConfig) -> int:
    """DDR words of one weight-buffer row."""
    return -(-weight_row_bits(cfg) // word_bits(cfg))


def pass_block_words(cfg: HwConfig, steps: int) -> int:
    """DDR words of one conv pass block (header, slots, ``steps`` weight rows)."""
    return (PASS_HEADER_WORDS + SLOT_WORDS * (cfg.pot_rows + cfg.dsp_rows)
            + steps * row_words(cfg))


def pack_feature_map(x: np.ndarray, bits: int, *, signed: bool, cfg: HwConfig) -> np.ndarray:
    """(C, H, W) integers to DDR words: ``[h][w][chunk]`` vectors of ``V`` elements, each
    vector in its own ``ceil(V / (64 // bits))`` words (docs/engine.md)."""
    c, h, w = x.shape
    v = cfg.vec_len
    padded = np.zeros((_chunks(c, v) * v, h, w), np.int64)
    padded[:c] = x
    vectors = padded.reshape(-1, v, h, w).transpose(2, 3, 0, 1).reshape(-1, v)
    word = word_bits(cfg)
    per_vec = words_per_vector(cfg, bits)
    out = np.zeros((len(vectors), per_vec), np.uint64)
    for i, vec in enumerate(vectors):
        out[i] = pack_values(vec, bits, signed=signed, word_bits=word)
    return out.reshape(-1)


def unpack_feature_map(words: np.ndarray, shape: tuple[int, int, int], bits: int, *,
                       signed: bool, cfg: HwConfig) -> np.ndarray:
    """Inverse of :func:`pack_feature_map`: (C, H, W) int64."""
    c, h, w = shape
    v = cfg.vec_len
    chunks = _chunks(c, v)
    word = word_bits(cfg)
    per_vec = words_per_vector(cfg, bits)
    words = np.asarray(words, np.uint64).reshape(-1, per_vec)
    if len(words) != h * w * chunks:
        raise ValueError(f"{len(words)} vectors of words do not hold a {c}x{h}x{w} map")
    vectors = np.stack([unpack_values(wv, bits, v, signed=signed, word_bits=word)
                        for wv in words])
    fm = vectors.reshape(h, w, chunks * v).transpose(2, 0, 1)
    return fm[:c]


@dataclass
class ConvLayer:
    """Everything the engine needs for one conv layer, ready to copy into DDR."""

    weights: np.ndarray     # uint64 words: the pass blocks
    passes: int
    steps: int
    cfg: HwConfig

    def descriptors(self, *, in_addr: int, out_addr: int, weight_addr: int,
                    in_shape: tuple[int, int, int], out_shape: tuple[int, int, int],
                    kernel: int, stride: int, pad: int, mode: int, in_bits: int,
                    out_bits: int, name: str = "conv") -> list[bytes]:
        """The layer's descriptors, one per row tile (``firmware.tiling``), to run as one
        chain (``DESC_COUNT``)."""
        from .tiling import layer_descriptors
        return layer_descriptors(
            self.cfg, pad=pad, name=name, op=Op.CONV, in_addr=in_addr, out_addr=out_addr,
            weight_addr=weight_addr, in_c=in_shape[0], in_h=in_shape[1], in_w=in_shape[2],
            out_c=out_shape[0], out_h=out_shape[1], out_w=out_shape[2], kernel=kernel,
            stride=stride, mode=int(mode), in_bits=in_bits, out_bits=out_bits,
            passes=self.passes, steps=self.steps)


def prepare_conv(weight: np.ndarray, scheme: np.ndarray, bias: np.ndarray, mult: np.ndarray,
                 shift: np.ndarray, cfg: HwConfig) -> ConvLayer:
    """Pass blocks of a conv (O, I, k, k) or fc (O, I) layer.

    Block of one pass (:func:`pass_block_words` words): a word of Fixed-8 pair flags; per
    result slot two words (the fields of ``SLOT_FIELDS``, then the original channel); then
    the weight rows, each :func:`row_words` words, low word first.
    """
    w = np.asarray(weight)
    if w.ndim == 2:
        w = w[:, :, None, None]
    plans = plan_passes(scheme, cfg)
    word, wpr = word_bits(cfg), row_words(cfg)
    words: list[int] = []
    steps = 0
    for plan in plans:
        words.append(sum(1 << k for k, f in enumerate(plan.fixed8) if f))
        for slot in plan.slots(bias, mult, shift):
            if slot is None:
                words += [0] * SLOT_WORDS
            else:
                fields = {"bias": slot.bias, "mult": slot.mult, "shift": slot.shift, "valid": 1}
                words.append(sum((fields[name] & ((1 << width) - 1)) << offset
                                 for name, (offset, width) in SLOT_FIELDS.items()))
                words.append(slot.channel)
        rows = weight_rows(w, scheme, plan, cfg)
        steps = len(rows)
        for row in rows:
            words += [(row >> (word * i)) & ((1 << word) - 1) for i in range(wpr)]
    return ConvLayer(np.array(words, np.uint64), len(plans), steps, cfg)
