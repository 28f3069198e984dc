"""Amaranth-simulator bench for the compute arrays: stream jobs in with gaps, results out
with backpressure, and check that a stalled output holds still."""

from __future__ import annotations

import numpy as np
from amaranth.lib import wiring
from amaranth.sim import Simulator

from sim.array_jobs import Job, vector_fields


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
    rng_in = np.random.default_rng(seed)
    rng_out = np.random.default_rng(seed + 1)
    results: list[np.ndarray] = []
    cycles = [0]

    async def producer(ctx):
        for p in payloads:
            while rng_in.random() < gap:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.payload, p)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        held = None
        while len(results) < len(jobs):
            ready = bool(rng_out.random() >= stall)
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            cycles[0] += 1
            value = np.array(list(payload), dtype=np.int64)
            if held is not None:
                assert valid, "o.valid dropped before o.ready took the result"
                np.testing.assert_array_equal(value, held, "o.payload changed while stalled")
            held = None
            if valid and ready:
                results.append(value)
            elif valid:
                held = value
            assert cycles[0] < 100 * (len(payloads) + 10), "array stopped producing results"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    return results, cycles[0]
