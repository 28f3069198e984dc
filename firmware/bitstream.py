"""Bitstreams for the Zynq's FPGA manager: ``.bit`` to byte-swapped ``.bin``, and loading one.

Vivado writes a ``.bit`` file: a short header of tagged fields, then the configuration data as
big-endian 32-bit words. Linux's Zynq FPGA manager wants the data alone with each 32-bit word
byte-swapped (it looks for the sync word as the bytes ``66 55 99 aa``); it refuses a ``.bit``
with "could not find a sync word". :func:`bit_to_bin` makes what Vivado's
``write_cfgmem -format bin -interface smapx32 -disablebitswap`` makes, and
``python -m firmware.bitstream accel.bit accel.bin`` runs it on a file.

The ``.bit`` layout (the header fields are big-endian)::

    u16 9, 0f f0 0f f0 0f f0 0f f0 00    a fixed 9-byte field
    u16 1                                 length of the key byte that follows
    'a' u16 n, "design;UserID=...;Version=2024.1\\0"
    'b' u16 n, "7z020clg400\\0"           the part
    'c' u16 n, "2026/12/02\\0"            date
    'd' u16 n, "08:00:00\\0"              time
    'e' u32 n, n bytes of configuration data (dummy words, bus-width pattern, then the sync
                                          word aa 99 55 66, then commands and frames)

:func:`load_fpga_manager` configures the FPGA from a ``.bin`` through the kernel's sysfs files
(``/sys/class/fpga_manager/fpga0/{flags,firmware,state}``), all paths under ``root`` so that
tests can use a fake tree.
"""

from __future__ import annotations

import argparse
import errno
import os
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "SYNC_WORD",
    "BitHeader",
    "BitstreamError",
    "BoardError",
    "FpgaManagerError",
    "Tree",
    "bit_to_bin",
    "check_bin",
    "load_fpga_manager",
    "read_bit_header",
]

#: The configuration sync word (UG470); in a ``.bit`` its bytes are ``aa 99 55 66``.
SYNC_WORD = 0xAA995566

# The fixed first field of every .bit file (length 9) and the length of the key byte after it.
_BIT_PREAMBLE = bytes.fromhex("0009" "0ff00ff00ff00ff000" "0001")
_SYNC_BIT = SYNC_WORD.to_bytes(4, "big")      # as a .bit stores it
_SYNC_BIN = SYNC_WORD.to_bytes(4, "little")   # as the FPGA manager wants it
_STRING_KEYS = {ord("a"): "design", ord("b"): "part", ord("c"): "date", ord("d"): "time"}
_DATA_KEY = ord("e")

_CONVERT_HINT = "python -m firmware.bitstream accel.bit accel.bin"


class BoardError(OSError):
    """The board lacks something the firmware needs (a driver, a device, permission), or a
    device did not do what it was asked; the message names the problem and the fix.

    An :class:`OSError`, as the faults it reports are the operating system's.
    """


class FpgaManagerError(BoardError):
    """The kernel's FPGA manager is missing or did not configure the FPGA."""


class BitstreamError(ValueError):
    """A ``.bit`` or ``.bin`` file is malformed or of the wrong kind."""


@dataclass(frozen=True)
class BitHeader:
    """The header of a ``.bit`` file."""

    #: Design name (the text of field 'a' before the first ';').
    design: str
    #: Vivado version from field 'a' (``Version=...``), or "" if it names none.
    tool_version: str
    #: Part the bitstream is for, as the header spells it. Example: ``"7z020clg400"``.
    part: str
    #: Date and time the bitstream was written.
    date: str
    time: str
    #: Byte offset of the configuration data in the file.
    data_offset: int
    #: Bytes of configuration data (field 'e').
    data_length: int


