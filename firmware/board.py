"""The board backend: the accelerator on a Zynq-7000 under Linux, plain or with PYNQ.

What it does, in order, when made:

1. sets the fabric clock FCLK0 to the package's ``fclk0_mhz`` (the processing system makes it,
   not the bitstream): PYNQ's ``Clocks``, else the fclkcfg module's sysfs files
   (``/sys/class/fclkcfg/fclk0/{rate,enable}``), else the older devcfg driver's
   (``/sys/devices/soc0/amba/f8007000.devcfg/fclk/fclk0/{set_rate,enable}``); reads it back
   (where nothing can set it, from the clock framework's debugfs) and refuses a clock above
   the build's;
2. loads the bitstream: PYNQ's ``Overlay`` (``accel.bit`` with ``accel.hwh`` beside it), else
   the kernel's FPGA manager with the package's byte-swapped ``accel.bin``;
3. maps the accelerator's own register window from ``/dev/mem`` (``regs_base``,
   ``regs_size`` from the package), nothing more;
4. opens the DMA buffer: a u-dma-buf device (``/dev/udmabuf0`` and its sysfs files) or
   PYNQ's ``allocate``;
5. finds the accelerator's interrupt as a UIO device (``/sys/class/uio/uioN`` whose name is
   the accelerator's, or whose first map starts at ``regs_base``), else the driver polls.

Every path lies under ``root`` (``/`` on a board), so the tests run it on a fake tree. PYNQ
is imported only when its path is chosen (``dma="pynq"``, or ``"auto"`` where it is
installed). Faults raise :class:`BoardError` (an :class:`OSError`) or
:class:`~firmware.package.PackageError` with one line naming the problem and the fix.
"""

from __future__ import annotations

import mmap
import os
import select
import stat
import struct
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .backend import Backend, DmaBuffer
from .bitstream import BoardError, Tree, load_fpga_manager
from .driver import ClockError
from .package import BuildPackage, PackageError

__all__ = ["BoardBackend", "BoardError", "BoardWarning", "ClockTooFastError", "PynqMemory",
           "UdmaBufMemory"]

#: Relative amount a clock read back may exceed the one asked for: the PS divides its IO PLL,
#: so "142.857 MHz" comes back as 142857142 Hz.
CLOCK_TOLERANCE = 1e-4
#: Bytes :class:`PynqMemory` allocates unless told otherwise: half the 128 MiB of contiguous
#: memory (CMA) a PYNQ image's kernel has.
PYNQ_DEFAULT_BYTES = 64 << 20
#: Name of the accelerator's node in the device tree (the block design's instance), which a
#: generic-uio node gives its UIO device; ``package.json`` may name another (``uio_name``).
DEFAULT_UIO_NAME = "accel"

_DMA_CHOICES = ("auto", "udmabuf", "pynq")
_FCLKCFG = "sys/class/fclkcfg/fclk0"
_DEVCFG = "sys/devices/soc0/amba/f8007000.devcfg"
_DEVCFG_FCLK = (f"{_DEVCFG}/fclk/fclk0", "sys/class/fclk/fclk0")
_DEBUGFS_FCLK0 = "sys/kernel/debug/clk/fclk0/clk_rate"     # read-only, where debugfs is up
_UDMABUF_CLASSES = ("sys/class/u-dma-buf", "sys/class/udmabuf")   # new, then old driver name


class BoardWarning(UserWarning):
    """Something on the board is not as the build expects but the run can go on."""


class ClockTooFastError(BoardError, ClockError):
    """FCLK0 reads back faster than the build was made (and timed) for."""


def _int_value(package: BuildPackage, key: str, *, minimum: int) -> int:
    value = package.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PackageError(f"{package.path}/package.json: {key} must be an integer >= "
                           f"{minimum}, not {value!r}; rebuild with {package.rebuild_hint()}")
    return value


def _mhz_value(package: BuildPackage, key: str) -> float:
    value = package.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise PackageError(f"{package.path}/package.json: {key} must be a positive number of "
                           f"MHz, not {value!r}; rebuild with {package.rebuild_hint()}")
    return float(value)


