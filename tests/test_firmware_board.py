"""The board backend and the bitstream tools on a fake board: a temporary folder holding the
sysfs files of the FPGA manager, u-dma-buf, fclkcfg/devcfg and UIO, regular files standing in
for /dev/mem and /dev/udmabuf0, a pseudo-terminal standing in for /dev/uio0, and a stand-in
``pynq`` module. A small fake kernel answers the sysfs writes (state after a load, PLL
rounding of a clock rate) so that the order of the steps is checked, not only their result."""

from __future__ import annotations

import errno
import json
import os
import re
import struct
import subprocess
import sys
import threading
import tty
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from firmware import bitstream as B
from firmware.backend import run_sync
from firmware.bitstream import (
    BitstreamError,
    BoardError,
    FpgaManagerError,
    Tree,
    bit_to_bin,
    check_bin,
    load_fpga_manager,
    read_bit_header,
)
from firmware.board import (
    BoardBackend,
    BoardWarning,
    ClockTooFastError,
    PynqMemory,
    UdmaBufMemory,
    find_uio,
)
from firmware.driver import Accelerator, BitstreamMismatchError, ClockError
from firmware.package import BuildPackage, PackageError
from rtl.config import preset
from rtl.interface.regmap import MAGIC, REGMAP_VERSION, build_regmap

REGS_BASE = 0x43C0_0000
REGS_SIZE = 0x1000
PHYS = 0x1E90_0000
BUF_BYTES = 1 << 20
PLL_MHZ = 1000.0          # the IO PLL the fake kernel divides for FCLK0


def exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


# ---- a synthetic .bit, from the documented layout ---------------------------------------------

def _field(key: str, text: str) -> bytes:
    raw = text.encode() + b"\0"
    return key.encode() + struct.pack(">H", len(raw)) + raw


def config_data(extra_words: int = 3) -> bytes:
    """Configuration data as a .bit holds it: dummy words, bus-width pattern, sync word, more."""
    words = [0xFFFFFFFF] * 8 + [0x000000BB, 0x11220044, 0xFFFFFFFF, 0xFFFFFFFF, 0xAA995566,
                                0x20000000, 0x30008001, 0x00000007]
    words += [0x01020304 + i for i in range(extra_words)]
    return b"".join(struct.pack(">I", w) for w in words)


def make_bit(data: bytes | None = None, *, length: int | None = None,
             fields: bytes | None = None) -> bytes:
    data = config_data() if data is None else data
    if fields is None:
        fields = (_field("a", "accel_top;UserID=0XFFFFFFFF;Version=2024.1")
                  + _field("b", "7z020clg400") + _field("c", "2026/12/02")
                  + _field("d", "08:00:00"))
    head = struct.pack(">H", 9) + bytes.fromhex("0ff00ff00ff00ff000") + struct.pack(">H", 1)
    return head + fields + b"e" + struct.pack(">I", len(data) if length is None else length) \
        + data


def swapped(data: bytes) -> bytes:
    """The byte-swapped words, written out by hand (independent of bit_to_bin's numpy)."""
    return b"".join(data[i:i + 4][::-1] for i in range(0, len(data), 4))


# ---- the package -------------------------------------------------------------------------------

def make_package(folder: Path, **manifest_changes: object) -> BuildPackage:
    folder.mkdir(parents=True, exist_ok=True)
    cfg = preset("pynq-z2")
    (folder / "hwconfig.json").write_text(cfg.to_json())
    (folder / "regmap.json").write_text(build_regmap(cfg).to_json())
    bit = make_bit()
    (folder / "accel.bit").write_bytes(bit)
    (folder / "accel.bin").write_bytes(bit_to_bin(bit))
    (folder / "accel.hwh").write_text("<hwh/>\n")
    manifest: dict[str, object] = {
        "board": "pynq-z2", "config_name": cfg.name, "part": cfg.part,
        "config_hash": cfg.config_hash_hex, "clock_mhz": 100.0, "fclk0_mhz": 100.0,
        "regs_base": REGS_BASE, "regs_size": REGS_SIZE, "hp_ports": ["S_AXI_HP0"],
        "bin": "accel.bin", "bitstream": "accel.bit", "hwh": "accel.hwh"}
    manifest.update(manifest_changes)
    (folder / "package.json").write_text(json.dumps(manifest))
    return BuildPackage.load(folder)


# ---- the fake board ----------------------------------------------------------------------------

class FakeBoard:
    """A board's files under ``root``, and a kernel that answers writes to them."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, *,
                 clock: str | None = "fclkcfg") -> None:
        self.root = root
        self.writes: list[tuple[str, str]] = []
        self.state_after_load = "operating"
        self.refuse_firmware = False
        self.attr("sys/class/fpga_manager/fpga0/flags", "1")
        self.attr("sys/class/fpga_manager/fpga0/firmware", "")
        self.attr("sys/class/fpga_manager/fpga0/state", "unknown")
        (root / "lib/firmware").mkdir(parents=True)
        if clock == "fclkcfg":
            self.attr("sys/class/fclkcfg/fclk0/rate", "50000000")
            self.attr("sys/class/fclkcfg/fclk0/enable", "0")
        elif clock == "devcfg":
            self.attr("sys/devices/soc0/amba/f8007000.devcfg/fclk/fclk0/set_rate", "50000000")
            self.attr("sys/devices/soc0/amba/f8007000.devcfg/fclk/fclk0/enable", "0")
        udma = "sys/class/u-dma-buf/udmabuf0"
        self.attr(f"{udma}/phys_addr", f"0x{PHYS:016x}")
        self.attr(f"{udma}/size", str(BUF_BYTES))
        for name in ("sync_offset", "sync_size", "sync_direction", "sync_for_cpu",
                     "sync_for_device"):
            self.attr(f"{udma}/{name}", "9")
        (root / "dev").mkdir(parents=True)
        with open(root / "dev/mem", "wb") as f:       # sparse: only written pages take space
            f.truncate(REGS_BASE + REGS_SIZE)
        with open(root / "dev/udmabuf0", "wb") as f:
            f.truncate(BUF_BYTES)
        original = Tree.write

        def write(tree: Tree, rel: str, text: str) -> None:
            if tree.root != self.root:
                return original(tree, rel, text)
            self.writes.append((rel, text))
            if rel.endswith("fpga0/firmware") and self.refuse_firmware:
                raise OSError(errno.EINVAL, "Invalid argument")
            original(tree, rel, text)
            self.kernel(rel, text)

        monkeypatch.setattr(Tree, "write", write)

    def attr(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")

    def read(self, rel: str) -> str:
        return (self.root / rel).read_text().strip()

    def kernel(self, rel: str, text: str) -> None:
        if rel == "sys/class/fpga_manager/fpga0/firmware":
            loaded = (self.root / "lib/firmware" / text).read_bytes()
            check_bin(loaded)                             # the kernel's sync-word search
            ok = self.read("sys/class/fpga_manager/fpga0/flags") == "0"
            self.attr("sys/class/fpga_manager/fpga0/state",
                      self.state_after_load if ok else "write init error")
        elif rel.endswith(("fclk0/rate", "fclk0/set_rate")):
            want = int(text)
            divisors = range(1, 64 * 64)
            best = min((PLL_MHZ * 1e6 / d for d in divisors), key=lambda hz: abs(hz - want))
            self.attr(rel, str(int(best)))

    # registers as the accelerator sees them: bytes of the fake /dev/mem
    def reg(self, offset: int) -> int:
        with open(self.root / "dev/mem", "rb") as f:
            f.seek(REGS_BASE + offset)
            return struct.unpack("<I", f.read(4))[0]

    def set_reg(self, offset: int, value: int) -> None:
        with open(self.root / "dev/mem", "r+b") as f:
            f.seek(REGS_BASE + offset)
            f.write(struct.pack("<I", value))


@pytest.fixture
def no_pynq(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import pynq`` fails, as on plain Linux (and on this machine)."""
    monkeypatch.setitem(sys.modules, "pynq", None)


