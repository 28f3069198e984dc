"""Host-side preparation of a conv/fc layer for the engine: passes, weight rows and slots.

A pass runs up to ``pot_rows`` PoT-4 filters on the PoT array and, at the same time, fixed-
point filters filling the ``dsp_rows`` DSP lanes (Fixed-4: one lane; Fixed-8: an aligned lane
pair) on the DSP array (docs/engine.md). Every filter keeps its original output channel, so
results land in the original order. Only numpy and the hardware config are needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant import contract as C
from rtl.config import HwConfig
from rtl.interface.passes import dsp_lane_groups

__all__ = ["ConvPass", "Slot", "plan_passes", "weight_rows"]


@dataclass(frozen=True)
class Slot:
    """One result position of a pass: which original channel it is, and its requant."""

    channel: int
    bias: int
    mult: int
    shift: int


@dataclass
class ConvPass:
    """Filters of one pass: ``pot[r]`` / ``dsp[l]`` hold the original filter index or -1,
    ``fixed8[k]`` whether DSP lanes 2k, 2k+1 run one Fixed-8 filter."""

    pot: list[int]
    dsp: list[int]
    fixed8: list[bool]

    def slots(self, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray
              ) -> list[Slot | None]:
        """``pot_rows + dsp_rows`` result slots (PoT rows first); None where nothing lands
        (an empty row, or the upper lane of a Fixed-8 pair)."""
        out: list[Slot | None] = []
        for lane, f in enumerate(self.pot + self.dsp):
            upper8 = lane >= len(self.pot) and (lane - len(self.pot)) % 2 == 1 and \
                self.fixed8[(lane - len(self.pot)) // 2]
            out.append(None if f < 0 or upper8 else
                       Slot(int(f), int(bias[f]), int(mult[f]), int(shift[f])))
        return out


def plan_passes(scheme: np.ndarray, cfg: HwConfig) -> list[ConvPass]:
    """Split a layer's filters (by their scheme codes) into passes over both arrays."""
    scheme = np.asarray(scheme)
    pot = [int(f) for f in np.flatnonzero(scheme == C.POT4)]
    fixed = [int(f) for f in np.flatnonzero(scheme == C.FIXED4)] + \
            [int(f) for f in np.flatnonzero(scheme == C.FIXED8)]
    if (pot and cfg.pot_rows == 0) or (fixed and cfg.dsp_rows == 0):
        raise ValueError("layer uses a scheme whose array the hardware config does not have")
    pot_groups = [pot[i:i + cfg.pot_rows] for i in range(0, len(pot), cfg.pot_rows)]
    dsp_groups: list[tuple[list[int], list[bool]]] = []
    for group in dsp_lane_groups([scheme[f] == C.FIXED8 for f in fixed], cfg.dsp_rows):
        lanes, flags = [-1] * cfg.dsp_rows, [False] * (cfg.dsp_rows // 2)
        for i, start in group:
            f = fixed[i]
            lanes[start] = f
            if scheme[f] == C.FIXED8:
                lanes[start + 1] = f
                flags[start // 2] = True
        dsp_groups.append((lanes, flags))
    passes = []
    for p in range(max(len(pot_groups), len(dsp_groups), 1)):
        prow = pot_groups[p] if p < len(pot_groups) else []
        dl, df = dsp_groups[p] if p < len(dsp_groups) else ([-1] * cfg.dsp_rows,
                                                            [False] * (cfg.dsp_rows // 2))
        passes.append(_spread_lanes(ConvPass(prow + [-1] * (cfg.pot_rows - len(prow)),
                                             list(dl), list(df)), cfg))
    return passes


def _spread_lanes(plan: ConvPass, cfg: HwConfig) -> ConvPass:
    """Order the PoT filters of a pass, and each run of Fixed-4 lanes, so that the
    ``result_lanes`` slots the engine requantizes together have distinct output-buffer lanes
    (``channel % vec_len``) where the filters allow: such a group leaves in one beat, a group
    with a shared lane one slot a beat. Which row a filter runs on changes nothing else."""
    lanes, v = cfg.result_lanes, cfg.vec_len

    def arrange(filters: list[int], first_slot: int, taken: dict[int, set[int]]) -> list[int]:
        left, out = list(filters), []
        for k in range(len(filters)):
            used = taken.setdefault((first_slot + k) // lanes, set())
            pick = next((f for f in left if f % v not in used), left[0])
            left.remove(pick)
            used.add(pick % v)
            out.append(pick)
        return out

    taken: dict[int, set[int]] = {}
    pot = [f for f in plan.pot if f >= 0]
    pot = arrange(pot, 0, taken) + [-1] * (len(plan.pot) - len(pot))
    dsp = list(plan.dsp)

    def pair(lane: int) -> bool:     # lanes lane, lane + 1 run one Fixed-8 filter
        return lane % 2 == 0 and lane // 2 < len(plan.fixed8) and plan.fixed8[lane // 2]

    lane = 0
    while lane < len(dsp):
        if dsp[lane] < 0 or pair(lane):
            if dsp[lane] >= 0:     # a Fixed-8 pair: its result slot is the lower lane
                taken.setdefault((len(pot) + lane) // lanes, set()).add(dsp[lane] % v)
            lane += 2 if dsp[lane] >= 0 else 1
            continue
        end = lane
        while end < len(dsp) and dsp[end] >= 0 and not pair(end):
            end += 1
        dsp[lane:end] = arrange(dsp[lane:end], len(pot) + lane, taken)
        lane = end
    return ConvPass(pot, dsp, list(plan.fixed8))


def weight_rows(weight: np.ndarray, scheme: np.ndarray, plan: ConvPass, cfg: HwConfig
                ) -> list[int]:
    """The ``K / V`` weight-buffer rows of one pass, as integers.

    ``weight`` is the layer's (O, I, kh, kw) (or (O, I)) int8 array. Steps run over
    ``(chunk, ky, kx)`` with ``kx`` innermost, the walk of ``rtl.window.WindowGen``; input
    channel ``chunk * V + col`` is column
    ``col`` (zero beyond I). In a row, PoT row ``r``'s code for column ``c`` sits at bit
    ``4 * (r * V + c)``; DSP lane ``l``'s nibble at ``4 * ((pot_rows + l) * V + c)``. A Fixed-8
    weight ``w`` on lanes ``2k, 2k+1`` is split as ``w & 15`` (low lane) and ``w >> 4``.
    """
    v = cfg.vec_len
    w = np.asarray(weight)
    if w.ndim == 2:
        w = w[:, :, None, None]
    out_ch, in_ch, kh, kw = w.shape
    chunks = cfg.chunks(in_ch)
    padded = np.zeros((out_ch, chunks * v, kh, kw), np.int64)
    padded[:, :in_ch] = w
    # (O, chunk, ky, kx, col)
    steps = padded.reshape(out_ch, chunks, v, kh, kw).transpose(0, 1, 3, 4, 2)
    steps = steps.reshape(out_ch, kh * kw * chunks, v)
    nsteps = steps.shape[1]
    nibbles = np.zeros((cfg.slots, nsteps, v), np.int64)
    for r, f in enumerate(plan.pot):
        if f >= 0:
            nibbles[r] = C.pot_encode(steps[f])
    for lane, f in enumerate(plan.dsp):
        if f < 0:
            continue
        row = cfg.pot_rows + lane
        if scheme[f] == C.FIXED8:
            nibbles[row] = (steps[f] & 15) if lane % 2 == 0 else (steps[f] >> 4) & 15
        else:
            nibbles[row] = steps[f] & 15
    rows = []
    flat = nibbles.transpose(1, 0, 2).reshape(nsteps, -1)   # (step, row * V + col)
    for t in range(nsteps):
        value = 0
        for i in np.flatnonzero(flat[t]):
            value |= int(flat[t, i]) << (4 * int(i))
        rows.append(value)
    return rows