def _open_device(tree: Tree, rel: str, flags: int, *, missing: str) -> int:
    """``os.open`` of a device node; a missing node or a permission problem names the fix."""
    try:
        return os.open(tree.path(rel), flags | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BoardError(f"/{rel} is missing: {missing}") from None
    except PermissionError:
        raise BoardError(f"cannot open /{rel}: permission denied; run as root (sudo)") from None
    except OSError as exc:
        raise BoardError(f"cannot open /{rel} ({exc.strerror or exc})") from None


def _map(tree: Tree, fd: int, rel: str, length: int, offset: int) -> mmap.mmap:
    """Map ``length`` bytes of an open device from ``offset``.

    A regular file standing in for a device must be long enough: touching a mapped page past
    its end would kill the process (SIGBUS) instead of raising.
    """
    info = os.fstat(fd)
    if stat.S_ISREG(info.st_mode) and info.st_size < offset + length:
        raise BoardError(f"/{rel} is a {info.st_size}-byte file, too short to map "
                         f"{length:#x} bytes at {offset:#x}")
    try:
        return mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                         offset=offset)
    except OSError as exc:
        raise BoardError(f"cannot map {length:#x} bytes at {offset:#x} of /{rel} "
                         f"({exc.strerror or exc}); run as root, on a kernel that lets /dev/mem "
                         f"reach the fabric (CONFIG_STRICT_DEVMEM allows device ranges)") \
            from None


# ---- registers -----------------------------------------------------------------------------------

class _RegisterWindow:
    """The accelerator's AXI4-Lite window, mapped from /dev/mem, accessed in 32-bit words."""

    def __init__(self, tree: Tree, base: int, size: int) -> None:
        self.base, self.size = base, size
        page = mmap.PAGESIZE
        start = base - base % page
        length = -(-(base + size - start) // page) * page
        fd = _open_device(tree, "dev/mem", os.O_RDWR | os.O_SYNC,
                          missing="the kernel lacks CONFIG_DEVMEM, which register access needs")
        try:
            self._mm = _map(tree, fd, "dev/mem", length, start)
        finally:
            os.close(fd)             # the mapping stays valid without the descriptor
        # One aligned 32-bit load or store per access: the AXI4-Lite slave sees single words.
        self._words: np.ndarray | None = np.frombuffer(self._mm, dtype="<u4",
                                                       count=size // 4, offset=base - start)

    def _index(self, offset: int) -> int:
        if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)):
            raise TypeError(f"register offset must be an integer, not {offset!r}")
        if not 0 <= offset < self.size:
            raise ValueError(f"register offset {offset:#x} lies outside the accelerator's "
                             f"{self.size:#x}-byte register window at {self.base:#010x}; take "
                             f"offsets from the register map")
        if offset % 4:
            raise ValueError(f"register offset {offset:#x} is not a multiple of 4; registers "
                             f"are 32-bit words")
        return int(offset) // 4

    def _view(self) -> np.ndarray:
        if self._words is None:
            raise BoardError("the board backend is closed; make a new one")
        return self._words

    def read(self, offset: int) -> int:
        index = self._index(offset)
        return int(self._view()[index])

    def write(self, offset: int, value: int) -> None:
        index = self._index(offset)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or not 0 <= value < 1 << 32:
            raise ValueError(f"register value must be an unsigned 32-bit integer, not "
                             f"{value!r}")
        self._view()[index] = value

    def close(self) -> None:
        self._words = None           # the view must go before the mapping can close
        if not self._mm.closed:
            self._mm.close()


# ---- DMA memory ----------------------------------------------------------------------------------