@pytest.fixture
def board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_pynq: None) -> FakeBoard:
    return FakeBoard(tmp_path / "root", monkeypatch)


@pytest.fixture
def pkg(tmp_path: Path) -> BuildPackage:
    return make_package(tmp_path / "pkg")


def open_backend(pkg: BuildPackage, board: FakeBoard, **kwargs: object) -> BoardBackend:
    kwargs.setdefault("uio", None)
    return BoardBackend(pkg, root=board.root, **kwargs)


# ---- .bit to .bin ------------------------------------------------------------------------------

def test_bit_header_and_conversion() -> None:
    data = config_data()
    bit = make_bit(data)
    header = read_bit_header(bit)
    assert (header.design, header.tool_version, header.part, header.date, header.time) == \
        ("accel_top", "2024.1", "7z020clg400", "2026/12/02", "08:00:00")
    assert header.data_offset == len(bit) - len(data)
    assert header.data_length == len(data)
    out = bit_to_bin(bit)
    assert out == swapped(data)
    assert out[8 * 4 + 4 * 4:8 * 4 + 5 * 4] == bytes.fromhex("665599aa")   # the sync word
    check_bin(out)


def test_bit_header_fields_are_optional_but_ordered() -> None:
    bit = make_bit(fields=_field("b", "7z045ffg900"))
    assert read_bit_header(bit).part == "7z045ffg900"
    assert read_bit_header(bit).design == ""
    assert bit_to_bin(bit) == swapped(config_data())


BAD_BITS = [
    (b"\x00\x01hello", "not a Xilinx .bit file: it does not start with the .bit header "
                       "(00 09 0f f0 0f f0 0f f0 0f f0 00 00 01)"),
    (swapped(config_data()), "this is already a byte-swapped .bin (no .bit header, sync word "
                             "in .bin order); load it as it is"),
    (make_bit()[:20], "the .bit header is truncated: field 'a' at byte 13 says 43 bytes, the "
                      "file ends first"),
    (make_bit()[:13], "the .bit header is truncated at byte 13 (no data field 'e')"),
    (make_bit()[:14], "the .bit header is truncated at byte 14 (in the length of field 'a')"),
    (make_bit(fields=_field("a", "x"))[:20],
     "the .bit header is truncated at byte 19 (in the length of field 'e')"),
    (make_bit(fields=_field("f", "x")), "the .bit header has an unknown field key 0x66 at byte "
                                        "13; expected 'a' to 'e'"),
    (make_bit(fields=_field("b", "x") + _field("a", "y")),
     "the .bit header has field 'a' at byte 18 out of order (fields come as 'a', 'b', 'c', "
     "'d', 'e')"),
    (make_bit(length=len(config_data()) + 8),
     f"the .bit file is truncated: field 'e' says {len(config_data()) + 8} bytes of "
     f"configuration data, {len(config_data())} follow"),
    (make_bit(length=len(config_data()) - 8),
     f"the .bit file has 8 bytes after the {len(config_data()) - 8} bytes of configuration "
     f"data that field 'e' announces"),
    (make_bit(config_data() + b"\0\0"),
     f"the .bit file's configuration data is {len(config_data()) + 2} bytes, not a whole "
     f"number of 32-bit words"),
    (make_bit(b"\xff" * 64), "the .bit file's configuration data has no sync word (aa 99 55 66 "
                             "at a 32-bit boundary)"),
    (make_bit(b"\xff\xaa\x99\x55\x66\xff\xff\xff"),
     "the .bit file's configuration data has no sync word (aa 99 55 66 at a 32-bit boundary)"),
]


@pytest.mark.parametrize(("bit", "message"), BAD_BITS)
def test_malformed_bit_is_refused(bit: bytes, message: str) -> None:
    with pytest.raises(BitstreamError, match=exact(message)):
        bit_to_bin(bit)


@pytest.mark.parametrize(("data", "message"), [
    (make_bit(), "this is a .bit file, not the byte-swapped .bin the FPGA manager needs; "
                 "convert it with 'python -m firmware.bitstream accel.bit accel.bin'"),
    (config_data(), "this .bin is not byte-swapped (its sync word reads aa 99 55 66); make it "
                    "with 'python -m firmware.bitstream accel.bit accel.bin' or write_cfgmem "
                    "-format bin -interface smapx32 -disablebitswap"),
    (b"\xff" * 64, "this is not a bitstream: no sync word (66 55 99 aa at a 32-bit boundary); "
                   "make the .bin with 'python -m firmware.bitstream accel.bit accel.bin'"),
])
def test_check_bin_refuses_what_the_kernel_refuses(data: bytes, message: str) -> None:
    with pytest.raises(BitstreamError, match=exact(message)):
        check_bin(data)


def test_cli_converts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bit = tmp_path / "accel.bit"
    bit.write_bytes(make_bit())
    assert B.main([str(bit), str(tmp_path / "out.bin")]) == 0
    assert (tmp_path / "out.bin").read_bytes() == swapped(config_data())
    out = capsys.readouterr().out
    assert out == (f"{tmp_path / 'out.bin'}: {len(config_data())} bytes for part 7z020clg400 "
                   f"(design accel_top, 2026/12/02 08:00:00)\n")
    assert B.main([str(bit)]) == 0                             # default: beside, .bin
    assert (tmp_path / "accel.bin").read_bytes() == swapped(config_data())


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.bit"
    bad.write_bytes(b"\xff" * 16)
    assert B.main([str(bad), str(tmp_path / "bad.bin")]) == 1
    assert capsys.readouterr().err == (
        f"error: {bad}: not a Xilinx .bit file: it does not start with the .bit header "
        f"(00 09 0f f0 0f f0 0f f0 0f f0 00 00 01)\n")
    assert not (tmp_path / "bad.bin").exists()
    assert B.main([str(tmp_path / "none.bit")]) == 1
    assert capsys.readouterr().err == (f"error: cannot read {tmp_path / 'none.bit'} (No such "
                                       f"file or directory)\n")
    good = tmp_path / "good.bit"
    good.write_bytes(make_bit())
    assert B.main([str(good), str(tmp_path / "no/such/dir.bin")]) == 1
    assert capsys.readouterr().err == (f"error: cannot write {tmp_path / 'no/such/dir.bin'} (No "
                                       f"such file or directory)\n")
    assert B.main([str(bad), str(bad)]) == 1
    assert capsys.readouterr().err == (f"error: {bad}: the output would overwrite the input; "
                                       f"name another .bin\n")


# ---- the FPGA manager --------------------------------------------------------------------------

