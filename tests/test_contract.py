"""The integer contract: hand-computed cases, and properties against exact rational arithmetic."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from quant import contract as C

# ---- independent reference: the formulas of docs/arithmetic.md in exact rationals ----------


def ref_requant(acc: int, mult: int, shift: int) -> int:
    """round-half-up(acc * mult / 2**shift), with Fraction and floor, no shifts."""
    return math.floor(Fraction(acc * mult, 2**shift) + Fraction(1, 2)) if shift else acc * mult


def ref_clamp(x: int, lo: int, hi: int) -> int:
    return lo if x < lo else hi if x > hi else x


accs = st.integers(-(2**31), 2**31 - 1)
mults = st.integers(0, C.MULT_MAX)
shifts = st.integers(0, C.SHIFT_MAX)
act_bits = st.sampled_from([4, 5])


# ---- weights --------------------------------------------------------------------------------

def test_pot_codes_by_hand():
    # code: sign bit 3, exponent code bits 2..0; 0 means zero, e means 2**(e - 1).
    table = {0b0000: 0, 0b0001: 1, 0b0010: 2, 0b0011: 4, 0b0100: 8, 0b0101: 16, 0b0110: 32,
             0b0111: 64, 0b1000: 0, 0b1001: -1, 0b1010: -2, 0b1011: -4, 0b1100: -8,
             0b1101: -16, 0b1110: -32, 0b1111: -64}
    for code, value in table.items():
        assert C.pot_decode(code) == value
        if code != 0b1000:
            assert C.pot_encode(value) == code
    assert C.POT_VALUES == (-64, -32, -16, -8, -4, -2, -1, 0, 1, 2, 4, 8, 16, 32, 64)


def test_pot_encode_rejects_non_powers():
    for bad in (3, -5, 128, 96):
        with pytest.raises(ValueError, match=rf"^{bad} is not a PoT-4 value"):
            C.pot_encode(bad)
    with pytest.raises(ValueError, match=r"^PoT-4 codes are 4-bit values 0\.\.15$"):
        C.pot_decode(16)


def test_weight_ranges_and_legality():
    assert C.weight_range("fixed4") == (-8, 7)
    assert C.weight_range("fixed8") == (-128, 127)
    assert C.weight_range(C.POT4) == (-64, 64)
    assert C.max_abs_weight("fixed8") == 128
    np.testing.assert_array_equal(C.weights_legal([-9, -8, 7, 8], "fixed4"),
                                  [False, True, True, False])
    np.testing.assert_array_equal(C.weights_legal([-128, 127, 128], "fixed8"),
                                  [True, True, False])
    np.testing.assert_array_equal(C.weights_legal([0, 3, 64, -64, 7], "pot4"),
                                  [True, False, True, True, False])
    with pytest.raises(ValueError, match=r"^unknown weight scheme 'int3'; allowed: pot4, "
                                         r"fixed4, fixed8 \(codes 0\.\.2\)$"):
        C.weight_range("int3")


# ---- requantization ------------------------------------------------------------------------

@pytest.mark.parametrize(("acc", "mult", "shift", "expected"), [
    (10, 1, 0, 10),       # shift 0: no rounding term
    (10, 3, 2, 8),        # 30 / 4 = 7.5 -> 8 (half rounds up)
    (9, 3, 2, 7),         # 27 / 4 = 6.75 -> 7
    (-10, 3, 2, -7),      # -30 / 4 = -7.5 -> -7 (half rounds towards +inf)
    (-9, 3, 2, -7),       # -27 / 4 = -6.75 -> -7
    (-11, 3, 2, -8),      # -33 / 4 = -8.25 -> -8
    (5, 0, 4, 0),         # multiplier 0
    (2**30, 65535, 47, 0),  # 2**30 * 65535 / 2**47 = 0.49999... -> 0
    (2**31 - 1, 65535, 16, 2147450879),  # 2**31 - 1 - (2**31 - 1) / 65536 = 2147450879.00002
])
def test_requantize_by_hand(acc, mult, shift, expected):
    assert C.requantize(np.int64(acc), mult, shift) == expected


@given(accs, mults, shifts)
def test_requantize_matches_rationals(acc, mult, shift):
    assert int(C.requantize(np.int64(acc), np.int64(mult), np.int64(shift))) == \
        ref_requant(acc, mult, shift)


def test_activation_by_hand():
    # 100 * 5 / 2**5 = 15.625 -> 16 -> clamp to u4 max 15
    assert C.activation(np.int64(100), 5, 5, True, 4) == 15
    # without ReLU: s5 range [-16, 15]; -100 * 5 / 32 = -15.625 -> -16 (round half up: -15.5
    # would be -15, -15.625 is below the half)
    assert C.activation(np.int64(-100), 5, 5, False, 4) == -16
    assert C.activation(np.int64(-100), 5, 5, True, 4) == 0
    assert C.activation(np.int64(-1000), 5, 5, False, 5) == -32
    assert C.activation(np.int64(40), 1, 2, True, 4) == 10


@given(accs, mults, shifts, st.booleans(), act_bits)
def test_activation_matches_rationals(acc, mult, shift, relu, bits):
    r = ref_requant(acc, mult, shift)
    expected = ref_clamp(r, 0, 2**bits - 1) if relu else ref_clamp(r, -(2**bits), 2**bits - 1)
    assert int(C.activation(np.int64(acc), mult, shift, relu, bits)) == expected


# ---- residual add, pooling, logits ------------------------------------------------------------

def test_residual_add_by_hand():
    # a: -12 * 3 / 4 = -9 ; b: 9 * 5 / 8 = 5.625 -> 6 ; sum -3 -> ReLU 0 ; signed keeps -3
    assert C.residual_add(np.int64(-12), np.int64(9), 3, 2, 5, 3, True, 4) == 0
    assert C.residual_add(np.int64(-12), np.int64(9), 3, 2, 5, 3, False, 4) == -3
    # 15 + 15 saturates at the u4 maximum
    assert C.residual_add(np.int64(15), np.int64(15), 1, 0, 1, 0, True, 4) == 15


@given(st.integers(-32, 31), st.integers(0, 31), mults, st.integers(0, 24), mults,
       st.integers(0, 24), st.booleans(), act_bits)
def test_residual_add_matches_rationals(a, b, ma, sa, mb, sb, relu, bits):
    total = ref_requant(a, ma, sa) + ref_requant(b, mb, sb)
    expected = ref_clamp(total, 0, 2**bits - 1) if relu else \
        ref_clamp(total, -(2**bits), 2**bits - 1)
    assert int(C.residual_add(np.int64(a), np.int64(b), ma, sa, mb, sb, relu, bits)) == expected


def test_avgpool_by_hand():
    # 7x7 map summing to 300: 300 * 1337 / 2**16 = 6.12 -> 6  (1337 / 65536 ~ 1/49)
    assert C.avgpool_requant(np.int64(300), 1337, 16, 4) == 6
    assert C.avgpool_requant(np.int64(49 * 15), 1337, 16, 4) == 15


@given(st.lists(st.integers(0, 31), min_size=1, max_size=64), mults, shifts, act_bits)
def test_avgpool_matches_rationals(pixels, mult, shift, bits):
    expected = ref_clamp(ref_requant(sum(pixels), mult, shift), 0, 2**bits - 1)
    assert int(C.avgpool_requant(np.int64(sum(pixels)), mult, shift, bits)) == expected


@given(accs, mults, st.integers(0, 16))
def test_logits_saturate_to_int32(acc, mult, shift):
    expected = ref_clamp(ref_requant(acc, mult, shift), -(2**31), 2**31 - 1)
    assert int(C.logits(np.int64(acc), mult, shift)) == expected


# ---- multipliers ----------------------------------------------------------------------------

def test_quantize_multiplier_by_hand():
    assert C.quantize_multiplier(1.0) == (32768, 15)
    assert C.quantize_multiplier(0.5) == (32768, 16)
    assert C.quantize_multiplier(3.0) == (49152, 14)
    assert C.quantize_multiplier(65535.0) == (65535, 0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^requantization scale must be a positive finite"):
            C.quantize_multiplier(bad)
    with pytest.raises(ValueError, match=r"^requantization scale 70000.0 is too large"):
        C.quantize_multiplier(70000.0)


@given(st.floats(min_value=1e-9, max_value=60000.0))
def test_quantize_multiplier_is_the_finest_fit(real):
    mult, shift = C.quantize_multiplier(real)
    assert 0 <= mult <= C.MULT_MAX and 0 <= shift <= C.SHIFT_MAX
    # Nearest integer at this shift, and the next finer shift would overflow the multiplier.
    assert abs(Fraction(mult, 2**shift) - Fraction(real)) <= Fraction(1, 2**(shift + 1))
    if shift < C.SHIFT_MAX:
        assert round(real * 2 ** (shift + 1)) > C.MULT_MAX


# ---- one implementation for numpy and torch ---------------------------------------------------

def test_contract_ops_agree_on_numpy_and_torch():
    rng = np.random.default_rng(0)
    acc = rng.integers(-(2**30), 2**30, 500)
    mult = rng.integers(0, C.MULT_MAX + 1, 500)
    shift = rng.integers(0, 30, 500)
    t = torch.from_numpy
    np.testing.assert_array_equal(C.requantize(acc, mult, shift).astype(np.int64),
                                  C.requantize(t(acc), t(mult), t(shift)).numpy())
    for relu in (True, False):
        np.testing.assert_array_equal(C.activation(acc, mult, shift, relu, 4),
                                      C.activation(t(acc), t(mult), t(shift), relu, 4).numpy())
    np.testing.assert_array_equal(C.logits(acc, mult, shift),
                                  C.logits(t(acc), t(mult), t(shift)).numpy())
    a, b = rng.integers(-16, 16, 500), rng.integers(0, 16, 500)
    np.testing.assert_array_equal(C.residual_add(a, b, 300, 9, 700, 10, True, 4),
                                  C.residual_add(t(a), t(b), 300, 9, 700, 10, True, 4).numpy())


def test_tensor_type():
    assert (C.TensorType(False, 4).lo, C.TensorType(False, 4).hi) == (0, 15)
    assert (C.TensorType(True, 5).lo, C.TensorType(True, 5).hi) == (-16, 15)
    assert C.TensorType.parse("s5") == C.TensorType(True, 5)
    assert str(C.TensorType(False, 8)) == "u8"
    with pytest.raises(ValueError, match=r"^tensor type must look like 'u4' or 's5', not 'x4'$"):
        C.TensorType.parse("x4")