class UdmaBufMemory(DmaBuffer):
    """A u-dma-buf buffer: ``/dev/<name>`` mapped with the CPU cache on, and the driver's
    sysfs files (``phys_addr``, ``size``, ``sync_*``) for the bus address and cache upkeep.

    The cache is kept by hand, as u-dma-buf's README describes: ``sync_offset`` 0,
    ``sync_size`` the whole buffer and ``sync_direction`` 0 (both ways) are set once; writing
    1 to ``sync_for_device`` flushes the CPU's writes before a run, writing 1 to
    ``sync_for_cpu`` invalidates before the CPU reads the accelerator's results.
    """

    def __init__(self, tree: Tree, name: str = "udmabuf0", *, min_bytes: int | None = None
                 ) -> None:
        self.name = name
        cls = next((f"{c}/{name}" for c in _UDMABUF_CLASSES if tree.path(f"{c}/{name}").is_dir()),
                   None)
        if cls is None:
            raise BoardError(
                f"no u-dma-buf buffer {name!r} (/{_UDMABUF_CLASSES[0]}/{name} is missing): load "
                f"the driver with 'insmod u-dma-buf.ko {name}=<bytes>' (e.g. {name}=67108864 "
                f"for 64 MiB) or declare a u-dma-buf node in the device tree; on a PYNQ image "
                f"use dma='pynq'")
        self._tree, self._cls = tree, cls
        self.phys_addr = self._number(f"{cls}/phys_addr", 16)
        self.size = self._number(f"{cls}/size", 10)
        if self.size <= 0:
            raise BoardError(f"/{cls}/size reads {self.size}; reload u-dma-buf with "
                             f"'{name}=<bytes>'")
        if min_bytes is not None and self.size < min_bytes:
            raise BoardError(
                f"u-dma-buf {name} holds {self.size} bytes, fewer than the {min_bytes} asked "
                f"for; reload it with 'insmod u-dma-buf.ko {name}={min_bytes}'")
        for attr, value in (("sync_offset", 0), ("sync_size", self.size),
                            ("sync_direction", 0)):
            tree.write(f"{cls}/{attr}", str(value))
        fd = _open_device(tree, f"dev/{name}", os.O_RDWR,
                          missing=f"u-dma-buf made /{cls} but no device node; check udev")
        try:
            self._mm: mmap.mmap | None = _map(tree, fd, f"dev/{name}", self.size, 0)
        finally:
            os.close(fd)

    def _number(self, rel: str, base: int) -> int:
        text = self._tree.read(rel)
        try:
            return int(text, base)
        except ValueError:
            raise BoardError(f"cannot read a number from /{rel}: {text!r}") from None

    def _data(self) -> mmap.mmap:
        if self._mm is None:
            raise BoardError("the board backend is closed; make a new one")
        return self._mm

    def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        self._data()[offset:offset + len(data)] = data

    def read(self, offset: int, nbytes: int) -> bytes:
        self._check(offset, nbytes)
        return self._data()[offset:offset + nbytes]

    def sync_for_device(self) -> None:
        self._data()
        self._tree.write(f"{self._cls}/sync_for_device", "1")

    def sync_for_cpu(self) -> None:
        self._data()
        self._tree.write(f"{self._cls}/sync_for_cpu", "1")

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None


class PynqMemory(DmaBuffer):
    """Contiguous memory from PYNQ's ``allocate``: ``device_address``, ``flush``,
    ``invalidate``."""

    def __init__(self, pynq: Any, nbytes: int) -> None:
        try:
            buf = pynq.allocate(shape=(nbytes,), dtype=np.uint8)
        except Exception as exc:  # PYNQ reports a full CMA with RuntimeError, others vary
            raise BoardError(
                f"PYNQ could not allocate {nbytes} bytes of contiguous memory ({exc}); a PYNQ "
                f"image's CMA holds 128 MiB: ask for fewer (dma_bytes) or free other "
                f"buffers") from None
        self._buf: Any = buf
        address = getattr(buf, "device_address", None)
        if address is None:
            address = getattr(buf, "physical_address", None)
        if address is None:
            raise BoardError("PYNQ's buffer has neither device_address nor physical_address; "
                             "this pynq version is not supported (pynq 2.5 or later)")
        self.phys_addr, self.size = int(address), int(nbytes)

    def _array(self) -> Any:
        if self._buf is None:
            raise BoardError("the board backend is closed; make a new one")
        return self._buf

    def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        self._array()[offset:offset + len(data)] = np.frombuffer(data, dtype=np.uint8)

    def read(self, offset: int, nbytes: int) -> bytes:
        self._check(offset, nbytes)
        return self._array()[offset:offset + nbytes].tobytes()

    def sync_for_device(self) -> None:
        self._array().flush()

    def sync_for_cpu(self) -> None:
        self._array().invalidate()

    def close(self) -> None:
        if self._buf is not None:
            free = getattr(self._buf, "freebuffer", None)
            if free is not None:
                free()
            self._buf = None