def test_fpga_manager_load_sequence(board: FakeBoard, pkg: BuildPackage) -> None:
    load_fpga_manager(pkg.path / "accel.bin", root=board.root)
    mgr = "sys/class/fpga_manager/fpga0"
    assert board.writes == [(f"{mgr}/flags", "0"), (f"{mgr}/firmware", "accel.bin")]
    assert board.read(f"{mgr}/flags") == "0"
    assert board.read(f"{mgr}/firmware") == "accel.bin"
    assert (board.root / "lib/firmware/accel.bin").read_bytes() == \
        (pkg.path / "accel.bin").read_bytes()
    assert board.read(f"{mgr}/state") == "operating"


def test_fpga_manager_state_not_operating(board: FakeBoard, pkg: BuildPackage) -> None:
    board.state_after_load = "write error"
    with pytest.raises(FpgaManagerError, match=exact(
            "the FPGA manager's state is 'write error' after loading accel.bin, not "
            "'operating'; the kernel log (dmesg) says why; check the .bin is for this part and "
            "was made with 'python -m firmware.bitstream accel.bit accel.bin'")):
        load_fpga_manager(pkg.path / "accel.bin", root=board.root)


def test_fpga_manager_refuses_the_file(board: FakeBoard, pkg: BuildPackage) -> None:
    board.refuse_firmware = True
    with pytest.raises(FpgaManagerError, match=exact(
            "the FPGA manager refused accel.bin (Invalid argument); the kernel log (dmesg) says "
            "why; check the .bin is for this part and was made with 'python -m "
            "firmware.bitstream accel.bit accel.bin'")):
        load_fpga_manager(pkg.path / "accel.bin", root=board.root)


def test_fpga_manager_missing(tmp_path: Path, pkg: BuildPackage) -> None:
    root = tmp_path / "bare"
    (root / "dev").mkdir(parents=True)
    with pytest.raises(FpgaManagerError, match=exact(
            "no FPGA manager: /sys/class/fpga_manager/fpga0 is missing (the kernel needs "
            "CONFIG_FPGA_MGR_ZYNQ_FPGA; older kernels had /dev/xdevcfg instead); on a PYNQ "
            "image load through PYNQ (dma='pynq')")):
        load_fpga_manager(pkg.path / "accel.bin", root=root)
    (root / "dev/xdevcfg").write_bytes(b"")
    with pytest.raises(FpgaManagerError, match=exact(
            "this kernel has the old /dev/xdevcfg interface and no FPGA manager "
            "(/sys/class/fpga_manager/fpga0); use a kernel with the FPGA manager (PYNQ 2.3 or "
            "later, PetaLinux 2018.1 or later) or load through PYNQ (dma='pynq')")):
        load_fpga_manager(pkg.path / "accel.bin", root=root)
    assert sorted(p.name for p in root.rglob("*")) == ["dev", "xdevcfg"]   # nothing written


def test_fpga_manager_refuses_a_bit_before_writing(board: FakeBoard, pkg: BuildPackage) -> None:
    with pytest.raises(BitstreamError, match=exact(
            f"{pkg.path / 'accel.bit'}: this is a .bit file, not the byte-swapped .bin the FPGA "
            f"manager needs; convert it with 'python -m firmware.bitstream accel.bit "
            f"accel.bin'")):
        load_fpga_manager(pkg.path / "accel.bit", root=board.root)
    assert board.writes == []
    assert list((board.root / "lib/firmware").iterdir()) == []


def test_fpga_manager_unreadable_bin(board: FakeBoard, tmp_path: Path) -> None:
    with pytest.raises(FpgaManagerError, match=exact(
            f"cannot read {tmp_path / 'x.bin'} (No such file or directory); make it with "
            f"'python -m firmware.bitstream accel.bit accel.bin'")):
        load_fpga_manager(tmp_path / "x.bin", root=board.root)


