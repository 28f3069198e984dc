"""cocotb bench for the PoT and DSP arrays' Verilog: golden dot products, gaps, backpressure."""

from __future__ import annotations

import math
from collections.abc import Iterator

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from rtl.config import HwConfig
from sim.array_jobs import (
    Job,
    dsp_every_product_jobs,
    dsp_jobs,
    expected,
    pack_payloads,
    pot_jobs,
    unpack_results,
    vector_fields,
)
from sim.runner import bench_params


def _random_flags(rng: np.random.Generator, prob: float) -> Iterator[bool]:
    while True:
        yield bool(rng.random() < prob)


class TB:
    """Clock, reset, an input-stream driver and an output-stream monitor for one array."""

    def __init__(self, dut) -> None:
        self.dut = dut
        self.log = dut._log
        p = bench_params()
        self.array: str = p["array"]
        self.cfg = HwConfig.from_json(p["config"])
        self.params = p
        if self.array == "pot":
            from rtl.pot_array import pot_input_layout
            self.layout = pot_input_layout(self.cfg)
            self.rows = self.cfg.pot_rows
            # Documented latency: chains of up to 8 columns (one registered stage per column
            # after the first), a tree over the chains, then the accumulator.
            chain = min(self.cfg.vec_len, 8)
            chains = -(-self.cfg.vec_len // chain)
            self.latency = max(1, chain - 1 + math.ceil(math.log2(chains))) + 1
        else:
            from rtl.dsp_array import dsp_input_layout
            self.layout = dsp_input_layout(self.cfg)
            self.rows = self.cfg.dsp_rows
            # Documented latency: 6 + ceil(log2(cols)) (4 DSP48E1 stages, tree, lane total, acc)
            self.latency = 6 + math.ceil(math.log2(self.cfg.vec_len))
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.i__valid.value = 0
        dut.o__ready.value = 0

    def jobs(self, n_random: int, seed: int) -> list[Job]:
        make = pot_jobs if self.array == "pot" else dsp_jobs
        return make(self.cfg, n_random, seed)

    def payloads(self, jobs: list[Job]) -> list[int]:
        out: list[int] = []
        for job in jobs:
            out.extend(pack_payloads(self.layout, vector_fields(job)))
        return out

    async def reset(self) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def drive(self, payloads: list[int], gaps: Iterator[bool],
                    accepted_at: list[int] | None = None) -> None:
        """Offer each payload, idling when ``gaps`` says so; hold it until it is taken."""
        dut, cycle, i, offered = self.dut, 0, 0, False
        while i < len(payloads):
            await RisingEdge(dut.clk)
            cycle += 1
            if offered and dut.i__ready.value:
                if accepted_at is not None:
                    accepted_at.append(cycle)
                i += 1
                offered = False
            if not offered:
                if i < len(payloads) and not next(gaps):
                    dut.i__payload.value = payloads[i]
                    dut.i__valid.value = 1
                    offered = True
                else:
                    dut.i__valid.value = 0

    async def collect(self, count: int, vectors: int, stalls: Iterator[bool],
                      arrived_at: list[int] | None = None) -> list[np.ndarray]:
        """Take ``count`` results of ``vectors`` inputs, not ready when ``stalls`` says so; a
        stalled result must hold."""
        dut, results, held, cycle = self.dut, [], None, 0
        limit = 20 * vectors + 1000  # far more than gaps and stalls can cost
        while len(results) < count:
            ready = not next(stalls)
            dut.o__ready.value = int(ready)
            await RisingEdge(dut.clk)
            cycle += 1
            valid = bool(dut.o__valid.value)
            raw = int(dut.o__payload.value.to_unsigned()) if valid else None
            if held is not None:
                assert valid, "o__valid dropped before o__ready took the result"
                assert raw == held, "o__payload changed while o__valid waited for o__ready"
            held = None
            if valid and ready:
                results.append(unpack_results(raw, self.rows, self.cfg.acc_bits))
                if arrived_at is not None:
                    arrived_at.append(cycle)
            elif valid:
                held = raw
            assert cycle < limit, "the array stopped producing results"
        dut.o__ready.value = 0
        return results

    def check(self, jobs: list[Job], results: list[np.ndarray]) -> None:
        assert len(results) == len(jobs)
        for n, (job, got) in enumerate(zip(jobs, results, strict=True)):
            want = expected(job)
            if not np.array_equal(got, want):
                self.log.error("job %d (%d vectors): expected %s, got %s", n, job.vectors,
                               want.tolist(), got.tolist())
            np.testing.assert_array_equal(got, want, f"job {n} differs from the golden model")


@cocotb.test()
async def random_and_extremes(dut) -> None:
    """Extreme jobs then random jobs (>= n_random vectors), random valid gaps, random stalls."""
    tb = TB(dut)
    await tb.reset()
    p = tb.params
    jobs = tb.jobs(p["n_random"], p["seed"])
    payloads = tb.payloads(jobs)
    rng = np.random.default_rng(p["seed"] + 7)
    tb.log.info("%s array, %d jobs, %d vectors", tb.array, len(jobs), len(payloads))
    if tb.cfg.split_input:  # the expected values count these vectors' activations 16 times
        tb.log.info("split input: %d vectors with hi",
                    sum(int(job.hi.sum()) for job in jobs))
    cocotb.start_soon(tb.drive(payloads, _random_flags(rng, p["gap"])))
    results = await tb.collect(len(jobs), len(payloads), _random_flags(rng, p["stall"]))
    tb.check(jobs, results)


@cocotb.test()
async def full_rate_and_latency(dut) -> None:
    """Without gaps or stalls a vector enters every cycle and each result comes out exactly
    ``latency`` cycles after its last vector."""
    tb = TB(dut)
    await tb.reset()
    jobs = tb.jobs(400, tb.params["seed"] + 1)
    payloads = tb.payloads(jobs)
    accepted: list[int] = []
    arrived: list[int] = []
    never = _random_flags(np.random.default_rng(0), 0.0)
    cocotb.start_soon(tb.drive(payloads, never, accepted))
    results = await tb.collect(len(jobs), len(payloads),
                               _random_flags(np.random.default_rng(0), 0.0), arrived)
    tb.check(jobs, results)
    assert accepted == list(range(accepted[0], accepted[0] + len(payloads))), \
        "the array did not take one vector per cycle"
    last_index = np.cumsum([job.vectors for job in jobs]) - 1
    # A vector accepted at edge t has its result sampled at edge t + latency.
    want = [accepted[k] + tb.latency for k in last_index]
    assert arrived == want, f"latency differs from {tb.latency} cycles"


@cocotb.test()
async def every_product(dut) -> None:
    """DSP array only: every activation times every weight combination of one DSP48E1's lanes
    (Fixed-4) and every Fixed-8 weight, at full rate (split configs: every activation 0..15,
    ``hi`` on every other vector)."""
    tb = TB(dut)
    if tb.array != "dsp" or not tb.params.get("every_product"):
        return
    await tb.reset()
    jobs = dsp_every_product_jobs(tb.cfg, tb.params["seed"] + 2)
    payloads = tb.payloads(jobs)
    tb.log.info("every product: %d vectors", len(payloads))
    never = _random_flags(np.random.default_rng(0), 0.0)
    cocotb.start_soon(tb.drive(payloads, never))
    results = await tb.collect(len(jobs), len(payloads),
                               _random_flags(np.random.default_rng(0), 0.0))
    tb.check(jobs, results)