# ---- interrupt -----------------------------------------------------------------------------------

class _Uio:
    """A UIO device: write 1 (4 bytes) to unmask the interrupt, read 4 bytes (the event count)
    when it fires."""

    def __init__(self, tree: Tree, name: str) -> None:
        self.name = name
        self._fd: int | None = _open_device(
            tree, f"dev/{name}", os.O_RDWR,
            missing=f"/sys/class/uio/{name} exists but not its device node; check udev")

    def wait(self, timeout_s: float) -> bool:
        if self._fd is None:
            raise BoardError("the board backend is closed; make a new one")
        os.write(self._fd, struct.pack("=I", 1))      # unmask (the kernel masks on each event)
        ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout_s))
        if not ready:
            return False
        count = os.read(self._fd, 4)
        if len(count) != 4:
            raise BoardError(f"/dev/{self.name} returned {len(count)} bytes instead of the "
                             f"4-byte interrupt count; is it a UIO device?")
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def find_uio(tree: Tree, names: tuple[str, ...], regs_base: int) -> str | None:
    """The ``uioN`` whose name is one of ``names`` or whose map 0 starts at ``regs_base``."""
    folder = tree.path("sys/class/uio")
    if not folder.is_dir():
        return None
    found = []
    for entry in folder.iterdir():
        suffix = entry.name[3:]
        if entry.name.startswith("uio") and suffix.isdigit():
            found.append((int(suffix), entry.name))
    for _, uio in sorted(found):
        if _read_quiet(folder / uio / "name") in names:
            return uio
        addr = _read_quiet(folder / uio / "maps/map0/addr")
        try:
            if addr is not None and int(addr, 16) == regs_base:
                return uio
        except ValueError:
            continue
    return None


