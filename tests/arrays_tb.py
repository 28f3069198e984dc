"""Amaranth-simulator bench for the compute arrays: stream jobs in with gaps, results out
with backpressure, and check that a stalled output holds still."""

from __future__ import annotations

import numpy as np
from amaranth.lib import wiring

from sim.array_jobs import Job, vector_fields
from tests.stream_tb import run_stream


def _payloads(job: Job) -> list[dict]:
    fields = vector_fields(job)
    rows, cols = job.lanes.shape[0], job.acts.shape[1]
    out = []
    for v in range(job.vectors):
        p = {
            "act": [int(x) for x in fields["act"][v]],
            "weight": [[int(x) for x in row] for row in fields["weight"][v].reshape(rows, cols)],
            "first": int(fields["first"][v, 0]),
            "last": int(fields["last"][v, 0]),
        }
        if "fixed8" in fields:
            p["fixed8"] = [int(x) for x in fields["fixed8"][v]]
        out.append(p)
    return out


def run_jobs(dut: wiring.Component, jobs: list[Job], *, seed: int = 0, gap: float = 0.0,
             stall: float = 0.0, has_fixed8: bool = False) -> tuple[list[np.ndarray], int]:
    """Feed every job; return the results in order and the number of clock cycles taken.

    ``gap``: chance of an idle cycle before each input vector; ``stall``: chance that the
    consumer is not ready in a cycle.
    """
    payloads = [p for job in jobs for p in _payloads(job)]
    if not has_fixed8:
        for p in payloads:
            p.pop("fixed8", None)
    results, cycles = run_stream(dut, payloads, len(jobs), seed=seed, gap=gap, stall=stall,
                                 max_cycles=100 * (len(payloads) + 10))
    return [np.array(r, dtype=np.int64) for r in results], cycles
