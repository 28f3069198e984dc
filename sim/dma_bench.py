"""cocotb bench for the DMA: reads and writes through an AXI RAM with idle and backpressure on
every channel, guard bytes around every written region, and window violations."""

from __future__ import annotations

import itertools
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus

from rtl.dma import MAX_OUTSTANDING
from sim.ddr import LatencyAxiRam
from sim.runner import bench_params

PAUSES = {"aw": [1, 1, 0], "w": [0, 1, 1], "b": [1, 0], "ar": [0, 1], "r": [1, 1, 0, 0, 1]}
GUARD = 64


class TB:
    def __init__(self, dut, params: dict) -> None:
        self.dut, self.p = dut, params
        self.wb = params["data_width"] // 8
        self.addr_width = params["addr_width"]
        self.rng = random.Random(params["seed"])
        # Drive every input before anything samples the bus: no X reaches the RAM model.
        for sig in (dut.rd_cmd__valid, dut.wr_cmd__valid, dut.wr_data__valid,
                    dut.rd_data__ready, dut.rd_cmd__payload, dut.wr_cmd__payload,
                    dut.wr_data__payload):
            sig.value = 0
        dut.window_base.value = params["window_base"]
        dut.window_size.value = params["window_size"]
        dut.rst.value = 1
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.ram = LatencyAxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst,
                                 size=params["ram_size"], read_latency=params["read_latency"])
        chans = {"aw": self.ram.write_if.aw_channel, "w": self.ram.write_if.w_channel,
                 "b": self.ram.write_if.b_channel, "ar": self.ram.read_if.ar_channel,
                 "r": self.ram.read_if.r_channel}
        for name, chan in chans.items():
            chan.set_pause_generator(itertools.cycle(PAUSES[name]))
        self.ar_count = self.aw_count = 0
        # Bursts in flight: reads from address to last beat, writes from address to response.
        self.reads_flying = self.writes_flying = 0
        self.max_reads_flying = self.max_writes_flying = 0
        cocotb.start_soon(self._count_addresses())

    async def _count_addresses(self) -> None:
        def fired(valid, ready) -> bool:
            return str(valid.value) == "1" and str(ready.value) == "1"

        while True:
            await RisingEdge(self.dut.clk)
            d = self.dut
            if fired(d.m_axi_arvalid, d.m_axi_arready):
                self.ar_count += 1
                self.reads_flying += 1
            if fired(d.m_axi_rvalid, d.m_axi_rready) and str(d.m_axi_rlast.value) == "1":
                self.reads_flying -= 1
            if fired(d.m_axi_awvalid, d.m_axi_awready):
                self.aw_count += 1
                self.writes_flying += 1
            if fired(d.m_axi_bvalid, d.m_axi_bready):
                self.writes_flying -= 1
            self.max_reads_flying = max(self.max_reads_flying, self.reads_flying)
            self.max_writes_flying = max(self.max_writes_flying, self.writes_flying)

    async def reset(self) -> None:
        d = self.dut
        d.rst.value = 1
        await ClockCycles(d.clk, 3)
        d.rst.value = 0
        await ClockCycles(d.clk, 2)

    def _cmd(self, addr: int, words: int) -> int:
        return addr | (words << self.addr_width)

    async def read(self, addr: int, words: int, *, stall: float = 0.3
                   ) -> tuple[list[int], bool]:
        d = self.dut
        d.rd_cmd__payload.value = self._cmd(addr, words)
        d.rd_cmd__valid.value = 1
        while True:
            await RisingEdge(d.clk)
            if d.rd_cmd__ready.value:
                break
        d.rd_cmd__valid.value = 0
        got: list[int] = []
        for _ in range(100 * words + 200):
            d.rd_data__ready.value = int(self.rng.random() >= stall)
            await RisingEdge(d.clk)
            if d.rd_data__valid.value and d.rd_data__ready.value:
                got.append(int(d.rd_data__payload.value))
            if d.rd_done.value:
                d.rd_data__ready.value = 0
                return got, bool(d.rd_error.value)
        raise AssertionError(f"read of {words} words at {addr:#x} never finished")

    async def write(self, addr: int, data: list[int], words: int | None = None) -> bool:
        """Command ``words`` (default: as many as ``data``) and offer ``data``."""
        d = self.dut
        d.wr_cmd__payload.value = self._cmd(addr, len(data) if words is None else words)
        d.wr_cmd__valid.value = 1
        while True:
            await RisingEdge(d.clk)
            if d.wr_cmd__ready.value:
                break
        d.wr_cmd__valid.value = 0
        i = 0
        for _ in range(100 * len(data) + 200):
            if i < len(data) and self.rng.random() < 0.7:
                d.wr_data__payload.value = data[i]
                d.wr_data__valid.value = 1
            else:
                d.wr_data__valid.value = 0
            await RisingEdge(d.clk)
            if d.wr_data__valid.value and d.wr_data__ready.value:
                i += 1
            if d.wr_done.value:
                d.wr_data__valid.value = 0
                return bool(d.wr_error.value)
        raise AssertionError(f"write of {len(data)} words at {addr:#x} never finished")

    def random_region(self, max_words: int = 70) -> tuple[int, int]:
        base, size = self.p["window_base"], self.p["window_size"]
        words = self.rng.randint(1, max_words)
        start = self.rng.randrange(base + GUARD, base + size - GUARD - words * self.wb, self.wb)
        return start, words


