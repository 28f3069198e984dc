"""Host-side costs on the board per image: ``python -m firmware.bench [--board zc706]``.

Prints the median time to pack (fold and pack) a 224 x 224 x 3 image into the input buffer's
DDR words and to unpack 1000 logits, for a full-width ResNet-18 compiled for the board's
preset (target: packing at most 5 ms on a 2-core PC; the board's Cortex-A9 is slower).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware.bench", description=__doc__)
    parser.add_argument("--board", default="zc706", help="board preset (default: zc706)")
    parser.add_argument("--repeat", type=int, default=50, help="runs per figure (default 50)")
    args = parser.parse_args(argv)
    import tempfile
    from pathlib import Path

    from quant.random_model import random_resnet18
    from rtl.config import preset
    from rtl.interface.regmap import build_regmap

    from .compile import compile_network
    from .package import BuildPackage

    cfg = preset(args.board)
    package = BuildPackage.of(cfg, build_regmap(cfg))
    model = random_resnet18(0, input_shape=(3, 224, 224), width=1.0, num_classes=1000,
                            calib_images=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = model.save(Path(tmp) / "model.npz")
        net = compile_network(model, package, model_path=path)
    image = np.random.default_rng(0).integers(0, 256, (3, 224, 224), dtype=np.uint8)
    raw = bytes(net.output_nbytes())
    pack = _median_ms(lambda: net.input_bytes(image), args.repeat)
    unpack = _median_ms(lambda: net.logits(raw), args.repeat)
    fold = "folded by space-to-depth, " if net.manifest["input"]["fold"] else ""
    print(f"{args.board}: pack a 224x224x3 image ({fold}{len(net.input_bytes(image)):,} bytes): "
          f"{pack:.2f} ms; unpack {net.num_classes} logits: {unpack:.3f} ms "
          f"(median of {args.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
