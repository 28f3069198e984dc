"""Host-side packing: bit positions by hand, round trips, range errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtl.interface.ddr import (
    SLOT_WORDS,
    pack_slot,
    pack_values,
    unpack_slot,
    unpack_values,
    values_per_word,
)


def test_bit_positions_by_hand():
    words = pack_values([1, 2, 15, 0, 7], 4, signed=False)
    assert words.dtype == np.uint64
    assert words.tolist() == [0x7_0F21]
    assert pack_values([-1, 1], 4, signed=True).tolist() == [0x1F]
    assert pack_values([-16, 15, 3], 5, signed=True, word_bits=32).tolist() == [
        0x10 | (0x0F << 5) | (3 << 10)]
    assert pack_values([*range(16), 9], 4, signed=False).tolist() == [
        0xFEDC_BA98_7654_3210, 9]
    assert values_per_word(5) == 12 and values_per_word(4) == 16 and values_per_word(8) == 8


@given(st.sampled_from([4, 5, 8, 16]), st.booleans(), st.sampled_from([32, 64]),
       st.integers(0, 200), st.integers(0, 2**32 - 1))
def test_round_trip(bits, signed, word_bits, count, seed):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    values = np.random.default_rng(seed).integers(lo, hi + 1, count)
    words = pack_values(values, bits, signed=signed, word_bits=word_bits)
    assert len(words) == -(-count // (word_bits // bits))
    np.testing.assert_array_equal(
        unpack_values(words, bits, count, signed=signed, word_bits=word_bits), values)


def test_out_of_range_values_are_refused():
    with pytest.raises(ValueError, match=r"^value 16 does not fit u4 \[0, 15\]$"):
        pack_values([3, 16], 4, signed=False)
    with pytest.raises(ValueError, match=r"^value -17 does not fit s5 \[-16, 15\]$"):
        pack_values([-17], 5, signed=True)
    with pytest.raises(ValueError, match=r"^2 words of 64 bits hold at most 32 4-bit values, "
                                         r"not 33$"):
        unpack_values(np.zeros(2, np.uint64), 4, 33, signed=False)
    with pytest.raises(ValueError, match=r"^bus word width must be 32 or 64 bits, not 48$"):
        values_per_word(4, 48)


def test_result_slot_by_hand_and_round_trip():
    """A slot's first word holds bias (bits 0..31, two's complement), mult (32..47), shift
    (48..53) and valid (63); the second the channel. An empty slot reads as None."""
    words = pack_slot(channel=77, bias=-2, mult=0x1234, shift=5)
    assert len(words) == SLOT_WORDS
    assert words == [(1 << 63) | (5 << 48) | (0x1234 << 32) | 0xFFFF_FFFE, 77]
    assert unpack_slot(np.array(words, np.uint64)) == {"bias": -2, "mult": 0x1234, "shift": 5,
                                                       "channel": 77}
    assert unpack_slot(pack_slot(channel=3, bias=2**31 - 1, mult=0, shift=63))["bias"] \
        == 2**31 - 1
    assert unpack_slot([0] * SLOT_WORDS) is None
    assert unpack_slot(pack_slot(channel=9, bias=1, mult=1, shift=1, valid=0)) is None
