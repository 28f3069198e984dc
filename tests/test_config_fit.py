"""HwConfig refuses, in milliseconds, arrays and buffers that cannot fit the part; the LUT
floors it uses stay below what Yosys really spends on the arrays."""

from __future__ import annotations

import time

import pytest

from rtl.config import ARRAY_LUT_FLOOR, PartTooSmallError, preset

P = preset("pynq-z2")
#: The BRAM floor restated: act buffer (V lanes of act_bits + 1), out buffer (V lanes of 32
#: bits), two weight banks (4 bits per PoT row and DSP lane per column), in 36 Kb tiles.
_BRAM = -(-(16 * 5 * P.act_buf_depth + 16 * 32 * P.out_buf_depth
            + 2 * 4 * 16 * (P.pot_rows + P.dsp_rows) * 4096) // (36 * 1024))


@pytest.mark.parametrize("changes, message", [
    (dict(pot_rows=200),
     r"^config 'pynq-z2' does not fit xc7z020clg400-1: its arrays and buffers alone need "
     r"68,800 LUT \(20 per PoT MAC and 10 per DSP lane at least\), the part has 53,200; reduce "
     r"pot_rows, dsp_rows or the columns$"),
    (dict(dsp_rows=60),
     r"^config 'pynq-z2' does not fit xc7z020clg400-1: its arrays and buffers alone need 240 "
     r"DSP48E1 \(one per 4 DSP lanes and column\), the part has 220; reduce dsp_rows or "
     r"dsp_cols, or raise dsp_pack$"),
    (dict(weight_buf_depth=4096),
     rf"^config 'pynq-z2' does not fit xc7z020clg400-1: its arrays and buffers alone need "
     rf"{_BRAM:,} BRAM36 \(act, out and two weight buffers at least\), the part has 140; reduce "
     rf"the buffer depths$"),
])
def test_refused_before_anything_is_built(changes, message) -> None:
    # What the numbers assume: 20 x 200 x 16 + 10 x 30 x 16 LUT; ceil(60 / 4) x 16 DSP48E1.
    assert (P.vec_len, P.act_bits, P.dsp_pack, P.dsp_rows) == (16, 4, 4, 30)
    started = time.monotonic()
    with pytest.raises(PartTooSmallError, match=message):
        P.replace(**changes)
    assert time.monotonic() - started < 1.0


def test_a_huge_dsp_config_is_refused_at_once() -> None:
    """The config that once elaborated for minutes: 131,072 DSP48E1."""
    started = time.monotonic()
    with pytest.raises(PartTooSmallError, match=r"^config 'zc706' does not fit xc7z045ffg900-2"):
        preset("zc706").replace(dsp_rows=1024, dsp_pack=1, pot_cols=128, dsp_cols=128)
    assert time.monotonic() - started < 1.0


@pytest.mark.slow
def test_lut_floors_are_below_yosys(tmp_path) -> None:
    """Small arrays synthesized with Yosys spend more LUTs per unit than the floors claim."""
    from rtl.build.synth import array_figures

    cfg = preset("pynq-z2").replace(pot_rows=2, dsp_rows=3, pot_cols=8, dsp_cols=8)
    pot = array_figures(cfg, "pot", work_dir=tmp_path / "pot")
    dsp = array_figures(cfg, "dsp", work_dir=tmp_path / "dsp")
    assert pot["LUT/MAC"] > ARRAY_LUT_FLOOR["pot_mac"], pot
    assert dsp["LUT/lane"] > ARRAY_LUT_FLOOR["dsp_lane"], dsp
