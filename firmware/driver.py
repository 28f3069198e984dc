"""The accelerator's driver, written once for every backend (board, RTL simulation, emulator).

The run sequence lives only here: check that the bitstream is the package's (MAGIC, VERSION,
ID), check the clock, open the DDR window on the driver's own buffer, copy and relocate a
compiled network, then per image: write the input, start a chain of descriptors (the whole
network, or one layer's row tiles), wait for done by interrupt or by polling, decode
ERROR_CODE by name with the failing layer and tile, read the cycle counters, read the logits.
A run that never finishes is soft-reset and reported with the layer that hung. Register
offsets and bits come from the package's register map; none is typed here.

Typical use on a board (see ``python -m firmware.run`` for the command)::

    pkg = BuildPackage.load("deploy")
    acc = Accelerator(BoardBackend(pkg), pkg)
    acc.load(CompiledNetwork.load("net.ilmpq.npz"))
    result = acc.infer(image)            # logits, per-layer cycles and ms
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backend import Backend, run_sync
from .compile import CompiledNetwork
from .package import BuildPackage

__all__ = ["Accelerator", "AcceleratorError", "AcceleratorTimeout", "BitstreamMismatchError",
           "BufferTooSmallError", "ClockError", "Driver", "LayerResult", "RunResult"]

#: What to do about each ERROR_CODE (names from the register map's ``ERROR_CODE.code``).
_ADVICE = {
    "BAD_DESCRIPTOR": "the descriptor table is damaged or was compiled for other hardware; "
                      "compile the network again for this package",
    "ADDR_OUT_OF_WINDOW": "a buffer lies outside the DDR window; compile the network again",
    "MISALIGNED_ADDR": "a buffer address is not 8-byte aligned; compile the network again",
    "LAYER_TOO_LARGE": "the layer exceeds this build's buffers; compile the network for this "
                       "package, or build hardware with larger buffers",
    "UNSUPPORTED_FORMAT": "the network has Fixed-8 filters this build lacks; quantize without "
                          "Fixed-8 or build hardware with it (HwConfig.weight_formats)",
    "AXI_RESPONSE": "the DDR interconnect refused an access (SLVERR/DECERR); check the DMA "
                    "buffer's bus address and the HP port settings",
    "ABORTED": "the run was soft-reset",
}


class BitstreamMismatchError(ValueError):
    """The loaded bitstream is not the one the package describes."""


class ClockError(ValueError):
    """The fabric clock runs faster than the build was made for."""


class BufferTooSmallError(ValueError):
    """The DMA buffer cannot hold the compiled network."""


class AcceleratorError(RuntimeError):
    """The accelerator stopped a run with an error code."""

    def __init__(self, message: str, *, code: str, layer: str | None, tile: int | None
                 ) -> None:
        super().__init__(message)
        self.code, self.layer, self.tile = code, layer, tile


class AcceleratorTimeout(AcceleratorError):
    """A run did not finish in time; the accelerator was soft-reset."""


@dataclass
class LayerResult:
    name: str
    op: str
    tiles: int
    #: Cycles the accelerator counted (0 on the emulator, which models no time).
    cycles: int
    #: The cycle model's estimate of the same layer, from the compiled network.
    modelled_cycles: int
    ms: float


@dataclass
class RunResult:
    logits: np.ndarray
    cycles: int
    ms: float
    layers: list[LayerResult] = field(default_factory=list)

    @property
    def top5(self) -> list[int]:
        """The five highest classes, best first (ties to the lower class, as argmax)."""
        return [int(i) for i in np.argsort(-self.logits, kind="stable")[:5]]


class Driver:
    """The run sequence over one backend, as coroutines (the RTL backend awaits cocotb)."""

    def __init__(self, backend: Backend, package: BuildPackage, *,
                 poll_s: float | None = None) -> None:
        self.backend, self.package, self.regmap = backend, package, package.regmap
        self.network: CompiledNetwork | None = None
        self.poll_s = backend.poll_s if poll_s is None else poll_s
        codes = dict(self.regmap["ERROR_CODE"].field("code").values)
        self._code_names = {value: name for name, value in codes.items()}

    # ---- registers by name ----------------------------------------------------------------

    async def read(self, name: str) -> int:
        return await self.backend.read_reg(self.regmap.offset(name))

    async def write(self, name: str, value: int | None = None, **fields: int) -> None:
        if value is None:
            value = self.regmap[name].pack(fields)
        await self.backend.write_reg(self.regmap.offset(name), value)

    async def fields(self, name: str) -> dict[str, int]:
        return self.regmap[name].unpack(await self.read(name))

    # ---- bring-up -------------------------------------------------------------------------

    async def open(self) -> None:
        """Check the bitstream and the clock; close the DDR window until a network loads."""
        magic, version, ident = (await self.read("MAGIC"), await self.read("VERSION"),
                                 await self.read("ID"))
        try:
            self.regmap.check_identity(magic, version, ident)
        except ValueError as exc:
            raise BitstreamMismatchError(
                f"{exc} (package {self.package.path}; rebuild with "
                f"{self.package.rebuild_hint()})") from None
        running, built = self.backend.clock_mhz, self.package.clock_mhz
        if running > built * 1.0005:
            raise ClockError(f"the fabric clock runs at {running:g} MHz, faster than the "
                             f"{built:g} MHz this bitstream was built and timed for; set FCLK0 "
                             f"to the package's fclk0_mhz (the board backend does this) or "
                             f"rebuild for the faster clock")
        await self.set_window(self.backend.memory.phys_addr, 0)   # no DDR access until load()
        await self.write("IRQ_ENABLE", done=int(self.backend.has_interrupt),
                         error=int(self.backend.has_interrupt))
        await self.write("IRQ_STATUS", done=1, error=1)

    async def load(self, network: CompiledNetwork) -> None:
        """Copy ``network`` into the DMA buffer, relocated to its bus address, and open the
        DDR window on exactly that region."""
        network.check_package(self.package)
        memory = self.backend.memory
        if network.size > memory.size:
            mib = -(-network.size // (1 << 20))
            raise BufferTooSmallError(
                f"the network needs {network.size:,} bytes of DMA memory, the buffer has "
                f"{memory.size:,}; give it at least {mib} MiB (u-dma-buf: 'insmod "
                f"u-dma-buf.ko udmabuf0={mib << 20}'; PYNQ: the driver allocates it)")
        memory.write(0, network.relocated(memory.phys_addr, self.package.cfg.axi_addr_width))
        memory.sync_for_device()
        await self.set_window(memory.phys_addr, network.size)
        self.network = network

    # ---- running --------------------------------------------------------------------------

    def _net(self) -> CompiledNetwork:
        if self.network is None:
            raise RuntimeError("no network loaded: call load() first")
        return self.network

    async def infer(self, image: np.ndarray, *, per_layer: bool = False) -> RunResult:
        """Run one image (C, H, W): as one chain, or layer by layer for per-layer cycles."""
        net, memory = self._net(), self.backend.memory
        memory.write(int(net.manifest["input"]["offset"]), net.input_bytes(image))
        memory.sync_for_device()
        mhz = self.backend.clock_mhz
        layers: list[LayerResult] = []
        if per_layer:
            first = 0
            for layer in net.layers:
                cycles = await self.run_chain(int(layer["desc_offset"]),
                                              int(layer["desc_count"]), first,
                                              self.timeout_s(layer))
                layers.append(LayerResult(layer["name"], layer["op"], layer["desc_count"],
                                          cycles, layer["modelled_cycles"],
                                          cycles / (mhz * 1e3)))
                first += layer["desc_count"]
            total = sum(layer.cycles for layer in layers)
        else:
            offset, count = net.chain
            total = await self.run_chain(offset, count, 0, self.timeout_s(None))
        memory.sync_for_cpu()
        spec = net.manifest["output"]
        logits = net.logits(memory.read(int(spec["offset"]), net.output_nbytes()))
        return RunResult(logits, total, total / (mhz * 1e3), layers)

    async def run_chain(self, offset: int, count: int, first: int, timeout_s: float) -> int:
        """Run ``count`` descriptors from byte ``offset`` of the buffer (descriptor ``first``
        of the network's chain); return the cycles the accelerator counted."""
        await self.start(self.backend.memory.phys_addr + offset, count)
        if not await self.wait(timeout_s):
            await self._abort(first, timeout_s)
        code, done, cycles = await self.outcome()
        if code != "NONE":
            layer, tile, tiles = self._net().layer_of(first + done)
            raise AcceleratorError(
                f"the accelerator stopped with {code} at descriptor {first + done} (layer "
                f"{layer}, tile {tile + 1} of {tiles}): "
                f"{_ADVICE.get(code, 'see docs/registers.md')}",
                code=code, layer=layer, tile=tile)
        if done != count:
            raise AcceleratorError(f"the accelerator finished {done} of {count} descriptors "
                                   f"without an error code", code="NONE", layer=None, tile=None)
        return cycles

    # ---- the primitives every run is made of ------------------------------------------------

    async def set_window(self, base: int, size: int) -> None:
        """Let the engine reach DDR bytes ``[base, base + size)`` only."""
        await self.write("WINDOW_SIZE", 0)
        await self.write("WINDOW_BASE", base)
        await self.write("WINDOW_SIZE", size)

    async def start(self, desc_addr: int, count: int) -> None:
        """Start ``count`` descriptors from bus address ``desc_addr``."""
        await self.write("IRQ_STATUS", done=1, error=1)
        await self.write("DESC_ADDR", desc_addr)
        await self.write("DESC_COUNT", count)
        await self.write("CTRL", start=1)

    async def wait(self, timeout_s: float) -> bool:
        """Wait until STATUS.done (by interrupt or polling); False after ``timeout_s``."""
        backend = self.backend
        if backend.has_interrupt:
            if not await backend.wait_interrupt(timeout_s):
                return bool((await self.fields("STATUS"))["done"])
            return True
        deadline = backend.now() + timeout_s
        poll = min(self.poll_s, timeout_s / 100)
        while True:
            if (await self.fields("STATUS"))["done"]:
                return True
            if backend.now() >= deadline:
                return False
            await backend.sleep(poll)

    async def soft_reset(self) -> None:
        """Ask the engine to abandon the run at its next safe point (ERROR_CODE ABORTED)."""
        await self.write("CTRL", soft_reset=1)

    async def outcome(self) -> tuple[str, int, int]:
        """(ERROR_CODE by name, DESC_DONE, cycles) of the last run; acknowledges the IRQ."""
        code = (await self.fields("ERROR_CODE"))["code"]
        done = await self.read("DESC_DONE")
        cycles = await self.read("CYCLES_LO") | (await self.read("CYCLES_HI")) << 32
        await self.write("IRQ_STATUS", done=1, error=1)
        return self._code_names.get(code, f"unknown code {code}"), done, cycles

    def timeout_s(self, layer: dict[str, Any] | None) -> float:
        """A layer's (or, for None, the network's) timeout on this backend."""
        return max(self.backend.min_timeout_s,
                   self._net().timeout_s(layer, self.backend.clock_mhz))

    async def _abort(self, first: int, timeout_s: float) -> None:
        done = await self.read("DESC_DONE")
        layer, tile, tiles = self._net().layer_of(first + done)
        await self.soft_reset()
        stopped = await self.wait(max(timeout_s, self.backend.min_timeout_s))
        raise AcceleratorTimeout(
            f"layer {layer} (tile {tile + 1} of {tiles}) did not finish within "
            f"{timeout_s:.3g} s (many times the cycle model's estimate); the accelerator was "
            f"soft-reset" + ("" if stopped else " but did not stop: reload the bitstream"),
            code="TIMEOUT", layer=layer, tile=tile)


class Accelerator:
    """The driver for backends that never suspend (the board, the emulator), as plain calls.

    Parameters
    ----------
    backend : Backend
        Where the accelerator is.
    package : BuildPackage
        The build it runs (register map, config).
    """

    def __init__(self, backend: Backend, package: BuildPackage, **kwargs: Any) -> None:
        self.driver = Driver(backend, package, **kwargs)
        run_sync(self.driver.open())

    @property
    def backend(self) -> Backend:
        return self.driver.backend

    def load(self, network: CompiledNetwork) -> None:
        run_sync(self.driver.load(network))

    def infer(self, image: np.ndarray, *, per_layer: bool = False) -> RunResult:
        return run_sync(self.driver.infer(image, per_layer=per_layer))

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Accelerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
