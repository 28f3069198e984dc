"""How a layer's filters are split into passes over both arrays (docs/engine.md).

A pass runs up to ``pot_rows`` PoT-4 filters on the PoT array and, at the same time, fixed-
point filters on the ``dsp_rows`` lanes of the DSP array: a Fixed-4 filter takes one lane, a
Fixed-8 filter an aligned pair of lanes (``fixed8_lanes``). The firmware plans its passes with
this rule and the cycle model counts them with it, so the two cannot disagree. Plain Python.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["dsp_lane_groups", "pass_count"]


def dsp_lane_groups(wide: Sequence[bool], lanes: int) -> list[list[tuple[int, int]]]:
    """Fill the DSP lanes in the order given: ``wide[i]`` says whether filter ``i`` is a
    Fixed-8 filter (two lanes, starting at an even lane). Returns, per pass, the ``(filter
    index, first lane)`` of every filter in it; a filter that does not fit opens a new pass."""
    groups: list[list[tuple[int, int]]] = []
    group: list[tuple[int, int]] = []
    used = 0
    for i, w in enumerate(wide):
        start = used + (used % 2 if w else 0)
        need = 2 if w else 1
        if start + need > lanes:
            groups.append(group)
            group, start = [], 0
        group.append((i, start))
        used = start + need
    if group:
        groups.append(group)
    return groups


def pass_count(n_pot: int, n_fixed4: int, n_fixed8: int, pot_rows: int, dsp_rows: int) -> int:
    """Passes of a layer with these filter counts, the Fixed-4 filters placed before the
    Fixed-8 ones (as the firmware places them); at least one."""
    pot = -(-n_pot // pot_rows) if n_pot else 0
    dsp = len(dsp_lane_groups([False] * n_fixed4 + [True] * n_fixed8, dsp_rows))
    return max(pot, dsp, 1)