def read_bit_header(bit: bytes) -> BitHeader:
    """Parse the header of a ``.bit`` file and check the configuration data that follows it.

    Raises
    ------
    BitstreamError
        If the preamble, a field or the data length is wrong, or the data holds no sync word.
    """
    bit = bytes(bit)
    if not bit.startswith(_BIT_PREAMBLE):
        if _find_sync(bit, _SYNC_BIN) is not None:
            raise BitstreamError("this is already a byte-swapped .bin (no .bit header, sync "
                                 "word in .bin order); load it as it is")
        raise BitstreamError(f"not a Xilinx .bit file: it does not start with the .bit header "
                             f"({_BIT_PREAMBLE.hex(' ')})")
    pos = len(_BIT_PREAMBLE)
    strings: dict[str, str] = {}
    last_key = 0
    while True:
        if pos >= len(bit):
            raise BitstreamError(f"the .bit header is truncated at byte {pos} (no data field "
                                 f"'e')")
        key = bit[pos]
        if key == _DATA_KEY:
            if pos + 5 > len(bit):
                raise BitstreamError(f"the .bit header is truncated at byte {pos + 1} (in the "
                                     f"length of field 'e')")
            (length,) = struct.unpack_from(">I", bit, pos + 1)
            pos += 5
            break
        if key not in _STRING_KEYS:
            raise BitstreamError(f"the .bit header has an unknown field key {key:#04x} at byte "
                                 f"{pos}; expected 'a' to 'e'")
        if key <= last_key:
            raise BitstreamError(f"the .bit header has field {chr(key)!r} at byte {pos} out of "
                                 f"order (fields come as 'a', 'b', 'c', 'd', 'e')")
        if pos + 3 > len(bit):
            raise BitstreamError(f"the .bit header is truncated at byte {pos + 1} (in the length "
                                 f"of field {chr(key)!r})")
        (n,) = struct.unpack_from(">H", bit, pos + 1)
        if pos + 3 + n > len(bit):
            raise BitstreamError(f"the .bit header is truncated: field {chr(key)!r} at byte {pos} "
                                 f"says {n} bytes, the file ends first")
        strings[_STRING_KEYS[key]] = bit[pos + 3:pos + 3 + n].rstrip(b"\0").decode("latin-1")
        last_key = key
        pos += 3 + n
    have = len(bit) - pos
    if have < length:
        raise BitstreamError(f"the .bit file is truncated: field 'e' says {length} bytes of "
                             f"configuration data, {have} follow")
    if have > length:
        raise BitstreamError(f"the .bit file has {have - length} bytes after the {length} bytes "
                             f"of configuration data that field 'e' announces")
    if length % 4:
        raise BitstreamError(f"the .bit file's configuration data is {length} bytes, not a "
                             f"whole number of 32-bit words")
    if _find_sync(bit[pos:], _SYNC_BIT) is None:
        raise BitstreamError(f"the .bit file's configuration data has no sync word "
                             f"({_SYNC_BIT.hex(' ')} at a 32-bit boundary)")
    design_field = strings.get("design", "")
    parts = design_field.split(";")
    version = next((p.split("=", 1)[1] for p in parts[1:] if p.startswith("Version=")), "")
    return BitHeader(design=parts[0], tool_version=version, part=strings.get("part", ""),
                     date=strings.get("date", ""), time=strings.get("time", ""),
                     data_offset=pos, data_length=length)


def bit_to_bin(bit: bytes) -> bytes:
    """The byte-swapped ``.bin`` the FPGA manager loads, from the bytes of a ``.bit`` file.

    The header is dropped and every 32-bit word of the configuration data has its bytes
    reversed, as ``write_cfgmem -format bin -interface smapx32 -disablebitswap`` does.

    Raises
    ------
    BitstreamError
        If ``bit`` is not a well-formed ``.bit`` file (see :func:`read_bit_header`).
    """
    bit = bytes(bit)
    header = read_bit_header(bit)
    words = np.frombuffer(bit, dtype=">u4", count=header.data_length // 4,
                          offset=header.data_offset)
    return words.astype("<u4").tobytes()


