"""cocotb bench for the AXI4-Lite register slave, checked against a model read from the JSON map."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, FallingEdge, RisingEdge, with_timeout
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

from sim.runner import bench_params

#: Idle and backpressure patterns (1 = pause) per channel; different lengths so AW and W
#: drift against each other and either may arrive first.
PAUSES: dict[str, list[int]] = {
    "aw": [1, 1, 0], "w": [0, 1], "b": [1, 0, 0, 1], "ar": [0, 1, 1], "r": [1, 1, 1, 0],
}


class RegisterModel:
    """The register map as the firmware sees it, built from the JSON alone (no rtl import).

    Keeps each register's value, the values the bench drives into ``ro`` ports, and the
    strobes that ``wo`` writes must produce.
    """

    def __init__(self, regmap_json: str) -> None:
        data = json.loads(regmap_json)
        self.regs: list[dict[str, Any]] = data["registers"]
        self.by_offset = {r["offset"]: r for r in self.regs}
        self.by_name = {r["name"]: r for r in self.regs}
        self.size: int = data["size"]
        self.config_hash: int = data["config_hash"]
        self.inputs: dict[str, int] = {r["name"]: 0 for r in self.regs
                                       if r["access"] == "ro" and not r["constant"]}
        self.reset()

    def reset(self) -> None:
        self.values = {r["name"]: r["reset"] for r in self.regs if r["access"] != "ro"}
        self.strobes: list[tuple[str, int]] = []

    @staticmethod
    def mask(reg: dict[str, Any]) -> int:
        return (1 << reg["width"]) - 1

    def register_at(self, addr: int) -> dict[str, Any] | None:
        return self.by_offset.get(addr & ~3)

    def write(self, addr: int, data: int, strb: int) -> int:
        """Apply a write of one word (``data`` already placed at its byte lanes); the BRESP."""
        reg = self.register_at(addr)
        if reg is None:
            return AxiResp.SLVERR
        bits = sum(0xFF << (8 * i) for i in range(4) if strb >> i & 1) & self.mask(reg)
        name, access = reg["name"], reg["access"]
        if access == "rw":
            self.values[name] = (self.values[name] & ~bits) | (data & bits)
        elif access == "w1c":
            self.values[name] &= ~(data & bits)
        elif access == "wo" and bits:
            self.values[name] = data & bits
            self.strobes.append((name, data & bits))
        return AxiResp.OKAY

    def read(self, addr: int) -> tuple[int, int]:
        """``(rdata, rresp)`` of a read of the word holding ``addr``."""
        reg = self.register_at(addr)
        if reg is None:
            return 0, AxiResp.SLVERR
        name, access = reg["name"], reg["access"]
        if access == "ro":
            return (reg["reset"] if reg["constant"] else self.inputs[name]), AxiResp.OKAY
        if access == "wo":
            return 0, AxiResp.OKAY
        return self.values[name], AxiResp.OKAY


class TB:
    """Clock, reset, the AXI4-Lite master, the core-side drivers and the channel monitors."""

    def __init__(self, dut) -> None:
        self.dut = dut
        self.log = dut._log
        params = bench_params()
        self.model = RegisterModel(params["regmap"])
        self.rng = random.Random(params["seed"])
        self.n_ops: int = params["n_ops"]
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst.value = 1
        self.ports = {r["name"]: getattr(dut, f"regs__{r['name'].lower()}__value")
                      for r in self.model.regs if not r["constant"]}
        self.set_ports = {r["name"]: getattr(dut, f"regs__{r['name'].lower()}__set")
                          for r in self.model.regs if r["access"] == "w1c"}
        for port in self.set_ports.values():
            port.value = 0
        for name in self.model.inputs:
            self.ports[name].value = 0
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        self.strobes: list[tuple[str, int]] = []
        self.counts = {"w_before_aw": 0, "aw_before_w": 0, "b_stalled": 0, "r_stalled": 0}
        self._in_reset = Event()
        cocotb.start_soon(self._monitor())

    def channels(self) -> dict[str, Any]:
        w, r = self.axil.write_if, self.axil.read_if
        return {"aw": w.aw_channel, "w": w.w_channel, "b": w.b_channel, "ar": r.ar_channel,
                "r": r.r_channel}

    def set_backpressure(self, enable: bool, *, swap_aw_w: bool = False) -> None:
        """Pause generators on all five channels (``swap_aw_w``: AW gets W's and vice versa)."""
        pauses = dict(PAUSES)
        if swap_aw_w:
            pauses["aw"], pauses["w"] = PAUSES["w"], PAUSES["aw"]
        for name, channel in self.channels().items():
            channel.set_pause_generator(itertools.cycle(pauses[name]) if enable else None)

    async def reset(self, cycles: int = 3) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0
        self.model.reset()
        self.strobes.clear()
        await RisingEdge(self.dut.clk)

    async def _monitor(self) -> None:
        """Each cycle: record wo strobes and which of AW and W a write handshake saw first."""
        dut = self.dut
        aw_seen = w_seen = 0
        wo = [r["name"] for r in self.model.regs if r["access"] == "wo"]
        while True:
            await RisingEdge(dut.clk)
            if int(dut.rst.value):
                aw_seen = w_seen = 0
                continue
            for name in wo:
                if int(getattr(dut, f"regs__{name.lower()}__strobe").value):
                    self.strobes.append((name, int(self.ports[name].value)))
            aw = int(dut.s_axil_awvalid.value) and int(dut.s_axil_awready.value)
            w = int(dut.s_axil_wvalid.value) and int(dut.s_axil_wready.value)
            if w and not aw and w_seen >= aw_seen:
                self.counts["w_before_aw"] += 1
            if aw and not w and aw_seen >= w_seen:
                self.counts["aw_before_w"] += 1
            aw_seen += bool(aw)
            w_seen += bool(w)
            if int(dut.s_axil_bvalid.value) and not int(dut.s_axil_bready.value):
                self.counts["b_stalled"] += 1
            if int(dut.s_axil_rvalid.value) and not int(dut.s_axil_rready.value):
                self.counts["r_stalled"] += 1

    # ---- the core side ---------------------------------------------------------------------

    async def core_event(self) -> None:
        """Between transfers: change one ro input, or pulse a w1c set for one cycle."""
        model, rng = self.model, self.rng
        if rng.random() < 0.5 and model.inputs:
            name = rng.choice(sorted(model.inputs))
            value = rng.getrandbits(model.by_name[name]["width"])
            self.ports[name].value = value
            model.inputs[name] = value
            await RisingEdge(self.dut.clk)
        elif self.set_ports:
            name = rng.choice(sorted(self.set_ports))
            bits = rng.getrandbits(model.by_name[name]["width"])
            await FallingEdge(self.dut.clk)
            self.set_ports[name].value = bits
            await FallingEdge(self.dut.clk)
            self.set_ports[name].value = 0
            model.values[name] |= bits

    def check_outputs(self) -> None:
        """The core sees what software wrote: rw and w1c values on the core-side ports."""
        for name, value in self.model.values.items():
            if self.model.by_name[name]["access"] in ("rw", "w1c"):
                got = int(self.ports[name].value)
                assert got == value, f"{name} port holds {got:#x}, the model {value:#x}"
        assert self.strobes == self.model.strobes, (
            f"wo strobes {self.strobes} differ from the model's {self.model.strobes}")

    # ---- software side -----------------------------------------------------------------------

    def random_access(self) -> tuple[int, int]:
        """``(address, length)`` within one word: mostly registers, some unmapped words."""
        rng = self.rng
        window = 1 << len(self.dut.s_axil_awaddr)
        if rng.random() < 0.1:
            word = rng.randrange(self.model.size, window, 4)
        else:
            word = 4 * rng.randrange(self.model.size // 4)
        if rng.random() < 0.6:
            return word, 4
        offset = rng.randrange(4)
        return word + offset, rng.randint(1, 4 - offset)

    async def write(self, addr: int, data: bytes) -> None:
        word_addr, offset = addr & ~3, addr & 3
        strb = ((1 << len(data)) - 1) << offset
        value = int.from_bytes(data, "little") << (8 * offset)
        expected = self.model.write(word_addr, value, strb)
        resp = await self.axil.write(addr, data)
        assert resp.resp == expected, (
            f"write {data.hex()} to {addr:#x}: response {resp.resp!r}, expected {expected!r}")

    async def read(self, addr: int, length: int = 4) -> None:
        word, resp = self.model.read(addr)
        offset = addr & 3
        expected = word.to_bytes(4, "little")[offset:offset + length]
        got = await self.axil.read(addr, length)
        assert (got.data, got.resp) == (expected, resp), (
            f"read {length} bytes at {addr:#x}: {got.data.hex()} {got.resp!r}, "
            f"expected {expected.hex()} {resp!r}")

    async def random_traffic(self, n_ops: int) -> None:
        """One transfer at a time (so read/write order is exact), core events in between."""
        for _ in range(n_ops):
            addr, length = self.random_access()
            choice = self.rng.random()
            if choice < 0.45:
                await self.write(addr, self.rng.randbytes(length))
            elif choice < 0.9:
                await self.read(addr, length)
            else:
                await self.core_event()
        self.check_outputs()

    async def concurrent_traffic(self, n_ops: int) -> None:
        """Many writes in flight at once, then many reads: the master keeps each kind in order."""
        names = [r["name"] for r in self.model.regs if r["access"] in ("rw", "wo", "w1c")]
        writes = []
        for _ in range(n_ops):
            reg = self.model.by_name[self.rng.choice(names)]
            data = self.rng.randbytes(4)
            self.model.write(reg["offset"], int.from_bytes(data, "little"), 0xF)
            writes.append(cocotb.start_soon(self.axil.write(reg["offset"], data)))
        for task in writes:
            assert (await task).resp == AxiResp.OKAY
        reads = [(r["offset"], cocotb.start_soon(self.axil.read(r["offset"], 4)))
                 for r in self.model.regs]
        for offset, task in reads:
            word, resp = self.model.read(offset)
            got = await task
            assert (got.data, got.resp) == (word.to_bytes(4, "little"), resp), (
                f"read at {offset:#x}: {got.data.hex()}, expected {word:#010x}")
        self.check_outputs()

    async def read_all(self) -> None:
        """Every register in one 'burst' (the master splits it into word reads)."""
        expected = b"".join(self.model.read(r["offset"])[0].to_bytes(4, "little")
                            for r in self.model.regs)
        got = await self.axil.read(0, self.model.size)
        assert (got.data, got.resp) == (expected, AxiResp.OKAY), (
            f"register dump {got.data.hex()} differs from the model's {expected.hex()}")


async def _run(coro, limit_us: float) -> None:
    await with_timeout(coro, limit_us, "us")


@cocotb.test()
async def test_identity_and_reset_values(dut) -> None:
    """After reset every register reads its reset value; ID is the JSON's config hash."""
    tb = TB(dut)
    await tb.reset()
    got = await tb.axil.read(tb.model.by_name["ID"]["offset"], 4)
    assert int.from_bytes(got.data, "little") == tb.model.config_hash
    await _run(tb.read_all(), 200)
    tb.check_outputs()


@cocotb.test()
async def test_random_traffic(dut) -> None:
    """Random single transfers without, then with, idle and backpressure on every channel."""
    tb = TB(dut)
    await tb.reset()
    await _run(tb.random_traffic(tb.n_ops // 2), 2000)
    tb.set_backpressure(True)
    await _run(tb.random_traffic(tb.n_ops // 2), 4000)
    tb.set_backpressure(True, swap_aw_w=True)
    await _run(tb.random_traffic(tb.n_ops // 2), 4000)
    await _run(tb.concurrent_traffic(tb.n_ops // 4), 4000)
    await _run(tb.read_all(), 200)
    c = tb.counts
    tb.log.info("channel events: %s", c)
    assert c["w_before_aw"] > 0 and c["aw_before_w"] > 0, f"AW/W orders not both seen: {c}"
    assert c["b_stalled"] > 0 and c["r_stalled"] > 0, f"response backpressure not seen: {c}"


@cocotb.test()
async def test_reset_mid_traffic(dut) -> None:
    """Reset with writes and reads in flight; afterwards reset values and correct operation."""
    tb = TB(dut)
    await tb.reset()
    tb.set_backpressure(True)
    await _run(tb.random_traffic(tb.n_ops // 4), 2000)
    for trial in range(4):
        names = [r["name"] for r in tb.model.regs if r["access"] in ("rw", "wo", "w1c")]
        for _ in range(8):
            reg = tb.model.by_name[tb.rng.choice(names)]
            tb.axil.init_write(reg["offset"], tb.rng.randbytes(4))
            tb.axil.init_read(tb.rng.randrange(0, tb.model.size, 4), 4)
        await ClockCycles(dut.clk, 3 + 7 * trial)
        assert not tb.axil.idle(), "traffic should still be in flight when reset hits"
        await tb.reset(cycles=1 + trial)
        await _run(tb.read_all(), 200)
        tb.check_outputs()
        await _run(tb.random_traffic(tb.n_ops // 8), 2000)
    await _run(tb.concurrent_traffic(tb.n_ops // 8), 2000)
