"""DDR for the cocotb benches: an AXI4 RAM (cocotbext-axi's ``AxiRam`` memory and write side)
whose read data come a configurable number of clock cycles after the burst's address, with
several bursts in flight, as a Zynq HP port to DDR3 behaves."""

from __future__ import annotations

import cocotb
from cocotb.queue import Queue
from cocotb.triggers import RisingEdge
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiBurstType, AxiResp
from cocotbext.axi.axi_ram import AxiRamRead, AxiRamWrite
from cocotbext.axi.memory import Memory

__all__ = ["MIN_LATENCY", "LatencyAxiRam", "weight_port_rams"]

#: Read bursts the RAM accepts ahead of their data (a Zynq HP port takes 8 or more); the
#: engine's DMA keeps at most ``rtl.dma.MAX_OUTSTANDING`` in flight, so it is never the limit.
ACCEPT_AHEAD = 16
#: Edges from an AR handshake to its first data at the least (cocotbext-axi's own).
MIN_LATENCY = 2


class _DelayedRead(AxiRamRead):
    """The read side: every AR is taken as it comes and stamped with its clock edge; the
    burst's first beat is sampled by the master ``latency`` edges after the AR handshake (or
    as soon as the bursts before it have gone), then one beat an edge unless the R channel
    pauses. cocotbext-axi's R source drives a beat one edge after it is handed over, so 2 is
    the least latency (what ``AxiRam`` itself has)."""

    def __init__(self, bus, clock, reset, reset_active_level, *, mem, latency: int) -> None:
        if not isinstance(latency, int) or latency < MIN_LATENCY:
            raise ValueError(f"read latency must be an integer of at least {MIN_LATENCY} "
                             f"cycles, not {latency!r}")
        self.latency = latency
        self._period = 0                  # of the clock, in simulator steps (measured)
        self._accepted: Queue | None = None
        self._helpers: list = []
        super().__init__(bus, clock, reset, reset_active_level, mem=mem)

    def _handle_reset(self, state) -> None:
        for task in self._helpers:
            task.cancel()
        self._helpers = []
        if not state:
            self._accepted = Queue(maxsize=ACCEPT_AHEAD)
            self._helpers = [cocotb.start_soon(self._clock_period()),
                             cocotb.start_soon(self._take())]
        super()._handle_reset(state)

    async def _clock_period(self) -> None:
        edge = RisingEdge(self.clock)
        await edge
        last = get_sim_time(unit="step")
        while True:
            await edge
            now = get_sim_time(unit="step")
            self._period, last = now - last, now

    async def _take(self) -> None:
        while True:
            ar = await self.ar_channel.recv()      # in the time step of its handshake edge
            await self._accepted.put((ar, get_sim_time(unit="step")))

    async def _process_read(self) -> None:
        edge = RisingEdge(self.clock)
        while True:
            ar, accepted = await self._accepted.get()
            # Hand the first beat over (MIN_LATENCY - 1) edges before it is to be sampled.
            while get_sim_time(unit="step") < accepted + (self.latency - MIN_LATENCY) * \
                    self._period:
                await edge
            arid, addr = int(getattr(ar, "arid", 0)), int(ar.araddr)
            beats = int(getattr(ar, "arlen", 0)) + 1
            size = 1 << int(getattr(ar, "arsize", self.max_burst_size))
            if AxiBurstType(int(getattr(ar, "arburst", AxiBurstType.INCR))) != AxiBurstType.INCR:
                raise AssertionError(f"the engine issues INCR bursts only, not {ar}")
            if 0x1000 - (addr & 0xFFF) < size * beats:
                raise AssertionError(f"burst at {addr:#x} of {beats} beats crosses 4 KiB")
            for n in range(beats):
                word = ((addr + n * size) // self.byte_lanes) * self.byte_lanes
                r = self.r_channel._transaction_obj()
                r.rid, r.rlast, r.rresp = arid, n == beats - 1, AxiResp.OKAY
                if word + self.byte_lanes > self.size:
                    # Outside the RAM (which cocotbext-axi's reads would wrap into): answered
                    # with an error response, as the bus would.
                    data, r.rresp = bytes(self.byte_lanes), AxiResp.SLVERR
                else:
                    data = await self._read(word, self.byte_lanes)
                r.rdata = int.from_bytes(data, "little")
                await self.r_channel.send(r)


class LatencyAxiRam(Memory):
    """``size`` bytes of RAM behind an AXI4 slave port (``AxiBus``): writes as
    cocotbext-axi's ``AxiRam``, reads answered ``read_latency`` cycles after their address.
    ``mem`` shares the memory of another RAM (one memory behind several ports)."""

    def __init__(self, bus, clock, reset=None, *, size: int, read_latency: int = MIN_LATENCY,
                 reset_active_level: bool = True, mem=None) -> None:
        self.write_if = self.read_if = None
        super().__init__(size, mem)
        self.write_if = AxiRamWrite(bus.write, clock, reset, reset_active_level, mem=self.mem)
        self.read_if = _DelayedRead(bus.read, clock, reset, reset_active_level, mem=self.mem,
                                    latency=read_latency)


def weight_port_rams(dut, ram: LatencyAxiRam, ports: int, *, read_latency: int
                     ) -> list[LatencyAxiRam]:
    """One view of ``ram``'s memory on each of the accelerator's weight masters
    (``m_axi_w0`` ..): the same bytes behind every port, each port with its own latency."""
    from cocotbext.axi import AxiBus

    return [LatencyAxiRam(AxiBus.from_prefix(dut, f"m_axi_w{j}"), dut.clk, dut.rst,
                          size=ram.size, read_latency=read_latency, mem=ram.mem)
            for j in range(ports)]