def _read_quiet(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


# ---- the backend ---------------------------------------------------------------------------------

class BoardBackend(Backend):
    """The accelerator on a Zynq board.

    Parameters
    ----------
    package : BuildPackage or path
        The build the bitstream comes from (register window, clocks, bitstream files).
    root : path
        Where the board's file system starts (``/``; a temporary folder in tests).
    load : bool
        Load the package's bitstream (False: it is loaded already).
    dma : str
        ``"udmabuf"``: plain Linux (FPGA manager, u-dma-buf, the clock framework);
        ``"pynq"``: PYNQ (``Overlay``, ``allocate``, ``Clocks``); ``"auto"``: PYNQ where the
        ``pynq`` package imports, else plain Linux.
    udmabuf : str
        The u-dma-buf device (plain Linux).
    dma_bytes : int or None
        PYNQ: bytes to allocate (default :data:`PYNQ_DEFAULT_BYTES`); u-dma-buf: the least
        the device must hold (default: any size; the driver checks the network fits).
    uio : str or None
        ``"auto"``: the UIO device of the accelerator if there is one, else polling;
        ``"uioN"``: that device; None: polling.
    poll_s : float
        Seconds between two polls of STATUS that this board suggests (:attr:`poll_s`).

    Raises
    ------
    BoardError
        For what the board lacks (FPGA manager, /dev/mem, u-dma-buf, UIO, permission) or a
        clock above the build's (:class:`ClockTooFastError`).
    PackageError
        For a package without the files or entries the board needs.
    """

    name = "board"

    def __init__(self, package: BuildPackage | str | os.PathLike[str], *,
                 root: str | os.PathLike[str] = "/", load: bool = True, dma: str = "auto",
                 udmabuf: str = "udmabuf0", dma_bytes: int | None = None,
                 uio: str | None = "auto", poll_s: float = 50e-6) -> None:
        if not isinstance(package, BuildPackage):
            package = BuildPackage.load(package)
        if dma not in _DMA_CHOICES:
            raise ValueError(f"dma must be one of {', '.join(_DMA_CHOICES)}, not {dma!r}")
        if uio is not None and not (uio == "auto" or (isinstance(uio, str) and uio[:3] == "uio"
                                                      and uio[3:].isdigit())):
            raise ValueError(f"uio must be 'auto', None or a device name such as 'uio0', "
                             f"not {uio!r}")
        if dma_bytes is not None and (isinstance(dma_bytes, bool) or not isinstance(dma_bytes, int)
                                      or dma_bytes <= 0):
            raise ValueError(f"dma_bytes must be a positive integer, not {dma_bytes!r}")
        if isinstance(poll_s, bool) or not isinstance(poll_s, (int, float)) or not poll_s > 0:
            raise ValueError(f"poll_s must be a positive number of seconds, not {poll_s!r}")
        self.package = package
        self.poll_s = float(poll_s)
        self._tree = Tree(root, BoardError)
        self._regs: _RegisterWindow | None = None
        self._memory: UdmaBufMemory | PynqMemory | None = None
        self._uio: _Uio | None = None
        self._overlay: Any = None
        # The package first: a bad one is refused before anything on the board changes.
        self.regs_base = _int_value(package, "regs_base", minimum=0)
        self.regs_size = _int_value(package, "regs_size", minimum=4)
        if self.regs_base % 4 or self.regs_size % 4 or self.regs_size < package.regmap.size:
            raise PackageError(
                f"{package.path}/package.json: the register window {self.regs_base:#x} + "
                f"{self.regs_size:#x} must be 4-byte aligned and hold the "
                f"{package.regmap.size} bytes of the register map; rebuild with "
                f"{package.rebuild_hint()}")
        self.fclk0_mhz = _mhz_value(package, "fclk0_mhz")
        self.built_mhz = package.clock_mhz
        self._pynq = self._import_pynq(dma)
        self.mode = "pynq" if self._pynq is not None else "linux"
        try:
            if self._pynq is None:
                bin_path = self._bin_path() if load else None
                self._clock_mhz = self._set_clock()
                if bin_path is not None:
                    load_fpga_manager(bin_path, root=root)
            else:
                if load:
                    self._overlay = self._load_overlay()
                self._clock_mhz = self._set_clock()
            self._regs = _RegisterWindow(self._tree, self.regs_base, self.regs_size)
            if self._pynq is None:
                self._memory = UdmaBufMemory(self._tree, udmabuf, min_bytes=dma_bytes)
            else:
                self._memory = PynqMemory(self._pynq, dma_bytes or PYNQ_DEFAULT_BYTES)
            self._check_bus_address(self._memory)
            if uio == "auto":
                names = (str(package.manifest.get("uio_name") or DEFAULT_UIO_NAME),)
                uio = find_uio(self._tree, names, self.regs_base)
            if uio is not None:
                if not self._tree.path(f"sys/class/uio/{uio}").is_dir():
                    raise BoardError(f"no UIO device {uio} (/sys/class/uio/{uio} is missing); "
                                     f"pass uio='auto' or uio=None to poll")
                self._uio = _Uio(self._tree, uio)
        except BaseException:
            self.close()
            raise

    # ---- bring-up --------------------------------------------------------------------------

    @staticmethod
    def _import_pynq(dma: str) -> Any:
        if dma == "udmabuf":
            return None
        try:
            import pynq
        except ImportError:
            if dma == "pynq":
                raise BoardError("dma='pynq' needs the pynq package (PYNQ images have it); on "
                                 "plain Linux use dma='udmabuf' with u-dma-buf") from None
            return None
        return pynq

    def _bin_path(self) -> Path:
        package = self.package
        name = package.manifest.get("bin")
        path = package.path / str(name) if name else None
        if path is not None and path.is_file():
            return path
        bit = package.manifest.get("bitstream")
        if not bit or not (package.path / str(bit)).is_file():
            raise PackageError(
                f"{package.path} has no bitstream (no {name or 'accel.bin'} and no .bit): "
                f"build it with Vivado, {package.rebuild_hint()}, and copy the package")
        target = path or package.path / (Path(str(bit)).stem + ".bin")
        raise PackageError(
            f"{package.path} has no {target.name}, the byte-swapped bitstream the FPGA "
            f"manager loads; make it with 'python -m firmware.bitstream "
            f"{package.path / str(bit)} {target}'")

    def _load_overlay(self) -> Any:
        bit = self.package.file("bitstream")
        hwh = self.package.file("hwh")
        if hwh.parent != bit.parent or hwh.stem != bit.stem:
            raise PackageError(
                f"PYNQ's Overlay reads {bit.stem}.hwh beside {bit.name}, but the package's "
                f"hardware handoff is {hwh.name}; rename it to {bit.stem}.hwh")
        try:
            return self._pynq.Overlay(str(bit))
        except Exception as exc:  # PYNQ's errors are of many kinds; name the file and the cause
            raise BoardError(f"PYNQ could not load {bit.name}: {type(exc).__name__}: "
                             f"{exc}") from None

    def _set_clock(self) -> float:
        """Set FCLK0 to the package's ``fclk0_mhz``, read it back, return the fabric clock.

        Where nothing can set FCLK0, the rate the clock framework reports in debugfs is still
        checked; where nothing can read it either, a warning says the build's clock is assumed.
        """
        want = self.fclk0_mhz
        actual = self._set_fclk0(want)
        if actual is None:
            actual = self._read_fclk0_debugfs()
            if actual is None:
                warnings.warn(
                    f"no way to set or read the fabric clock here (no /{_FCLKCFG}, no devcfg "
                    f"fclk files, no /{_DEBUGFS_FCLK0}): FCLK0 is whatever the boot loader set; "
                    f"timings assume the build's {self.built_mhz:g} MHz; load the fclkcfg "
                    f"module to set and check it", BoardWarning, stacklevel=3)
                return self.built_mhz
            if actual > want * (1 + CLOCK_TOLERANCE):
                raise ClockTooFastError(
                    f"FCLK0 runs at {actual:.6g} MHz (/{_DEBUGFS_FCLK0}), faster than the "
                    f"{want:g} MHz the build was timed for, and nothing here can set it: load "
                    f"the fclkcfg module, or set {want:g} MHz in the boot loader")
        elif actual > want * (1 + CLOCK_TOLERANCE):
            raise ClockTooFastError(
                f"FCLK0 runs at {actual:.6g} MHz after asking for {want:g} MHz, faster than the "
                f"build was timed for; the PS cannot make {want:g} MHz: rebuild for a clock its "
                f"IO PLL divides exactly ({self.package.rebuild_hint()})")
        if actual < want * (1 - CLOCK_TOLERANCE):
            warnings.warn(f"FCLK0 runs at {actual:.6g} MHz, slower than the {want:g} MHz the "
                          f"build asks for; timings use the clock that runs", BoardWarning,
                          stacklevel=3)
        return actual * self.built_mhz / want

    def _read_fclk0_debugfs(self) -> float | None:
        """FCLK0 as the common clock framework reports it, or None where debugfs lacks it."""
        text = _read_quiet(self._tree.path(_DEBUGFS_FCLK0))
        if text is None or not text.isdigit():
            return None
        return int(text) / 1e6

    def _set_fclk0(self, mhz: float) -> float | None:
        """Set FCLK0 and read it back in MHz; None where nothing here can set it."""
        if self._pynq is not None:
            clocks = self._pynq.Clocks
            clocks.fclk0_mhz = mhz
            return float(clocks.fclk0_mhz)
        tree, hz = self._tree, str(round(mhz * 1e6))
        if tree.path(_FCLKCFG).is_dir():
            tree.write(f"{_FCLKCFG}/rate", hz)
            tree.write(f"{_FCLKCFG}/enable", "1")
            return self._read_hz(f"{_FCLKCFG}/rate")
        fclk = next((f for f in _DEVCFG_FCLK if tree.path(f).is_dir()), None)
        if fclk is None and tree.exists(f"{_DEVCFG}/fclk_export"):
            tree.write(f"{_DEVCFG}/fclk_export", "fclk0")
            if not tree.path(_DEVCFG_FCLK[0]).is_dir():
                raise BoardError(f"exported fclk0 through /{_DEVCFG}/fclk_export but "
                                 f"/{_DEVCFG_FCLK[0]} did not appear; load the fclkcfg module "
                                 f"instead")
            fclk = _DEVCFG_FCLK[0]
        if fclk is None:
            return None
        tree.write(f"{fclk}/set_rate", hz)
        if tree.exists(f"{fclk}/enable"):
            tree.write(f"{fclk}/enable", "1")
        return self._read_hz(f"{fclk}/set_rate")

    def _read_hz(self, rel: str) -> float:
        text = self._tree.read(rel)
        try:
            hz = int(text)
        except ValueError:
            raise BoardError(f"cannot read a clock rate in Hz from /{rel}: {text!r}") from None
        return hz / 1e6

    def _check_bus_address(self, memory: DmaBuffer) -> None:
        limit = 1 << self.package.cfg.axi_addr_width
        if memory.phys_addr < 0 or memory.phys_addr + memory.size > limit:
            raise BoardError(
                f"the DMA buffer lies at bus addresses {memory.phys_addr:#x} to "
                f"{memory.phys_addr + memory.size:#x}, beyond the accelerator's "
                f"{self.package.cfg.axi_addr_width}-bit reach; reserve it in low memory")

    # ---- Backend ---------------------------------------------------------------------------

    @property
    def memory(self) -> DmaBuffer:
        if self._memory is None:
            raise BoardError("the board backend is closed; make a new one")
        return self._memory

    @property
    def clock_mhz(self) -> float:
        """The fabric clock that runs: FCLK0 as read back, times the MMCM's ratio
        (``clock_mhz / fclk0_mhz`` of the package)."""
        return self._clock_mhz

    @property
    def has_interrupt(self) -> bool:
        return self._uio is not None

    @property
    def uio(self) -> str | None:
        """The UIO device the interrupt comes through, or None (polling)."""
        return None if self._uio is None else self._uio.name

    def _window(self) -> _RegisterWindow:
        if self._regs is None:
            raise BoardError("the board backend is closed; make a new one")
        return self._regs

    async def read_reg(self, offset: int) -> int:
        return self._window().read(offset)

    async def write_reg(self, offset: int, value: int) -> None:
        self._window().write(offset, value)

    async def wait_interrupt(self, timeout_s: float) -> bool:
        self._window()                                  # refuses a closed backend
        if self._uio is None:
            return await super().wait_interrupt(timeout_s)
        return self._uio.wait(timeout_s)

    async def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def now(self) -> float:
        return time.monotonic()

    def describe(self) -> str:
        """One line for a run's header: how the board is reached."""
        memory = self._memory
        mem = "closed" if memory is None else (
            f"{'PYNQ allocate' if self.mode == 'pynq' else 'u-dma-buf'} {memory.size >> 20} MiB "
            f"at {memory.phys_addr:#010x}")
        irq = f"interrupt {self.uio}" if self.uio else "polling"
        return (f"board ({self.mode}): registers at {self.regs_base:#010x}, {mem}, {irq}, "
                f"{self._clock_mhz:g} MHz")

    def close(self) -> None:
        """Unmap the registers and the buffer and close the UIO device (again: nothing)."""
        for part in (self._uio, self._memory, self._regs):
            if part is not None:
                part.close()
        self._uio, self._memory, self._regs, self._overlay = None, None, None, None

    def __enter__(self) -> BoardBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
