"""HwConfig is the only gate: what it accepts elaborates, what cannot be built it refuses when
it is made (tests/test_config.py pins those messages)."""

from __future__ import annotations

import warnings

import pytest
from amaranth.back import rtlil

from rtl.config import preset
from rtl.top import flat_accelerator

TINY = preset("pynq-z2").replace(name="tiny", split_input=False, dsp_pack=3, pot_rows=2,
                                 pot_cols=4, dsp_rows=2, dsp_cols=4,
                                 act_buf_depth=256, weight_buf_depth=64, out_buf_depth=256,
                                 result_lanes=1)

#: One change per knob away from TINY, each to a value HwConfig accepts.
ACCEPTED = {
    "dsp_pack=1": dict(dsp_pack=1),
    "dsp_pack=3": dict(dsp_pack=3, dsp_rows=5),
    "dsp_pack=4 with 4-bit inputs": dict(dsp_pack=4, dsp_rows=4, input_bits=4),
    "act_bits=5": dict(act_bits=5),
    "result_lanes beyond vec_len": dict(result_lanes=8),
    "three weight ports": dict(weight_ports=3),
    "no Fixed-8": dict(weight_formats=("pot4", "fixed4")),
    "one column": dict(pot_cols=1, dsp_cols=1),
    "small limits": dict(max_reduction=9, max_channels=8, max_spatial=8, axi_addr_width=16),
}


@pytest.mark.parametrize("change", list(ACCEPTED))
def test_every_accepted_config_elaborates(change):
    cfg = TINY.replace(**ACCEPTED[change])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # unused-elaboratable notes of Amaranth
        text = rtlil.convert(flat_accelerator(cfg), name="accel")
    assert "module \\accel" in text
