"""Full-size ResNet-18 layers in RTL on the board presets, under Verilator: bit-exact against
the golden model, and the cycles the accelerator counts against the cycle model's.

Each layer is a one-layer network with the layer's real shape (its input is the size it has
in ResNet-18 at 224 x 224, as the unsigned activations it reads there), random weights in
the preset's ratio and a random input; it is compiled by ``firmware.compile`` and run by the
firmware's driver (``sim.full_size_bench``), so it is planned, tiled and started exactly as
on the board. The DDR of the bench answers each read burst after the latency the cycle model
is given (``sim.test_network.bench_timing``).

    python -m sim.full_size                        # both presets, both layers (minutes)
    python -m sim.full_size --board zc706 --layer layer4.0.conv2

The same runs are the slow tests of ``sim/test_full_size.py`` (``pytest --runslow``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from firmware.compile import compile_network
from firmware.package import BuildPackage
from quant import golden
from quant.model_format import FORMAT_NAME, FORMAT_VERSION, QModel
from quant.random_model import random_conv_layer, random_images
from quant.resnet_graph import layer_shapes, resnet18_nodes
from rtl.boards import BOARDS
from rtl.config import HwConfig, preset
from rtl.interface.descriptor import descriptor_bytes, split_descriptors

__all__ = ["BOARD_NAMES", "LAYERS", "TOLERANCE", "layer_model", "main", "run_full_size"]

#: The layers run per preset: the first residual stage's conv (56 x 56 x 64, several row
#: tiles) and the last stage's (7 x 7 x 512, one tile, many passes).
LAYERS = ("layer1.0.conv1", "layer4.0.conv2")
BOARD_NAMES = ("pynq-z2", "zc706")
#: How far the cycle model may be from the accelerator's count, per layer.
TOLERANCE = 0.03
#: Cycles between two progress lines of the bench.
PROGRESS_CYCLES = 50_000
#: Where the network sits in the bench's DDR (a bus address the relocation must handle).
BASE = 0x10000
IMAGE = 224


def layer_model(name: str, ratio: tuple[int, int, int], *, seed: int = 0
                ) -> tuple[QModel, np.ndarray]:
    """A one-layer model of ResNet-18's conv ``name`` at full size (random weights with
    ``ratio``'s filter mix, calibrated requantization) and a random input for it: the
    layer's activations, or for the stem (``conv1``) 8-bit pixels, which the firmware
    folds (``rtl.interface.stem``); the stem with its max-pool, which runs in its
    write-back where that pays (zc706)."""
    nodes = resnet18_nodes(width=1.0, num_classes=1000, in_channels=3, small_stem=False)
    shapes = layer_shapes(nodes, IMAGE, 3)
    node = dict(next(n for n in nodes if n["name"] == name))
    if node["op"] != "conv":
        raise ValueError(f"{name} is a {node['op']}, not a conv")
    in_shape = shapes[node["inputs"][0]]
    act_bits = 4
    bits = 8 if node["inputs"] == ["input"] else act_bits
    node["inputs"] = ["input"]
    rng = np.random.default_rng(seed)
    _, _, params, _ = random_conv_layer(
        rng, cin=node["in_channels"], cout=node["out_channels"], kernel=node["kernel"],
        stride=node["stride"], pad=node["padding"], size=in_shape[1], ratio=ratio,
        relu=node["relu"], in_bits=bits, act_bits=act_bits)
    layer = [node]
    if name == "conv1":
        layer.append(next(n for n in nodes if n["op"] == "maxpool"))
    manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "act_bits": act_bits,
                "input_bits": bits, "input_shape": list(in_shape), "output": layer[-1]["name"],
                "nodes": layer, "meta": {"generator": "sim.full_size", "seed": seed,
                                         "ratio": list(ratio)}}
    model = QModel(manifest, {f"{name}.{k}": v for k, v in params.items()})
    model.validate()
    image = random_images(rng, 1, in_shape, bits=bits)[0]
    return model, image


def run_full_size(board: str, layers: tuple[str, ...] = LAYERS, *, seed: int = 0
                  ) -> dict[str, Any]:
    """Build the preset's accelerator under Verilator and run ``layers`` through it.

    Returns ``{"board", "timings": {"convert_s", "build_s", "test_s"}`` (wall seconds of
    elaboration and Verilog, Verilator's build, the simulation),
    "layers": [{"name", "tiles", "cycles", "modelled", "error", "bit_exact", "wall_s",
    "cycles_per_s"}]}``; raises if a layer is not bit-exact (the bench fails).
    """
    from cocotb_tools.runner import get_results

    from rtl.cycle_model import chain_cycles
    from rtl.engine import Accelerator
    from rtl.flatten import FlatTop
    from sim.runner import build_dir, run_bench
    from sim.test_network import READ_LATENCY, bench_timing

    cfg: HwConfig = preset(board)
    acc = Accelerator(cfg=cfg)
    package = BuildPackage.of(cfg, acc.regmap)
    out = build_dir(f"full-{board}")
    out.mkdir(parents=True, exist_ok=True)
    jobs, ram = [], 0
    for k, name in enumerate(layers):
        model, image = layer_model(name, BOARDS[board].ratio, seed=seed + k)
        files = {k: out / f"{name}.{k}" for k in ("model.npz", "ilmpq.npz", "image.npy",
                                                   "expected.npy")}
        path = model.save(files["model.npz"])
        net = compile_network(model, package, model_path=path)
        net.save(files["ilmpq.npz"])
        np.save(files["image.npy"], image)
        np.save(files["expected.npy"], golden.run(model, image[None])[0])
        offset, count = net.chain
        ddr = net.relocated(BASE, cfg.axi_addr_width)     # the network as it sits in DDR
        descs = split_descriptors(ddr[offset:offset + count * descriptor_bytes()])
        jobs.append({"name": name, "network": str(files["ilmpq.npz"]),
                     "image": str(files["image.npy"]), "expected": str(files["expected.npy"]),
                     "modelled": chain_cycles(cfg, descs, bench_timing(),
                                              memory=[(BASE, ddr)])})
        ram = max(ram, net.size)
    size = -(-ram // (1 << 20)) * (1 << 20)
    results = out / "results.json"
    results.unlink(missing_ok=True)
    timings: dict[str, float] = {}
    try:
        xml = run_bench(FlatTop(acc, Accelerator.bus_prefixes(cfg)), toplevel="accel_top",
                  test_module="sim.full_size_bench", case=f"full-{board}",
                  params={"config": cfg.to_json(), "regmap": acc.regmap.to_json(),
                          "layers": jobs, "base": BASE, "size": size,
                          "ram": BASE + size + (1 << 16), "read_latency": READ_LATENCY,
                          "progress_cycles": PROGRESS_CYCLES, "results": str(results)},
                  simulator="verilator", timings=timings)
    finally:
        print(f"{board}: " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in timings.items()))
    failed = get_results(xml)[1]
    if failed or not results.exists():
        raise AssertionError(f"{board}: the full-size bench failed (log above; {xml})")
    rows = []
    for job, got in zip(jobs, json.loads(results.read_text()), strict=True):
        cycles, modelled = got["cycles"], job["modelled"]
        rows.append({**got, "modelled": modelled, "error": (modelled - cycles) / cycles,
                     "cycles_per_s": cycles / got["wall_s"]})
    return {"board": board, "timings": timings, "layers": rows}


def markdown(runs: list[dict[str, Any]]) -> str:
    """The runs as a table (one row per layer and preset)."""
    lines = ["| board | layer | tiles | RTL cycles | model | model error | bit-exact | "
             "wall | cycles/s |", "|---|---|---:|---:|---:|---:|---|---:|---:|"]
    for run in runs:
        for r in run["layers"]:
            lines.append(f"| {run['board']} | {r['name']} | {r['tiles']} | {r['cycles']:,} | "
                         f"{r['modelled']:,} | {100 * r['error']:+.2f} % | "
                         f"{'yes' if r['bit_exact'] else 'no'} | {r['wall_s']:.0f} s | "
                         f"{r['cycles_per_s']:,.0f} |")
    lines += ["", "| board | elaborate + Verilog | Verilator build | simulation |",
              "|---|---:|---:|---:|"]
    for run in runs:
        t = run["timings"]
        lines.append(f"| {run['board']} | {t['convert_s']:.0f} s | {t['build_s']:.0f} s | "
                     f"{t['test_s']:.0f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.full_size", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--board", action="append", choices=BOARD_NAMES,
                        help="preset to run (repeatable; default: all)")
    parser.add_argument("--layer", action="append",
                        help=f"ResNet-18 conv to run (repeatable; default: {', '.join(LAYERS)})")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    runs = [run_full_size(b, tuple(args.layer or LAYERS)) for b in args.board or BOARD_NAMES]
    print(markdown(runs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    worst = max(abs(r["error"]) for run in runs for r in run["layers"])
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
