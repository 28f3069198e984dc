"""What the driver needs from a machine: registers, one DMA buffer, waiting and time.

The run sequence (identity check, window, start, wait, error decode, counters) is written once
in :mod:`firmware.driver`; a backend only moves words. Three backends implement this:
:mod:`firmware.board` (Linux on the Zynq's ARM cores), :mod:`firmware.emu` (a functional
emulator in numpy) and ``sim.rtl_backend`` (the generated Verilog under cocotb).

The methods that can wait are coroutines so that the cocotb backend can let simulated time
pass; the board and the emulator never suspend, and :func:`run_sync` runs the driver's
coroutines on them without an event loop.
"""

from __future__ import annotations

import abc
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["Backend", "DmaBuffer", "run_sync"]

T = TypeVar("T")


class DmaBuffer(abc.ABC):
    """Physically contiguous memory the accelerator reads and writes over its AXI master."""

    #: Bus (physical) address of byte 0, as the accelerator sees it.
    phys_addr: int
    #: Bytes in the buffer.
    size: int

    @abc.abstractmethod
    def write(self, offset: int, data: bytes) -> None:
        """Copy ``data`` into the buffer at byte ``offset``."""

    @abc.abstractmethod
    def read(self, offset: int, nbytes: int) -> bytes:
        """Copy ``nbytes`` out of the buffer from byte ``offset``."""

    def sync_for_device(self) -> None:  # noqa: B027 (coherent memory needs nothing)
        """Make the CPU's writes visible to the accelerator (flush caches) before a run."""

    def sync_for_cpu(self) -> None:  # noqa: B027 (coherent memory needs nothing)
        """Make the accelerator's writes visible to the CPU (invalidate caches) after a run."""

    def _check(self, offset: int, nbytes: int) -> None:
        if offset < 0 or nbytes < 0 or offset + nbytes > self.size:
            raise ValueError(f"access of {nbytes} bytes at offset {offset:#x} lies outside the "
                             f"{self.size}-byte DMA buffer")


class Backend(abc.ABC):
    """Registers, memory and time of one accelerator."""

    #: Short name for messages: "board", "emu", "rtl".
    name: str = "backend"
    #: The shortest timeout of a run, whatever the cycle model says: on a board the OS may
    #: deschedule the driver; simulated and emulated time need no floor.
    min_timeout_s: float = 1.0
    #: Seconds between two polls of STATUS when there is no interrupt.
    poll_s: float = 50e-6

    @property
    @abc.abstractmethod
    def memory(self) -> DmaBuffer:
        """The DMA buffer the driver lays the network out in."""

    @property
    @abc.abstractmethod
    def clock_mhz(self) -> float:
        """The fabric clock actually running (read back from the machine), in MHz."""

    @property
    def has_interrupt(self) -> bool:
        """True if :meth:`wait_interrupt` can wait for the accelerator's interrupt line."""
        return False

    @abc.abstractmethod
    async def read_reg(self, offset: int) -> int:
        """The 32-bit register at byte ``offset`` of the register window."""

    @abc.abstractmethod
    async def write_reg(self, offset: int, value: int) -> None:
        """Write a 32-bit register at byte ``offset`` of the register window."""

    async def wait_interrupt(self, timeout_s: float) -> bool:
        """Wait for the interrupt; False if ``timeout_s`` passed first."""
        raise NotImplementedError(f"the {self.name} backend has no interrupt")

    @abc.abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass (between two polls of STATUS)."""

    @abc.abstractmethod
    def now(self) -> float:
        """Seconds on this backend's clock (wall time on a board, simulated time in RTL)."""

    def close(self) -> None:  # noqa: B027 (nothing to release by default)
        """Release what the backend holds (mappings, file descriptors)."""


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a driver coroutine on a backend that never suspends (the board, the emulator)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("this backend suspended a coroutine; run it under its own event loop "
                       "(the RTL backend runs inside cocotb)")
