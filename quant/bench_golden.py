"""Benchmark: one 224x224 image through a full-width ResNet-18 in the golden model.

    python -m quant.bench_golden [--repeat 3] [--width 1.0] [--size 224]

Prints the median wall time of ``golden.run`` (the target is at most 3 s on a 2-core machine).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from . import golden
from .random_model import random_images, random_resnet18


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    shape = (3, args.size, args.size)
    model = random_resnet18(0, input_shape=shape, width=args.width, num_classes=1000,
                            small_stem=False, calib_images=1)
    macs = 0
    for name, info in model.infer().items():
        if name != "input" and model.node(name)["op"] in ("conv", "fc"):
            macs += int(np.prod(info.shape)) * model.params(name)["weight"][0].size
    image = random_images(np.random.default_rng(1), 1, shape)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        golden.run(model, image)
        times.append(time.perf_counter() - start)
    best = statistics.median(times)
    print(f"golden ResNet-18 {args.size}x{args.size} width {args.width}: {macs / 1e9:.2f} GMAC, "
          f"median {best:.2f} s over {args.repeat} runs ({macs / best / 1e9:.2f} GMAC/s)")


if __name__ == "__main__":
    main()
