"""Passes of a conv layer on the host: every filter once, Fixed-8 pairs aligned, and the
slots the engine requantizes together on distinct output-buffer lanes (Fixed-8 pairs, which
keep their places, aside)."""

import numpy as np
import pytest

from firmware.conv import plan_passes
from quant import contract as C
from rtl.config import preset
from rtl.interface.passes import pass_count


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


@pytest.mark.parametrize("dsp_rows", [3, 4, 5, 18, 25, 26, 32])
@pytest.mark.parametrize("filters", [64, 128, 256, 512])
def test_cycle_models_pass_count_is_the_firmwares(dsp_rows, filters):
    """The cycle model counts a layer's passes with ``pass_count``; the firmware's plan, with
    the filters in any order, makes that many (odd lane counts leave a Fixed-8 pair's gap)."""
    cfg = preset("zc706").replace(pot_rows=42, dsp_rows=dsp_rows)
    rng = np.random.default_rng(dsp_rows * filters)
    for p in ([0.6, 0.35, 0.05], [0.2, 0.3, 0.5], [0.0, 0.9, 0.1]):
        scheme = rng.choice([C.POT4, C.FIXED4, C.FIXED8], size=filters, p=p)
        counts = [int((scheme == s).sum()) for s in (C.POT4, C.FIXED4, C.FIXED8)]
        assert len(plan_passes(scheme, cfg)) == pass_count(*counts, cfg.pot_rows, cfg.dsp_rows)