def test_fpga_manager_not_root(board: FakeBoard, pkg: BuildPackage,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def deny_flags(path: object, flags: int, *args: object) -> int:
        if str(path).endswith("fpga0/flags"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", deny_flags)
    with pytest.raises(FpgaManagerError, match=exact(
            "cannot write /sys/class/fpga_manager/fpga0/flags: permission denied; run as root "
            "(sudo)")):
        load_fpga_manager(pkg.path / "accel.bin", root=board.root)


def test_fpga_manager_cannot_copy(board: FakeBoard, pkg: BuildPackage,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def deny(self: Path, data: bytes) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "write_bytes", deny)
    with pytest.raises(FpgaManagerError, match=exact(
            "cannot copy accel.bin into /lib/firmware: permission denied; run as root (sudo)")):
        load_fpga_manager(pkg.path / "accel.bin", root=board.root)


def test_fpga_manager_without_load_by_name(board: FakeBoard, pkg: BuildPackage) -> None:
    (board.root / "sys/class/fpga_manager/fpga0/firmware").unlink()
    with pytest.raises(FpgaManagerError, match=exact(
            "/sys/class/fpga_manager/fpga0 has no 'firmware' file: loading by file name comes "
            "with Xilinx's kernel (linux-xlnx: PetaLinux, PYNQ images); on another kernel load "
            "through PYNQ (dma='pynq') or a device-tree overlay")):
        load_fpga_manager(pkg.path / "accel.bin", root=board.root)
    assert board.writes == []


def test_fpga_manager_copy_fails(board: FakeBoard, pkg: BuildPackage) -> None:
    (board.root / "lib/firmware").rmdir()
    (board.root / "lib/firmware").write_text("")          # a file where the folder should be
    with pytest.raises(FpgaManagerError, match=r"^cannot copy accel\.bin into /lib/firmware "
                                               r"\(File exists\)$"):
        load_fpga_manager(pkg.path / "accel.bin", root=board.root)


def test_tree_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, BoardError)
    missing = exact("/sys/x is missing; the driver that provides it is not loaded or is another "
                    "version")
    with pytest.raises(BoardError, match=missing):
        tree.write("sys/x", "1")
    with pytest.raises(BoardError, match=missing):
        tree.read("sys/x")
    (tmp_path / "sys").mkdir()
    (tmp_path / "sys/x").write_text("old text\n")
    tree.write("sys/x", "1")
    assert tree.read("sys/x") == "1"                          # replaced, not overwritten
    with pytest.raises(BoardError, match=exact("cannot read /sys (Is a directory)")):
        tree.read("sys")
    real_write = os.write

    def refuse(fd: int, data: bytes) -> int:
        raise OSError(refuse.errno, os.strerror(refuse.errno))

    monkeypatch.setattr(os, "write", refuse)
    refuse.errno = errno.EPERM
    with pytest.raises(BoardError, match=exact("cannot write /sys/x: permission denied; run as "
                                               "root (sudo)")):
        tree.write("sys/x", "1")
    refuse.errno = errno.EBUSY                                # the kernel's own refusal passes
    with pytest.raises(OSError) as info:
        tree.write("sys/x", "1")
    assert not isinstance(info.value, BoardError) and info.value.errno == errno.EBUSY
    monkeypatch.setattr(os, "write", real_write)

    def deny(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "read_text", deny)
    with pytest.raises(BoardError, match=exact("cannot read /sys/x: permission denied; run as "
                                               "root (sudo)")):
        tree.read("sys/x")


# ---- the backend on plain Linux ----------------------------------------------------------------

def test_backend_brings_the_board_up_in_order(board: FakeBoard, pkg: BuildPackage) -> None:
    with open_backend(pkg, board) as be:
        assert be.mode == "linux"
        assert be.clock_mhz == 100.0
        assert be.has_interrupt is False
        udma = "sys/class/u-dma-buf/udmabuf0"
        mgr = "sys/class/fpga_manager/fpga0"
        assert board.writes == [
            ("sys/class/fclkcfg/fclk0/rate", "100000000"),     # the clock before the design
            ("sys/class/fclkcfg/fclk0/enable", "1"),
            (f"{mgr}/flags", "0"), (f"{mgr}/firmware", "accel.bin"),
            (f"{udma}/sync_offset", "0"), (f"{udma}/sync_size", str(BUF_BYTES)),
            (f"{udma}/sync_direction", "0")]
        assert (board.root / "lib/firmware/accel.bin").read_bytes() == \
            (pkg.path / "accel.bin").read_bytes()
        assert be.describe() == ("board (linux): registers at 0x43c00000, u-dma-buf 1 MiB at "
                                 "0x1e900000, polling, 100 MHz")


def test_backend_without_load_leaves_the_fpga_alone(board: FakeBoard, pkg: BuildPackage) -> None:
    with open_backend(pkg, board, load=False):
        assert not any("fpga_manager" in rel for rel, _ in board.writes)


def test_register_window(board: FakeBoard, pkg: BuildPackage) -> None:
    regmap = pkg.regmap
    with open_backend(pkg, board) as be:
        scratch = regmap.offset("SCRATCH")
        run_sync(be.write_reg(scratch, 0xDEADBEEF))
        assert board.reg(scratch) == 0xDEADBEEF               # at regs_base + offset
        board.set_reg(regmap.offset("MAGIC"), MAGIC)
        assert run_sync(be.read_reg(regmap.offset("MAGIC"))) == MAGIC
        run_sync(be.write_reg(REGS_SIZE - 4, 0x12345678))     # the window's last word
        assert board.reg(REGS_SIZE - 4) == 0x12345678
        for offset in (REGS_SIZE, -4, 0x10000):
            with pytest.raises(ValueError, match=exact(
                    f"register offset {offset:#x} lies outside the accelerator's 0x1000-byte "
                    f"register window at 0x43c00000; take offsets from the register map")):
                run_sync(be.write_reg(offset, 1))
            with pytest.raises(ValueError):
                run_sync(be.read_reg(offset))
        with pytest.raises(ValueError, match=exact(
                "register offset 0x2 is not a multiple of 4; registers are 32-bit words")):
            run_sync(be.read_reg(2))
        with pytest.raises(TypeError, match=exact("register offset must be an integer, not "
                                                  "True")):
            run_sync(be.read_reg(True))
        with pytest.raises(ValueError, match=exact(
                "register value must be an unsigned 32-bit integer, not 4294967296")):
            run_sync(be.write_reg(0, 1 << 32))
    # Nothing outside the window changed: the page before and the window's other words.
    with open(board.root / "dev/mem", "rb") as f:
        f.seek(REGS_BASE - 4096)
        before = f.read(4096)
        window = bytearray(f.read(REGS_SIZE))
    assert before == bytes(4096)
    for offset in (scratch, regmap.offset("MAGIC"), REGS_SIZE - 4):
        window[offset:offset + 4] = bytes(4)
    assert window == bytes(REGS_SIZE)


def test_register_window_off_page(tmp_path: Path, board: FakeBoard) -> None:
    """A base that is not page-aligned maps the page holding it and lands on the right byte."""
    pkg = make_package(tmp_path / "pkg2", regs_base=REGS_BASE + 0x100, regs_size=0x100)
    with open_backend(pkg, board) as be:
        run_sync(be.write_reg(0x50, 0xCAFEF00D))
        assert board.reg(0x150) == 0xCAFEF00D
        with pytest.raises(ValueError, match=exact(
                "register offset 0x100 lies outside the accelerator's 0x100-byte register "
                "window at 0x43c00100; take offsets from the register map")):
            run_sync(be.write_reg(0x100, 0))


def test_dma_buffer(board: FakeBoard, pkg: BuildPackage) -> None:
    udma = "sys/class/u-dma-buf/udmabuf0"
    with open_backend(pkg, board) as be:
        mem = be.memory
        assert isinstance(mem, UdmaBufMemory)
        assert (mem.phys_addr, mem.size) == (PHYS, BUF_BYTES)
        mem.write(100, b"hello")
        assert mem.read(98, 9) == b"\0\0hello\0\0"
        mem.sync_for_device()
        assert board.read(f"{udma}/sync_for_device") == "1"
        assert board.read(f"{udma}/sync_for_cpu") == "9"
        mem.sync_for_cpu()
        assert board.read(f"{udma}/sync_for_cpu") == "1"
        with pytest.raises(ValueError, match=exact(
                "access of 2 bytes at offset 0xfffff lies outside the 1048576-byte DMA "
                "buffer")):
            mem.write(BUF_BYTES - 1, b"ab")
    with open(board.root / "dev/udmabuf0", "rb") as f:
        data = f.read()
    assert data[100:105] == b"hello"
    assert data.count(0) == BUF_BYTES - 5


def test_dma_buffer_older_driver_name(tmp_path: Path, board: FakeBoard,
                                      pkg: BuildPackage) -> None:
    (board.root / "sys/class/u-dma-buf").rename(board.root / "sys/class/udmabuf")
    with open_backend(pkg, board) as be:
        assert be.memory.phys_addr == PHYS
        be.memory.sync_for_device()
        assert board.read("sys/class/udmabuf/udmabuf0/sync_for_device") == "1"


def test_closed_backend(board: FakeBoard, pkg: BuildPackage) -> None:
    be = open_backend(pkg, board)
    mem = be.memory
    be.close()
    be.close()
    closed = exact("the board backend is closed; make a new one")
    with pytest.raises(BoardError, match=closed):
        run_sync(be.read_reg(0))
    with pytest.raises(BoardError, match=closed):
        _ = be.memory
    with pytest.raises(BoardError, match=closed):
        mem.read(0, 4)
    with pytest.raises(BoardError, match=closed):
        run_sync(be.wait_interrupt(0.01))


# ---- the fabric clock --------------------------------------------------------------------------

def test_clock_devcfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_pynq: None,
                      pkg: BuildPackage) -> None:
    board = FakeBoard(tmp_path / "root", monkeypatch, clock="devcfg")
    fclk = "sys/devices/soc0/amba/f8007000.devcfg/fclk/fclk0"
    with open_backend(pkg, board) as be:
        assert be.clock_mhz == 100.0
    assert board.writes[:2] == [(f"{fclk}/set_rate", "100000000"), (f"{fclk}/enable", "1")]
    assert board.read(f"{fclk}/set_rate") == "100000000"


def test_clock_devcfg_class_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 no_pynq: None, pkg: BuildPackage) -> None:
    """Kernels that list the exported clock under /sys/class/fclk."""
    board = FakeBoard(tmp_path / "root", monkeypatch, clock=None)
    board.attr("sys/class/fclk/fclk0/set_rate", "50000000")
    with open_backend(pkg, board) as be:
        assert be.clock_mhz == 100.0
    assert board.writes[0] == ("sys/class/fclk/fclk0/set_rate", "100000000")


def test_clock_devcfg_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_pynq: None,
                             pkg: BuildPackage) -> None:
    board = FakeBoard(tmp_path / "root", monkeypatch, clock=None)
    board.attr("sys/devices/soc0/amba/f8007000.devcfg/fclk_export", "")
    with pytest.raises(BoardError, match=exact(
            "exported fclk0 through /sys/devices/soc0/amba/f8007000.devcfg/fclk_export but "
            "/sys/devices/soc0/amba/f8007000.devcfg/fclk/fclk0 did not appear; load the "
            "fclkcfg module instead")):
        open_backend(pkg, board)
    assert board.writes == [("sys/devices/soc0/amba/f8007000.devcfg/fclk_export", "fclk0")]