def check_bin(data: bytes) -> None:
    """Refuse what the FPGA manager would refuse: a ``.bit``, or data without a swapped sync word.

    Raises
    ------
    BitstreamError
        Naming the conversion that fixes the file.
    """
    data = bytes(data)
    if data.startswith(_BIT_PREAMBLE):
        raise BitstreamError(f"this is a .bit file, not the byte-swapped .bin the FPGA manager "
                             f"needs; convert it with '{_CONVERT_HINT}'")
    if _find_sync(data, _SYNC_BIN) is None:
        if _find_sync(data, _SYNC_BIT) is not None:
            raise BitstreamError(f"this .bin is not byte-swapped (its sync word reads "
                                 f"{_SYNC_BIT.hex(' ')}); make it with '{_CONVERT_HINT}' or "
                                 f"write_cfgmem -format bin -interface smapx32 -disablebitswap")
        raise BitstreamError(f"this is not a bitstream: no sync word ({_SYNC_BIN.hex(' ')} at a "
                             f"32-bit boundary); make the .bin with '{_CONVERT_HINT}'")


def _find_sync(data: bytes, sync: bytes) -> int | None:
    """Offset of ``sync`` at a 32-bit boundary of ``data``, or None (the kernel's search)."""
    start = data.find(sync)
    while start >= 0:
        if start % 4 == 0:
            return start
        start = data.find(sync, start + 1)
    return None


# ---- the kernel's FPGA manager ------------------------------------------------------------------

def load_fpga_manager(bin_path: str | os.PathLike[str], *, root: str | os.PathLike[str] = "/",
                      manager: str = "fpga0") -> None:
    """Configure the FPGA with a byte-swapped ``.bin`` through Linux's FPGA manager.

    Writes 0 (a full bitstream) to ``/sys/class/fpga_manager/<manager>/flags``, copies the file
    into ``/lib/firmware``, writes its file name to ``.../firmware`` (the kernel loads it
    then) and requires ``.../state`` to read ``operating``. Every path lies under ``root``.

    Raises
    ------
    BitstreamError
        If the file is a ``.bit`` or not a byte-swapped bitstream (nothing is written then).
    FpgaManagerError
        If there is no FPGA manager, a file cannot be written (not root), the kernel refuses
        the bitstream, or the state is not ``operating`` afterwards.
    """
    tree = Tree(root, FpgaManagerError)
    bin_path = Path(bin_path)
    mgr = f"sys/class/fpga_manager/{manager}"
    if not tree.path(mgr).is_dir():
        if tree.path("dev/xdevcfg").exists():
            raise FpgaManagerError(
                f"this kernel has the old /dev/xdevcfg interface and no FPGA manager "
                f"(/{mgr}); use a kernel with the FPGA manager (PYNQ 2.3 or later, PetaLinux "
                f"2018.1 or later) or load through PYNQ (dma='pynq')")
        raise FpgaManagerError(
            f"no FPGA manager: /{mgr} is missing (the kernel needs CONFIG_FPGA_MGR_ZYNQ_FPGA; "
            f"older kernels had /dev/xdevcfg instead); on a PYNQ image load through PYNQ "
            f"(dma='pynq')")
    try:
        data = bin_path.read_bytes()
    except OSError as exc:
        raise FpgaManagerError(f"cannot read {bin_path} ({exc.strerror or exc}); make it with "
                               f"'{_CONVERT_HINT}'") from None
    try:
        check_bin(data)
    except BitstreamError as exc:
        raise BitstreamError(f"{bin_path}: {exc}") from None
    for attr in ("flags", "firmware", "state"):
        if not tree.path(f"{mgr}/{attr}").exists():
            raise FpgaManagerError(
                f"/{mgr} has no '{attr}' file: loading by file name comes with Xilinx's kernel "
                f"(linux-xlnx: PetaLinux, PYNQ images); on another kernel load through PYNQ "
                f"(dma='pynq') or a device-tree overlay")
    tree.write(f"{mgr}/flags", "0")
    target = tree.path("lib/firmware") / bin_path.name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    except PermissionError:
        raise FpgaManagerError(f"cannot copy {bin_path.name} into /lib/firmware: permission "
                               f"denied; run as root (sudo)") from None
    except OSError as exc:
        raise FpgaManagerError(f"cannot copy {bin_path.name} into /lib/firmware "
                               f"({exc.strerror or exc})") from None
    try:
        tree.write(f"{mgr}/firmware", bin_path.name)
    except BoardError:
        raise
    except OSError as exc:
        raise FpgaManagerError(
            f"the FPGA manager refused {bin_path.name} ({exc.strerror or exc}); the kernel log "
            f"(dmesg) says why; check the .bin is for this part and was made with "
            f"'{_CONVERT_HINT}'") from None
    state = tree.read(f"{mgr}/state")
    if state != "operating":
        raise FpgaManagerError(
            f"the FPGA manager's state is {state!r} after loading {bin_path.name}, not "
            f"'operating'; the kernel log (dmesg) says why; check the .bin is for this part and "
            f"was made with '{_CONVERT_HINT}'")


