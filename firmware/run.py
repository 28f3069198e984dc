"""Run a compiled network on the accelerator: ``python -m firmware.run``.

    python -m firmware.run --package DIR --network FILE (--image PATH... | --digits N)
                           [--backend board|emu] [--per-layer] [--check [--model FILE]]

prints the top-5 classes of each image, the cycles and milliseconds per layer
(``--per-layer``), the total time and images per second; ``--check`` compares every logit
with the golden model, bit for bit, and exits 1 on any difference. Images are ``.npy``
arrays (C, H, W) or (H, W) of unsigned pixels, or binary PGM/PPM files; ``--digits N`` takes
the first N images of the digits test split (the package's ``digits-test.npz`` on a board,
scikit-learn on a PC). Errors are one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .backend import Backend
from .bitstream import BitstreamError
from .compile import CompiledNetwork, CompileError
from .driver import (
    Accelerator,
    AcceleratorError,
    BitstreamMismatchError,
    BufferTooSmallError,
    ClockError,
    RunResult,
)
from .package import BuildPackage, PackageError

__all__ = ["digits_images", "load_image", "main"]

#: The digits test split as the board reads it (written into deploy/ on the PC).
DIGITS_FILE = "digits-test.npz"


class InputError(ValueError):
    """An input image that cannot be read."""


def load_image(path: str | Path) -> np.ndarray:
    """A (C, H, W) array of unsigned pixels from ``.npy`` or binary PGM (P5) / PPM (P6)."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            image = np.load(path, allow_pickle=False)
            if image.ndim == 2:
                image = image[None]
        elif path.suffix in (".pgm", ".ppm"):
            image = _read_pnm(path.read_bytes(), path)
        else:
            raise InputError(f"{path}: unknown image type {path.suffix!r}; use .npy (C, H, W) "
                             f"or binary .pgm/.ppm")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
    if image.ndim != 3 or not np.issubdtype(image.dtype, np.integer):
        raise InputError(f"{path}: expected integer pixels of shape (C, H, W), got "
                         f"{image.dtype} {image.shape}")
    return image


def _read_pnm(raw: bytes, path: Path) -> np.ndarray:
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4:
        while pos < len(raw) and raw[pos:pos + 1].isspace():
            pos += 1
        if raw[pos:pos + 1] == b"#":
            pos = raw.index(b"\n", pos) + 1
            continue
        end = pos
        while end < len(raw) and not raw[end:end + 1].isspace():
            end += 1
        if end == pos:
            raise ValueError("truncated PGM/PPM header")
        tokens.append(raw[pos:end])
        pos = end
    magic, w, h, maxval = tokens[0], int(tokens[1]), int(tokens[2]), int(tokens[3])
    if magic not in (b"P5", b"P6") or maxval > 255:
        raise ValueError("only binary 8-bit PGM (P5) and PPM (P6) are read")
    c = 1 if magic == b"P5" else 3
    data = np.frombuffer(raw[pos + 1:pos + 1 + w * h * c], np.uint8)
    if data.size != w * h * c:
        raise ValueError("truncated pixel data")
    return data.reshape(h, w, c).transpose(2, 0, 1)