def test_clock_with_mmcm_scales(tmp_path: Path, board: FakeBoard) -> None:
    """FCLK0 feeds an MMCM: the fabric runs at fclk0 * clock_mhz / fclk0_mhz."""
    pkg = make_package(tmp_path / "mmcm", clock_mhz=150.0, fclk0_mhz=100.0)
    with open_backend(pkg, board) as be:
        assert be.clock_mhz == 150.0


def test_clock_rounded_down_is_used_and_warned(tmp_path: Path, board: FakeBoard) -> None:
    pkg = make_package(tmp_path / "slow", clock_mhz=95.0, fclk0_mhz=95.0)
    with pytest.warns(BoardWarning, match=exact(
            "FCLK0 runs at 90.9091 MHz, slower than the 95 MHz the build asks for; timings "
            "use the clock that runs")):
        be = open_backend(pkg, board)
    with be:
        assert board.read("sys/class/fclkcfg/fclk0/rate") == "90909090"
        assert be.clock_mhz == pytest.approx(90.90909)


def test_clock_above_the_build_is_refused(tmp_path: Path, board: FakeBoard) -> None:
    pkg = make_package(tmp_path / "fast", clock_mhz=142.0, fclk0_mhz=142.0)
    with pytest.raises(ClockTooFastError, match=exact(
            "FCLK0 runs at 142.857 MHz after asking for 142 MHz, faster than the build was "
            "timed for; the PS cannot make 142 MHz: rebuild for a clock its IO PLL divides "
            "exactly ('python build.py --board pynq-z2')")) as info:
        open_backend(pkg, board)
    assert isinstance(info.value, ClockError)                 # the driver's type, too
    assert not any("fpga_manager" in rel for rel, _ in board.writes)   # refused before loading


def test_clock_exactly_divided_is_not_refused(tmp_path: Path, board: FakeBoard) -> None:
    """1000/7 MHz comes back as 142857142 Hz: a rounding, not a faster clock."""
    pkg = make_package(tmp_path / "div7", clock_mhz=1000 / 7, fclk0_mhz=1000 / 7)
    with open_backend(pkg, board) as be:
        assert be.clock_mhz == pytest.approx(1000 / 7, rel=1e-6)


def test_clock_unreadable(board: FakeBoard, pkg: BuildPackage) -> None:
    board.kernel = lambda rel, text: board.attr(rel, "unknown") if "fclk0" in rel else None
    with pytest.raises(BoardError, match=exact(
            "cannot read a clock rate in Hz from /sys/class/fclkcfg/fclk0/rate: 'unknown'")):
        open_backend(pkg, board, load=False)


def test_no_clock_control_warns_and_uses_the_build_clock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_pynq: None,
        pkg: BuildPackage) -> None:
    board = FakeBoard(tmp_path / "root", monkeypatch, clock=None)
    with pytest.warns(BoardWarning, match=exact(
            "no way to set or read the fabric clock here (no /sys/class/fclkcfg/fclk0, no "
            "devcfg fclk files, no /sys/kernel/debug/clk/fclk0/clk_rate): FCLK0 is whatever the "
            "boot loader set; timings assume the build's 100 MHz; load the fclkcfg module to set "
            "and check it")) as record:
        be = open_backend(pkg, board)
    with be:
        assert be.clock_mhz == 100.0
    assert len(record) == 1


def test_clock_only_readable_in_debugfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        no_pynq: None, pkg: BuildPackage) -> None:
    """Nothing can set FCLK0: the boot loader's rate, read from debugfs, is used or refused."""
    board = FakeBoard(tmp_path / "root", monkeypatch, clock=None)
    debugfs = "sys/kernel/debug/clk/fclk0/clk_rate"
    board.attr(debugfs, "100000000")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # the clock is right: no warning
        with open_backend(pkg, board) as be:
            assert be.clock_mhz == 100.0
    board.attr(debugfs, "50000000")
    with pytest.warns(BoardWarning, match=exact(
            "FCLK0 runs at 50 MHz, slower than the 100 MHz the build asks for; timings use the "
            "clock that runs")):
        be = open_backend(pkg, board)
    with be:
        assert be.clock_mhz == 50.0
    board.attr(debugfs, "125000000")
    board.writes.clear()
    with pytest.raises(ClockTooFastError, match=exact(
            "FCLK0 runs at 125 MHz (/sys/kernel/debug/clk/fclk0/clk_rate), faster than the 100 "
            "MHz the build was timed for, and nothing here can set it: load the fclkcfg module, "
            "or set 100 MHz in the boot loader")):
        open_backend(pkg, board)
    assert board.writes == []                                 # refused before loading


# ---- faults on plain Linux ---------------------------------------------------------------------

def test_missing_bin_says_how_to_make_it(tmp_path: Path, board: FakeBoard) -> None:
    pkg = make_package(tmp_path / "nobin")
    (pkg.path / "accel.bin").unlink()
    with pytest.raises(PackageError, match=exact(
            f"{pkg.path} has no accel.bin, the byte-swapped bitstream the FPGA manager loads; "
            f"make it with 'python -m firmware.bitstream {pkg.path / 'accel.bit'} "
            f"{pkg.path / 'accel.bin'}'")):
        open_backend(pkg, board)
    pkg = make_package(tmp_path / "nobin2", bin=None)
    with pytest.raises(PackageError, match=exact(
            f"{pkg.path} has no accel.bin, the byte-swapped bitstream the FPGA manager loads; "
            f"make it with 'python -m firmware.bitstream {pkg.path / 'accel.bit'} "
            f"{pkg.path / 'accel.bin'}'")):
        open_backend(pkg, board)
    pkg = make_package(tmp_path / "nobit", bin=None, bitstream=None)
    with pytest.raises(PackageError, match=exact(
            f"{pkg.path} has no bitstream (no accel.bin and no .bit): build it with Vivado, "
            f"'python build.py --board pynq-z2', and copy the package")):
        open_backend(pkg, board)
    assert board.writes == []                                 # refused before touching the board


@pytest.mark.parametrize(("changes", "message"), [
    ({"regs_base": "0x43c00000"}, "regs_base must be an integer >= 0, not '0x43c00000'"),
    ({"regs_size": True}, "regs_size must be an integer >= 4, not True"),
    ({"fclk0_mhz": 0}, "fclk0_mhz must be a positive number of MHz, not 0"),
])
def test_bad_manifest_values(tmp_path: Path, board: FakeBoard, changes: dict[str, object],
                             message: str) -> None:
    pkg = make_package(tmp_path / "bad", **changes)
    with pytest.raises(PackageError, match=exact(
            f"{pkg.path}/package.json: {message}; rebuild with 'python build.py --board "
            f"pynq-z2'")):
        open_backend(pkg, board)


def test_register_window_too_small_for_the_map(tmp_path: Path, board: FakeBoard) -> None:
    pkg = make_package(tmp_path / "small", regs_size=64)
    with pytest.raises(PackageError, match=exact(
            f"{pkg.path}/package.json: the register window 0x43c00000 + 0x40 must be 4-byte "
            f"aligned and hold the 84 bytes of the register map; rebuild with 'python build.py "
            f"--board pynq-z2'")):
        open_backend(pkg, board)