@cocotb.test()
async def reads_match_memory(dut):
    tb = TB(dut, bench_params())
    await tb.reset()
    tb.ram.write(0, bytes(tb.rng.getrandbits(8) for _ in range(tb.p["ram_size"])))
    for _ in range(tb.p["n_transfers"]):
        addr, words = tb.random_region()
        got, error = await tb.read(addr, words)
        assert not error
        want = [int.from_bytes(tb.ram.read(addr + k * tb.wb, tb.wb), "little")
                for k in range(words)]
        assert got == want, f"read {words} words at {addr:#x}"
    # Addresses run ahead of the data (DDR latency hidden), never beyond the limit.
    assert 1 < tb.max_reads_flying <= MAX_OUTSTANDING, tb.max_reads_flying


@cocotb.test()
async def writes_land_exactly_with_guards_untouched(dut):
    tb = TB(dut, bench_params())
    await tb.reset()
    size = tb.p["ram_size"]
    for _ in range(tb.p["n_transfers"]):
        tb.ram.write(0, b"\xa5" * size)
        addr, words = tb.random_region()
        data = [tb.rng.getrandbits(8 * tb.wb) for _ in range(words)]
        assert not await tb.write(addr, data)
        got = [int.from_bytes(tb.ram.read(addr + k * tb.wb, tb.wb), "little")
               for k in range(words)]
        assert got == data, f"write {words} words at {addr:#x}"
        end = addr + words * tb.wb
        assert tb.ram.read(addr - GUARD, GUARD) == b"\xa5" * GUARD, "guard before touched"
        assert tb.ram.read(end, GUARD) == b"\xa5" * GUARD, "guard after touched"
    assert 1 < tb.max_writes_flying <= MAX_OUTSTANDING, tb.max_writes_flying


@cocotb.test()
async def out_of_window_is_refused_without_traffic(dut):
    tb = TB(dut, bench_params())
    await tb.reset()
    size = tb.p["ram_size"]
    tb.ram.write(0, b"\x5a" * size)
    base, wsize, wb = tb.p["window_base"], tb.p["window_size"], tb.wb
    bad = [(base - wb, 2), (base + wsize - wb, 2), (base + 4, 1), (base, 0),
           (base + wsize, 1)]
    for addr, words in bad:
        ar, aw = tb.ar_count, tb.aw_count
        got, error = await tb.read(addr, words)
        assert error and got == [], f"read {words} at {addr:#x} should be refused"
        assert await tb.write(addr, [0x1234] * words, words=words) is True
        await ClockCycles(dut.clk, 5)
        assert (tb.ar_count, tb.aw_count) == (ar, aw), "a refused command reached the bus"
    assert tb.ram.read(0, size) == b"\x5a" * size, "a refused write changed memory"
    # The engine still works afterwards; the last word of the window is legal.
    got, error = await tb.read(base + wsize - wb, 1)
    assert not error and len(got) == 1


@cocotb.test()
async def read_and_write_at_once(dut):
    tb = TB(dut, bench_params())
    await tb.reset()
    tb.ram.write(0, bytes(tb.rng.getrandbits(8) for _ in range(tb.p["ram_size"])))
    base = tb.p["window_base"]
    src, dst, words = base + 0x100, base + 0x4000, 40
    want = [int.from_bytes(tb.ram.read(src + k * tb.wb, tb.wb), "little") for k in range(words)]
    data = [tb.rng.getrandbits(8 * tb.wb) for _ in range(words)]
    write = cocotb.start_soon(tb.write(dst, data))
    got, error = await tb.read(src, words)
    assert not error and got == want
    assert not await write
    assert [int.from_bytes(tb.ram.read(dst + k * tb.wb, tb.wb), "little")
            for k in range(words)] == data


@cocotb.test()
async def read_data_come_after_the_ram_latency(dut):
    """The bench's DDR (``sim.ddr``): with no pauses, a burst's first beat is sampled exactly
    ``read_latency`` edges after its address, or on the edge after the burst before it
    ended; the DMA has several addresses out meanwhile."""
    tb = TB(dut, bench_params())
    for chan in (tb.ram.read_if.ar_channel, tb.ram.read_if.r_channel):
        chan.set_pause_generator(None)
    await tb.reset()
    ar_edges: list[int] = []
    first_edges: list[int] = []
    last_edges: list[int] = []

    async def watch() -> None:
        edge, in_burst = 0, False
        while True:
            await RisingEdge(dut.clk)
            edge += 1
            if str(dut.m_axi_arvalid.value) == "1" and str(dut.m_axi_arready.value) == "1":
                ar_edges.append(edge)
            if str(dut.m_axi_rvalid.value) == "1" and str(dut.m_axi_rready.value) == "1":
                if not in_burst:
                    first_edges.append(edge)
                in_burst = str(dut.m_axi_rlast.value) != "1"
                if not in_burst:
                    last_edges.append(edge)

    watcher = cocotb.start_soon(watch())
    base = tb.p["window_base"]
    got, error = await tb.read(base, 5 * 16 + 3, stall=0.0)
    watcher.cancel()
    assert not error and len(got) == 5 * 16 + 3
    latency = tb.p["read_latency"]
    assert len(ar_edges) == len(first_edges) == 6, (ar_edges, first_edges)
    assert first_edges[0] - ar_edges[0] == latency, (ar_edges, first_edges)
    for n in range(1, 6):
        assert first_edges[n] == max(ar_edges[n] + latency, last_edges[n - 1] + 1), (
            n, ar_edges, first_edges, last_edges)
    if latency > 2 * MAX_OUTSTANDING:       # a long latency: the addresses run ahead
        assert ar_edges[MAX_OUTSTANDING - 1] < first_edges[0], (ar_edges, first_edges)