def digits_images(n: int, package: BuildPackage) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` digits test images (uint8 (N, 1, 8, 8)) and labels."""
    path = package.path / DIGITS_FILE
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
    else:
        try:
            from quant.data import digits
        except ImportError:
            raise InputError(f"{path} is missing and scikit-learn/torch are not installed "
                             f"here; copy the package's deploy/ folder, which holds it") from None
        images, labels = digits().test_arrays()
    if not 0 < n <= len(images):
        raise InputError(f"--digits takes 1 to {len(images)} images, not {n}")
    return images[:n], labels[:n]


def _progress(items: Iterable, total: int, label: str) -> Iterator:
    try:
        from tqdm import tqdm
    except ImportError:                   # on a board image without tqdm: a plain counter
        for i, item in enumerate(items, 1):
            print(f"\r{label}: {i}/{total}", end="" if i < total else "\n", file=sys.stderr,
                  flush=True)
            yield item
        return
    yield from tqdm(items, total=total, desc=label, unit="image", disable=total < 2)


def _backend(args: argparse.Namespace, package: BuildPackage, net: CompiledNetwork
             ) -> Backend:
    if args.backend == "emu":
        from .emu import EmuBackend
        return EmuBackend(package, memory_size=-(-net.size // 4096) * 4096)
    from .board import BoardBackend
    return BoardBackend(package, dma_bytes=net.size)


def _report(results: list[RunResult], args: argparse.Namespace, net: CompiledNetwork,
            mhz: float, wall: float, emulated: bool) -> None:
    first = results[0]
    if args.per_layer and first.layers:
        what = "modelled cycles" if emulated else "cycles"
        print(f"\n{'layer':28s} {'op':12s} {'tiles':>5s} {what:>15s} {'ms':>9s}"
              + ("" if emulated else f" {'modelled':>12s}"))
        for layer in first.layers:
            cycles = layer.modelled_cycles if emulated else layer.cycles
            print(f"{layer.name:28s} {layer.op:12s} {layer.tiles:5d} {cycles:15,d} "
                  f"{cycles / (mhz * 1e3):9.3f}"
                  + ("" if emulated else f" {layer.modelled_cycles:12,d}"))
    modelled = net.modelled_cycles
    if emulated:
        print(f"\naccelerator time: {modelled / (mhz * 1e3):.3f} ms per image (cycle model at "
              f"{mhz:g} MHz; the emulator models no time)")
    else:
        ms = np.mean([r.ms for r in results])
        print(f"\naccelerator time: {ms:.3f} ms per image ({first.cycles:,} cycles at "
              f"{mhz:g} MHz; cycle model: {modelled / (mhz * 1e3):.3f} ms)")
    print(f"{len(results)} image(s) in {wall:.2f} s: {len(results) / wall:.1f} images/s "
          f"(packing, run and unpacking on the {args.backend} backend)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", required=True, metavar="DIR",
                        help="build package (build/<board>-<hash>, or deploy/ on a board)")
    parser.add_argument("--network", required=True, metavar="FILE",
                        help="compiled network (python -m firmware.compile)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", nargs="+", metavar="PATH", help=".npy, .pgm or .ppm images")
    source.add_argument("--digits", type=int, metavar="N",
                        help="the first N images of the digits test split")
    parser.add_argument("--backend", choices=("board", "emu"), default="board",
                        help="the Zynq board (default) or the functional emulator")
    parser.add_argument("--per-layer", action="store_true",
                        help="run each layer as its own chain and print its cycles")
    parser.add_argument("--check", action="store_true",
                        help="compare every logit with the golden model; exit 1 on a mismatch")
    parser.add_argument("--model", metavar="FILE",
                        help="the model file for --check (default: the compiled one, beside "
                             "the network file)")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (PackageError, CompileError, InputError, BitstreamMismatchError, ClockError,
            BufferTooSmallError, AcceleratorError, BitstreamError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    package = BuildPackage.load(args.package)
    net = CompiledNetwork.load(args.network)
    net.check_package(package)
    labels = None
    if args.digits is not None:
        images, labels = digits_images(args.digits, package)
    else:
        images = [load_image(p) for p in args.image]
    expected = None
    if args.check:
        from quant import golden
        from quant.model_format import ModelFormatError, QModel
        model_path = Path(args.model or Path(args.network).with_name(net.manifest["model"]["file"]))
        net.check_model(model_path)
        try:
            model = QModel.load(model_path)
        except ModelFormatError as exc:
            raise CompileError(str(exc)) from None
        expected = golden.run(model, np.stack([np.asarray(i) for i in images]))
    backend = _backend(args, package, net)
    with Accelerator(backend, package) as acc:
        acc.load(net)
        results: list[RunResult] = []
        start = time.perf_counter()
        for i, image in enumerate(_progress(images, len(images), "images")):
            results.append(acc.infer(image, per_layer=args.per_layer and i == 0))
        wall = time.perf_counter() - start
        mhz = backend.clock_mhz
    for i, r in enumerate(results):
        top = ", ".join(str(c) for c in r.top5)
        truth = f"  (label {labels[i]})" if labels is not None else ""
        print(f"image {i}: top-5 {top}{truth}")
    _report(results, args, net, mhz, wall, emulated=args.backend == "emu")
    if labels is not None:
        correct = sum(int(r.top5[0] == y) for r, y in zip(results, labels, strict=True))
        print(f"top-1: {correct}/{len(results)} = {100 * correct / len(results):.2f} %")
    if expected is not None:
        bad = [i for i, r in enumerate(results) if not np.array_equal(r.logits, expected[i])]
        print(f"check against the golden model: {len(bad)} mismatching image(s) of "
              f"{len(results)}" + (f" (first: image {bad[0]})" if bad else ", bit-exact"))
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