class Tree:
    """Files of the board's Linux (sysfs attributes, device nodes) under a root folder.

    Messages name paths as the board sees them (``/sys/...``), whatever ``root`` is; a missing
    file or a permission problem raises ``error`` with the fix, other OSErrors of a write pass
    through (a sysfs write that the kernel refuses).
    """

    def __init__(self, root: str | os.PathLike[str], error: type[BoardError]) -> None:
        self.root = Path(root)
        self.error = error

    def path(self, rel: str) -> Path:
        return self.root / rel

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()

    def write(self, rel: str, text: str) -> None:
        """Write one attribute in one ``write()`` call, as sysfs wants."""
        try:
            # O_TRUNC as a shell's '>' uses it: sysfs ignores it, a stand-in file needs it.
            fd = os.open(self.path(rel), os.O_WRONLY | os.O_TRUNC)
        except PermissionError:
            raise self.error(f"cannot write /{rel}: permission denied; run as root "
                             f"(sudo)") from None
        except FileNotFoundError:
            raise self.error(f"/{rel} is missing; the driver that provides it is not loaded or "
                             f"is another version") from None
        try:
            os.write(fd, text.encode())
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise self.error(f"cannot write /{rel}: permission denied; run as root "
                                 f"(sudo)") from None
            raise
        finally:
            os.close(fd)

    def read(self, rel: str) -> str:
        try:
            return self.path(rel).read_text().strip()
        except PermissionError:
            raise self.error(f"cannot read /{rel}: permission denied; run as root "
                             f"(sudo)") from None
        except FileNotFoundError:
            raise self.error(f"/{rel} is missing; the driver that provides it is not loaded or "
                             f"is another version") from None
        except OSError as exc:
            raise self.error(f"cannot read /{rel} ({exc.strerror or exc})") from None


# ---- command line -------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """``python -m firmware.bitstream accel.bit [accel.bin]``."""
    parser = argparse.ArgumentParser(
        prog="python -m firmware.bitstream",
        description="Convert a Vivado .bit into the byte-swapped .bin that Linux's FPGA manager "
                    "loads (as write_cfgmem -format bin -interface smapx32 -disablebitswap).")
    parser.add_argument("bit", help="the .bit file Vivado wrote")
    parser.add_argument("bin", nargs="?", help="the .bin to write (default: beside the .bit, "
                        "same name with .bin)")
    args = parser.parse_args(argv)
    src = Path(args.bit)
    dst = Path(args.bin) if args.bin else src.with_suffix(".bin")
    if dst.resolve() == src.resolve():
        print(f"error: {dst}: the output would overwrite the input; name another .bin",
              file=sys.stderr)
        return 1
    try:
        data = src.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {src} ({exc.strerror or exc})", file=sys.stderr)
        return 1
    try:
        header = read_bit_header(data)
        out = bit_to_bin(data)
    except BitstreamError as exc:
        print(f"error: {src}: {exc}", file=sys.stderr)
        return 1
    try:
        dst.write_bytes(out)
    except OSError as exc:
        print(f"error: cannot write {dst} ({exc.strerror or exc})", file=sys.stderr)
        return 1
    print(f"{dst}: {len(out)} bytes for part {header.part or '?'} (design "
          f"{header.design or '?'}, {header.date} {header.time})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