def test_manifest_without_fclk0(tmp_path: Path, board: FakeBoard) -> None:
    pkg = make_package(tmp_path / "old", fclk0_mhz=None)
    with pytest.raises(PackageError, match=exact(
            f"{pkg.path}/package.json has no 'fclk0_mhz'; it comes from a build with the Vivado "
            f"project of this version: rebuild with 'python build.py --board pynq-z2'")):
        open_backend(pkg, board)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"dma": "cma"}, "dma must be one of auto, udmabuf, pynq, not 'cma'"),
    ({"uio": "irq0"}, "uio must be 'auto', None or a device name such as 'uio0', not 'irq0'"),
    ({"dma_bytes": 0}, "dma_bytes must be a positive integer, not 0"),
    ({"poll_s": -1.0}, "poll_s must be a positive number of seconds, not -1.0"),
])
def test_bad_arguments(board: FakeBoard, pkg: BuildPackage, kwargs: dict[str, object],
                       message: str) -> None:
    with pytest.raises(ValueError, match=exact(message)):
        open_backend(pkg, board, **kwargs)


def test_no_dev_mem(board: FakeBoard, pkg: BuildPackage) -> None:
    (board.root / "dev/mem").unlink()
    with pytest.raises(BoardError, match=exact(
            "/dev/mem is missing: the kernel lacks CONFIG_DEVMEM, which register access "
            "needs")):
        open_backend(pkg, board, load=False)


