"""The driver's third backend: the generated Verilog under cocotb, AXI4-Lite registers through
cocotbext-axi's ``AxiLiteMaster`` and DDR as an ``AxiRam``. The benches run the very driver
that runs on the board (``firmware.driver``); only the words move differently."""

from __future__ import annotations

from cocotb.triggers import First, RisingEdge, Timer
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiLiteMaster, AxiRam

from firmware.backend import Backend, DmaBuffer

__all__ = ["RamBuffer", "RtlBackend"]


class RamBuffer(DmaBuffer):
    """``size`` bytes of an ``AxiRam`` from bus address ``phys_addr``."""

    def __init__(self, ram: AxiRam, phys_addr: int, size: int) -> None:
        self.ram, self.phys_addr, self.size = ram, phys_addr, size

    def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        self.ram.write(self.phys_addr + offset, data)

    def read(self, offset: int, nbytes: int) -> bytes:
        self._check(offset, nbytes)
        return self.ram.read(self.phys_addr + offset, nbytes)


def _ns(seconds: float) -> int:
    return max(1, round(seconds * 1e9))


class RtlBackend(Backend):
    """Registers, memory, interrupt and simulated time of the accelerator's Verilog.

    Parameters
    ----------
    dut
        The cocotb handle of the top level (``irq`` is its interrupt output).
    lite : AxiLiteMaster
        On the ``s_axil`` port.
    memory : RamBuffer
        The part of the AXI RAM the driver may use.
    clock_mhz : float
        The clock the bench drives.
    """

    name = "rtl"
    min_timeout_s = 0.0         # simulated time is exact: the cycle model's margin is enough

    def __init__(self, dut, lite: AxiLiteMaster, memory: RamBuffer, clock_mhz: float) -> None:
        self.dut, self.lite, self._memory, self._clock = dut, lite, memory, clock_mhz

    @property
    def memory(self) -> RamBuffer:
        return self._memory

    @property
    def clock_mhz(self) -> float:
        return self._clock

    @property
    def has_interrupt(self) -> bool:
        return True

    async def read_reg(self, offset: int) -> int:
        return await self.lite.read_dword(offset)

    async def write_reg(self, offset: int, value: int) -> None:
        await self.lite.write_dword(offset, value)

    async def wait_interrupt(self, timeout_s: float) -> bool:
        if self.dut.irq.value:
            return True
        timer = Timer(_ns(timeout_s), unit="ns")
        return await First(RisingEdge(self.dut.irq), timer) is not timer

    async def sleep(self, seconds: float) -> None:
        await Timer(_ns(seconds), unit="ns")

    def now(self) -> float:
        return get_sim_time(unit="ns") * 1e-9
