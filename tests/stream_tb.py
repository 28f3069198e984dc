"""A generic Amaranth-simulator bench for one-in, one-out stream components: payloads in with
random gaps, results out under random backpressure, checking that a stalled output holds."""

from __future__ import annotations

from typing import Any

import numpy as np
from amaranth.lib import data, wiring
from amaranth.sim import Simulator


def run_stream(dut: wiring.Component, payloads: list[Any], n_out: int, *, seed: int = 0,
               gap: float = 0.0, stall: float = 0.0, max_cycles: int | None = None
               ) -> tuple[list[Any], int]:
    """Drive ``dut.i`` with ``payloads`` and collect ``n_out`` payloads from ``dut.o``.

    ``gap``: chance of an idle cycle before each input; ``stall``: chance that the consumer
    is not ready in a cycle. Returns the outputs in order and the clock cycles taken.
    """
    rng_in, rng_out = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    results: list[Any] = []
    count = [0]
    limit = max_cycles or 50 * (len(payloads) + n_out + 20)

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
        held, cycles = None, 0
        while len(results) < n_out:
            ready = bool(rng_out.random() >= stall)
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            cycles += 1
            count[0] = cycles
            value = _plain(payload)
            if held is not None:
                assert valid, "o.valid dropped before o.ready took the result"
                assert value == held, "o.payload changed while stalled"
            held = None
            if valid and ready:
                results.append(value)
            elif valid:
                held = value
            assert cycles < limit, f"no progress after {cycles} cycles"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    return results, count[0]


def _plain(payload: Any) -> Any:
    """A sampled payload as plain Python values: dicts for structs, lists for arrays, ints."""
    layout = getattr(payload, "shape", lambda: None)()
    if isinstance(layout, data.StructLayout):
        return {name: _plain(getattr(payload, name)) for name, _ in layout}
    if isinstance(layout, data.ArrayLayout):
        return [_plain(payload[i]) for i in range(layout.length)]
    return int(payload)