def test_dev_mem_not_root(board: FakeBoard, pkg: BuildPackage,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def deny_mem(path: object, flags: int, *args: object) -> int:
        if str(path).endswith("dev/mem"):
            assert flags & os.O_SYNC                  # uncached, as device registers need
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", deny_mem)
    with pytest.raises(BoardError, match=exact(
            "cannot open /dev/mem: permission denied; run as root (sudo)")):
        open_backend(pkg, board, load=False)


def test_dev_mem_stand_in_too_short(board: FakeBoard, pkg: BuildPackage) -> None:
    with open(board.root / "dev/mem", "r+b") as f:
        f.truncate(REGS_BASE)
    with pytest.raises(BoardError, match=exact(
            f"/dev/mem is a {REGS_BASE}-byte file, too short to map 0x1000 bytes at "
            f"0x43c00000")):
        open_backend(pkg, board, load=False)


def test_dev_mem_not_mappable(board: FakeBoard, pkg: BuildPackage) -> None:
    (board.root / "dev/mem").unlink()
    os.mkfifo(board.root / "dev/mem")                         # opens, but cannot be mapped
    with pytest.raises(BoardError, match=exact(
            "cannot map 0x1000 bytes at 0x43c00000 of /dev/mem (No such device); run as root, "
            "on a kernel that lets /dev/mem reach the fabric (CONFIG_STRICT_DEVMEM allows "
            "device ranges)")):
        open_backend(pkg, board, load=False)
    (board.root / "dev/mem").unlink()
    (board.root / "dev/mem").mkdir()
    with pytest.raises(BoardError, match=exact("cannot open /dev/mem (Is a directory)")):
        open_backend(pkg, board, load=False)


def test_no_udmabuf_gives_the_insmod_line(board: FakeBoard, pkg: BuildPackage) -> None:
    import shutil
    shutil.rmtree(board.root / "sys/class/u-dma-buf")
    with pytest.raises(BoardError, match=exact(
            "no u-dma-buf buffer 'udmabuf0' (/sys/class/u-dma-buf/udmabuf0 is missing): load "
            "the driver with 'insmod u-dma-buf.ko udmabuf0=<bytes>' (e.g. udmabuf0=67108864 "
            "for 64 MiB) or declare a u-dma-buf node in the device tree; on a PYNQ image use "
            "dma='pynq'")):
        open_backend(pkg, board, load=False)


def test_udmabuf_faults(board: FakeBoard, pkg: BuildPackage) -> None:
    udma = "sys/class/u-dma-buf/udmabuf0"
    with pytest.raises(BoardError, match=exact(
            f"u-dma-buf udmabuf0 holds {BUF_BYTES} bytes, fewer than the {2 * BUF_BYTES} asked "
            f"for; reload it with 'insmod u-dma-buf.ko udmabuf0={2 * BUF_BYTES}'")):
        open_backend(pkg, board, load=False, dma_bytes=2 * BUF_BYTES)
    board.attr(f"{udma}/phys_addr", "none")
    with pytest.raises(BoardError, match=exact(
            f"cannot read a number from /{udma}/phys_addr: 'none'")):
        open_backend(pkg, board, load=False)
    board.attr(f"{udma}/phys_addr", "0xfff80000")
    with pytest.raises(BoardError, match=exact(
            "the DMA buffer lies at bus addresses 0xfff80000 to 0x100080000, beyond the "
            "accelerator's 32-bit reach; reserve it in low memory")):
        open_backend(pkg, board, load=False)
    board.attr(f"{udma}/phys_addr", f"0x{PHYS:x}")
    board.attr(f"{udma}/size", "0")
    with pytest.raises(BoardError, match=exact(
            f"/{udma}/size reads 0; reload u-dma-buf with 'udmabuf0=<bytes>'")):
        open_backend(pkg, board, load=False)
    board.attr(f"{udma}/size", str(BUF_BYTES))
    (board.root / "dev/udmabuf0").unlink()
    with pytest.raises(BoardError, match=exact(
            f"/dev/udmabuf0 is missing: u-dma-buf made /{udma} but no device node; check "
            f"udev")):
        open_backend(pkg, board, load=False)


def _mapped_from(root: Path) -> list[str]:
    with open("/proc/self/maps") as f:
        return [line for line in f if str(root) in line]


def test_failed_bring_up_releases_what_it_opened(board: FakeBoard, pkg: BuildPackage) -> None:
    """A fault after the registers are mapped unmaps them again."""
    with open_backend(pkg, board, load=False):
        assert len(_mapped_from(board.root)) == 2              # /dev/mem and /dev/udmabuf0
    assert _mapped_from(board.root) == []                      # close() unmapped both
    (board.root / "dev/udmabuf0").unlink()
    with pytest.raises(BoardError, match=r"^/dev/udmabuf0 is missing"):
        open_backend(pkg, board, load=False)
    assert _mapped_from(board.root) == []


# ---- the interrupt -----------------------------------------------------------------------------

@pytest.fixture
def uio_pty(board: FakeBoard) -> tuple[int, int]:
    """A pseudo-terminal standing in for /dev/uio0 (select works on it; what the backend
    writes arrives at the master, what the master writes is what the backend reads)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    (board.root / "dev/uio0").symlink_to(os.ttyname(slave))
    board.attr("sys/class/uio/uio0/name", "accel")
    yield master, slave
    os.close(master)
    os.close(slave)


def test_uio_interrupt(board: FakeBoard, pkg: BuildPackage, uio_pty: tuple[int, int]) -> None:
    master, _ = uio_pty
    with open_backend(pkg, board, uio="auto") as be:
        assert be.has_interrupt and be.uio == "uio0"
        assert run_sync(be.wait_interrupt(0.05)) is False             # nothing fired
        assert os.read(master, 4) == struct.pack("<I", 1)             # but it was unmasked
        os.write(master, struct.pack("<I", 1))                        # the kernel: 1 event
        assert run_sync(be.wait_interrupt(5.0)) is True
        assert os.read(master, 4) == struct.pack("<I", 1)
        timer = threading.Timer(0.05, os.write, (master, struct.pack("<I", 2)))
        timer.start()                                                 # fires while waiting
        t0 = be.now()
        assert run_sync(be.wait_interrupt(5.0)) is True
        assert 0.04 < be.now() - t0 < 4.0
        timer.join()
        os.read(master, 4)
        os.write(master, b"\1\0")                                     # not a UIO device
        with pytest.raises(BoardError, match=exact(
                "/dev/uio0 returned 2 bytes instead of the 4-byte interrupt count; is it a UIO "
                "device?")):
            run_sync(be.wait_interrupt(1.0))


def test_uio_found_by_name_or_address(board: FakeBoard) -> None:
    tree = Tree(board.root, BoardError)
    assert find_uio(tree, ("accel",), REGS_BASE) is None
    board.attr("sys/class/uio/uio1/name", "gpio")
    board.attr("sys/class/uio/uio1/maps/map0/addr", "0x41200000")
    board.attr("sys/class/uio/uio10/name", "axi")
    board.attr("sys/class/uio/uio10/maps/map0/addr", "0x43c00000")
    assert find_uio(tree, ("accel",), REGS_BASE) == "uio10"
    board.attr("sys/class/uio/uio2/name", "accel")
    assert find_uio(tree, ("accel",), REGS_BASE) == "uio2"
    assert find_uio(tree, ("other",), 0x80000000) is None


def test_uio_named_in_the_manifest(tmp_path: Path, board: FakeBoard) -> None:
    pkg = make_package(tmp_path / "named", uio_name="ilmpq")
    board.attr("sys/class/uio/uio3/name", "ilmpq")
    board.attr("dev/uio3", "")          # a regular file: opened, never waited on here
    with open_backend(pkg, board, uio="auto") as be:
        assert be.uio == "uio3"


def test_polling_without_uio(board: FakeBoard, pkg: BuildPackage) -> None:
    with open_backend(pkg, board, uio="auto") as be:
        assert be.has_interrupt is False and be.uio is None
        with pytest.raises(NotImplementedError, match=exact("the board backend has no "
                                                            "interrupt")):
            run_sync(be.wait_interrupt(0.01))
        t0 = be.now()
        run_sync(be.sleep(0.02))
        assert be.now() - t0 >= 0.02


def test_uio_asked_for_but_missing(board: FakeBoard, pkg: BuildPackage) -> None:
    with pytest.raises(BoardError, match=exact(
            "no UIO device uio4 (/sys/class/uio/uio4 is missing); pass uio='auto' or uio=None "
            "to poll")):
        open_backend(pkg, board, uio="uio4")
    board.attr("sys/class/uio/uio4/name", "accel")
    with pytest.raises(BoardError, match=exact(
            "/dev/uio4 is missing: /sys/class/uio/uio4 exists but not its device node; check "
            "udev")):
        open_backend(pkg, board, uio="uio4")


# ---- the PYNQ path (a stand-in pynq module) ----------------------------------------------------

class _FakeClocksMeta(type):
    @property
    def fclk0_mhz(cls) -> float:
        return cls._hz / 1e6

    @fclk0_mhz.setter
    def fclk0_mhz(cls, mhz: float) -> None:
        cls.set_calls.append(mhz)
        divisor = max(1, round(PLL_MHZ / mhz))
        cls._hz = int(PLL_MHZ * 1e6 / divisor)


def fake_pynq(fail_alloc: bool = False) -> types.ModuleType:
    module = types.ModuleType("pynq")
    module.overlays = []
    module.buffers = []

    class Clocks(metaclass=_FakeClocksMeta):
        _hz = 50_000_000
        set_calls: list[float] = []

    class Overlay:
        def __init__(self, bitfile: str, download: bool = True) -> None:
            if not Path(bitfile).with_suffix(".hwh").is_file():
                raise ValueError(f"no .hwh beside {bitfile}")
            module.overlays.append(bitfile)

    class Buffer(np.ndarray):
        def flush(self) -> None:
            self.flushes += 1

        def invalidate(self) -> None:
            self.invalidates += 1

        def freebuffer(self) -> None:
            self.freed = True

    def allocate(shape: tuple[int, ...], dtype: object) -> Buffer:
        if fail_alloc:
            raise RuntimeError("Failed to allocate Memory!")
        buf = np.zeros(shape, dtype).view(Buffer)
        buf.device_address, buf.flushes, buf.invalidates, buf.freed = 0x1800_0000, 0, 0, False
        module.buffers.append(buf)
        return buf

    module.Clocks, module.Overlay, module.allocate = Clocks, Overlay, allocate
    return module


def test_pynq_path(board: FakeBoard, pkg: BuildPackage, monkeypatch: pytest.MonkeyPatch) -> None:
    pynq = fake_pynq()
    monkeypatch.setitem(sys.modules, "pynq", pynq)
    with open_backend(pkg, board, dma="auto", dma_bytes=1 << 16) as be:
        assert be.mode == "pynq"
        assert pynq.overlays == [str(pkg.path / "accel.bit")]
        assert pynq.Clocks.set_calls == [100.0]
        assert be.clock_mhz == 100.0
        mem = be.memory
        assert isinstance(mem, PynqMemory)
        assert (mem.phys_addr, mem.size) == (0x1800_0000, 1 << 16)
        mem.write(10, b"abc")
        assert mem.read(9, 5) == b"\0abc\0"
        mem.sync_for_device()
        mem.sync_for_cpu()
        buf = pynq.buffers[0]
        assert (buf.flushes, buf.invalidates) == (1, 1)
        run_sync(be.write_reg(pkg.regmap.offset("SCRATCH"), 7))       # registers: /dev/mem
        assert board.reg(pkg.regmap.offset("SCRATCH")) == 7
    assert buf.freed
    assert not any("fpga_manager" in rel or "fclk" in rel or "u-dma-buf" in rel
                   for rel, _ in board.writes)


def test_pynq_clock_above_the_build(tmp_path: Path, board: FakeBoard,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pynq = fake_pynq()
    monkeypatch.setitem(sys.modules, "pynq", pynq)
    pkg = make_package(tmp_path / "fast", clock_mhz=142.0, fclk0_mhz=142.0)
    with pytest.raises(ClockTooFastError, match=r"^FCLK0 runs at 142\.857 MHz after asking"):
        open_backend(pkg, board, dma="pynq")
    assert pynq.buffers == []                                 # nothing allocated


def test_pynq_faults(tmp_path: Path, board: FakeBoard, pkg: BuildPackage,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BoardError, match=exact(
            "dma='pynq' needs the pynq package (PYNQ images have it); on plain Linux use "
            "dma='udmabuf' with u-dma-buf")):
        open_backend(pkg, board, dma="pynq")                  # the no_pynq fixture is active
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq(fail_alloc=True))
    with pytest.raises(BoardError, match=exact(
            "PYNQ could not allocate 67108864 bytes of contiguous memory (Failed to allocate "
            "Memory!); a PYNQ image's CMA holds 128 MiB: ask for fewer (dma_bytes) or free "
            "other buffers")):
        open_backend(pkg, board, dma="pynq")
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq())
    renamed = make_package(tmp_path / "hwh", hwh="design.hwh")
    (renamed.path / "accel.hwh").rename(renamed.path / "design.hwh")
    with pytest.raises(PackageError, match=exact(
            "PYNQ's Overlay reads accel.hwh beside accel.bit, but the package's hardware "
            "handoff is design.hwh; rename it to accel.hwh")):
        open_backend(renamed, board, dma="pynq")

    def refuse(bitfile: str) -> None:
        raise RuntimeError("Bitstream is not compatible with this device")

    monkeypatch.setattr(sys.modules["pynq"], "Overlay", refuse)
    with pytest.raises(BoardError, match=exact(
            "PYNQ could not load accel.bit: RuntimeError: Bitstream is not compatible with this "
            "device")):
        open_backend(pkg, board, dma="pynq")


def test_pynq_buffer_without_an_address(board: FakeBoard, pkg: BuildPackage,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pynq = fake_pynq()
    pynq.allocate = lambda shape, dtype: np.zeros(shape, dtype)     # a plain array
    monkeypatch.setitem(sys.modules, "pynq", pynq)
    with pytest.raises(BoardError, match=exact(
            "PYNQ's buffer has neither device_address nor physical_address; this pynq version "
            "is not supported (pynq 2.5 or later)")):
        open_backend(pkg, board, dma="pynq")


def test_pynq_path_only_when_chosen(board: FakeBoard, pkg: BuildPackage,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """dma='udmabuf' takes the plain-Linux path even where pynq is installed."""
    pynq = fake_pynq()
    monkeypatch.setitem(sys.modules, "pynq", pynq)
    with open_backend(pkg, board, dma="udmabuf") as be:
        assert be.mode == "linux"
        assert isinstance(be.memory, UdmaBufMemory)
    assert (pynq.overlays, pynq.buffers, pynq.Clocks.set_calls) == ([], [], [])


def test_importing_the_board_module_does_not_import_pynq(tmp_path: Path) -> None:
    fake = tmp_path / "site" / "pynq"
    fake.mkdir(parents=True)
    marker = tmp_path / "imported"
    (fake / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"),
                                                       str(Path(__file__).parents[1])]))
    subprocess.run([sys.executable, "-c", "import firmware.board, firmware.bitstream"],
                   env=env, check=True)
    assert not marker.exists()
    subprocess.run([sys.executable, "-c", "import pynq"], env=env, check=True)
    assert marker.exists()                                    # the stand-in does mark imports


# ---- the driver over the board backend ---------------------------------------------------------

def _write_identity(board: FakeBoard, pkg: BuildPackage, ident: int) -> None:
    regmap = pkg.regmap
    board.set_reg(regmap.offset("MAGIC"), MAGIC)
    board.set_reg(regmap.offset("VERSION"), REGMAP_VERSION)
    board.set_reg(regmap.offset("ID"), ident)


def test_driver_identity_check_over_the_board(board: FakeBoard, pkg: BuildPackage) -> None:
    _write_identity(board, pkg, pkg.cfg.config_hash)
    board.set_reg(pkg.regmap.offset("WINDOW_SIZE"), 0xFFFF)
    with Accelerator(open_backend(pkg, board), pkg) as acc:
        assert acc.backend.clock_mhz == 100.0
        regmap = pkg.regmap
        assert board.reg(regmap.offset("WINDOW_SIZE")) == 0    # closed until a network loads
        assert board.reg(regmap.offset("WINDOW_BASE")) == PHYS
        assert board.reg(regmap.offset("IRQ_ENABLE")) == 0     # polling: no interrupt wanted


def test_driver_refuses_another_bitstream(board: FakeBoard, pkg: BuildPackage) -> None:
    wrong = pkg.cfg.config_hash ^ 0x1
    _write_identity(board, pkg, wrong)
    backend = open_backend(pkg, board)
    with pytest.raises(BitstreamMismatchError, match=exact(
            f"the bitstream was built from configuration {wrong:08x}, but this register map is "
            f"for 'pynq-z2' ({pkg.cfg.config_hash:08x}); rebuild with 'python build.py --board "
            f"pynq-z2' or load the matching build (package {pkg.path}; rebuild with 'python "
            f"build.py --board pynq-z2')")):
        Accelerator(backend, pkg)
    assert board.reg(pkg.regmap.offset("WINDOW_BASE")) == 0   # nothing written after the refusal
    backend.close()


def test_driver_finds_no_accelerator(board: FakeBoard, pkg: BuildPackage) -> None:
    with open_backend(pkg, board) as backend, pytest.raises(BitstreamMismatchError, match=(
            r"^no accelerator at this address: MAGIC reads 0x00000000, expected 0x494c4d50")):
        Accelerator(backend, pkg)


def _network(pkg: BuildPackage, tmp_path: Path, **kwargs: object):
    from firmware.compile import compile_network
    from quant.random_model import random_resnet18

    model = random_resnet18(3, **kwargs)
    return compile_network(model, pkg, model_path=model.save(tmp_path / "model.npz"))


def test_driver_times_out_over_the_board(board: FakeBoard, pkg: BuildPackage,
                                         tmp_path: Path) -> None:
    """An accelerator that never finishes (the fake's STATUS never reads done): the driver
    waits its timeout, soft-resets, says which layer hung and that it did not stop."""
    from firmware.driver import AcceleratorTimeout

    net = _network(pkg, tmp_path, input_shape=(1, 8, 8), width=0.125)
    _write_identity(board, pkg, pkg.cfg.config_hash)
    with Accelerator(open_backend(pkg, board), pkg) as acc:
        acc.load(net)
        assert board.reg(pkg.regmap.offset("WINDOW_SIZE")) == net.size
        layer = net.layers[0]["name"]
        with pytest.raises(AcceleratorTimeout, match=(
                rf"^layer {layer} \(tile 1 of 1\) did not finish within 1 s \(many times the "
                r"cycle model's estimate\); the accelerator was soft-reset but did not stop: "
                r"reload the bitstream$")):
            acc.infer(np.zeros(net.input_shape, np.uint8))
        ctrl = pkg.regmap["CTRL"]
        assert board.reg(pkg.regmap.offset("DESC_COUNT")) == net.chain[1]
        # CTRL is write-only: the fake's word keeps the last command, the soft reset.
        assert board.reg(pkg.regmap.offset("CTRL")) == ctrl.pack({"soft_reset": 1})


def test_driver_buffer_too_small_over_the_board(board: FakeBoard, pkg: BuildPackage,
                                                tmp_path: Path) -> None:
    from firmware.driver import BufferTooSmallError

    net = _network(pkg, tmp_path, input_shape=(3, 64, 64), width=0.5, small_stem=False)
    assert net.size > BUF_BYTES
    _write_identity(board, pkg, pkg.cfg.config_hash)
    before = (board.root / "dev/udmabuf0").read_bytes()
    mib = -(-net.size // (1 << 20))
    with Accelerator(open_backend(pkg, board), pkg) as acc, \
            pytest.raises(BufferTooSmallError, match=exact(
                f"the network needs {net.size:,} bytes of DMA memory, the buffer has "
                f"{BUF_BYTES:,}; give it at least {mib} MiB (u-dma-buf: 'insmod u-dma-buf.ko "
                f"udmabuf0={mib << 20}'; PYNQ: the driver allocates it)")):
        acc.load(net)
    assert (board.root / "dev/udmabuf0").read_bytes() == before       # nothing written
    assert board.reg(pkg.regmap.offset("WINDOW_SIZE")) == 0           # the window stays shut
