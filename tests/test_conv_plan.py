"""Passes of a conv layer on the host: every filter once, Fixed-8 pairs aligned, and the
slots the engine requantizes together on distinct output-buffer lanes (Fixed-8 pairs, which
keep their places, aside)."""

import numpy as np
import pytest

from firmware.conv import plan_passes
from quant import contract as C
from rtl.config import preset


def _slots(plan):
    """Filter of every result slot (PoT rows, then DSP lanes; -1 where nothing lands)."""
    upper = [i % 2 == 1 and plan.fixed8[i // 2] for i in range(len(plan.dsp))]
    return plan.pot + [-1 if up else f for f, up in zip(plan.dsp, upper, strict=True)]


@pytest.mark.parametrize("board", ["pynq-z2", "zc706"])
@pytest.mark.parametrize("filters", [10, 64, 128, 256, 512])
def test_passes_hold_every_filter_once_and_spread_lanes(board, filters):
    cfg = preset(board)
    rng = np.random.default_rng(filters)
    scheme = rng.choice([C.POT4, C.FIXED4, C.FIXED8], size=filters, p=[0.6, 0.35, 0.05])
    plans = plan_passes(scheme, cfg)
    seen = [f for plan in plans for f in _slots(plan) if f >= 0]
    assert sorted(seen) == list(range(filters))
    for plan in plans:
        assert all(scheme[f] == C.POT4 for f in plan.pot if f >= 0)
        for k, wide in enumerate(plan.fixed8):
            lo, hi = plan.dsp[2 * k], plan.dsp[2 * k + 1]
            assert wide == (lo >= 0 and scheme[lo] == C.FIXED8)
            if wide:
                assert lo == hi
        slots = _slots(plan)
        for g in range(0, len(slots), cfg.result_lanes):
            group = [f for f in slots[g:g + cfg.result_lanes] if f >= 0]
            lanes = [f % cfg.vec_len for f in group]
            # Only Fixed-8 pairs stay where they are; everything else is spread.
            if len(set(lanes)) != len(lanes):
                assert sum(scheme[f] == C.FIXED8 for f in group) >= 2, (g, group)
