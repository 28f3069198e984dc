"""The ``deploy/`` folder of a build package: exactly what a board needs, nothing else.

``python -m firmware.deploy --package build/<board>-<hash>`` (``build.py`` runs it at the
end of every build) writes ``deploy/`` with the firmware and the plain-Python modules it
imports (numpy and the standard library only), the package's ``hwconfig.json``,
``regmap.json`` and ``package.json``, the bitstream files when the build has them, the
digits test images for ``--digits``, and a README. Copy the folder to the board and run
``python3 -m firmware.run --package . ...`` inside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

__all__ = ["BOARD_MODULES", "REPO_ROOT", "board_module_files", "write_deploy"]

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Source files the board runs, relative to the repository root (globs). Everything here
#: imports only numpy, the standard library and each other (tests/test_firmware_deploy.py
#: runs the emulator from a deploy folder with Amaranth and torch made unimportable).
BOARD_MODULES = (
    "firmware/*.py",
    "rtl/__init__.py", "rtl/config.py", "rtl/boards.py", "rtl/interface/*.py",
    "quant/__init__.py", "quant/contract.py", "quant/schemes.py", "quant/model_format.py",
    "quant/golden.py", "quant/fit.py",
)
_PACKAGE_FILES = ("hwconfig.json", "regmap.json", "package.json", "config_hash.txt")
_HARDWARE_FILES = ("accel.bin", "accel.bit", "accel.hwh")


def board_module_files() -> list[Path]:
    """The board's source files, relative to the repository root, sorted."""
    files = {p.relative_to(REPO_ROOT) for pattern in BOARD_MODULES
             for p in REPO_ROOT.glob(pattern)}
    return sorted(files)


_README = """\
# Accelerator firmware for {board} (configuration {config_hash})

Copy this folder to the board (e.g. `scp -r deploy xilinx@pynq:accel`) and run, as root:

```sh
cd accel
python3 -m firmware.compile --help     # (on the PC) compile a model for this package
sudo python3 -m firmware.run --package . --network NET.ilmpq.npz --digits 50 \\
    --check --model MODEL.npz
```

Needs Python 3.10 or later and numpy; with PYNQ (pynq 3.x) the bitstream is loaded through
`pynq.Overlay` and DMA memory comes from `pynq.allocate`; without it, the bitstream goes
through the Linux FPGA manager (`accel.bin`) and DMA memory comes from u-dma-buf
(`insmod u-dma-buf.ko udmabuf0=<bytes>`). The network needs the number of bytes
`python3 -m firmware.compile` prints. See the project README, "Run on the board".

Files: `firmware/`, `rtl/`, `quant/` (plain Python: the driver, the hardware/software
interface, the golden model), `hwconfig.json`, `regmap.json`, `package.json` (register base
address, clocks), {hardware}, `{digits}` (digits test images for `--digits`).
"""


def write_deploy(package_dir: str | Path) -> Path:
    """(Re)write ``<package_dir>/deploy``; returns its path."""
    package_dir = Path(package_dir)
    out = package_dir / "deploy"
    tmp = package_dir / "deploy.part"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for rel in board_module_files():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO_ROOT / rel, tmp / rel)
    for name in _PACKAGE_FILES:
        if (package_dir / name).is_file():
            shutil.copyfile(package_dir / name, tmp / name)
    hardware = [n for n in _HARDWARE_FILES if (package_dir / n).is_file()]
    for name in hardware:
        shutil.copyfile(package_dir / name, tmp / name)
    digits = _write_digits(tmp)
    manifest = json.loads((package_dir / "package.json").read_text())
    (tmp / "README.md").write_text(_README.format(
        board=manifest.get("board", "?"), config_hash=manifest.get("config_hash", "?"),
        hardware=", ".join(f"`{n}`" for n in hardware) if hardware else
        "no bitstream yet (build it with Vivado, then run `python -m firmware.deploy` again)",
        digits=digits or "no digits file"))
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return out


def _write_digits(folder: Path) -> str | None:
    """The digits test split (uint8 images, labels) for ``--digits`` on a board."""
    try:
        from quant.data import digits
    except ImportError:          # no torch/scikit-learn here: the board reads images instead
        return None
    from .run import DIGITS_FILE
    images, labels = digits().test_arrays()
    import numpy as np
    np.savez_compressed(folder / DIGITS_FILE, images=images, labels=labels)
    return DIGITS_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware.deploy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", required=True, metavar="DIR",
                        help="build package folder (build/<board>-<hash>)")
    args = parser.parse_args(argv)
    package = Path(args.package)
    if not (package / "package.json").is_file():
        print(f"error: {package} is not a build package (no package.json); build one with "
              f"'python build.py --board <board>'", file=sys.stderr)
        return 2
    try:
        out = write_deploy(package)
    except OSError as exc:
        print(f"error: cannot write {package / 'deploy'}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    files = sum(1 for p in out.rglob("*") if p.is_file())
    print(f"{out}: {files} files for the board")
    return 0


if __name__ == "__main__":
    sys.exit(main())
