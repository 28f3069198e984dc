"""pytest entry for the whole-network bench: a reduced ResNet-18 through the accelerator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from firmware.compile import compile_network
from firmware.package import BuildPackage
from quant.random_model import random_images, random_resnet18
from rtl.config import HwConfig
from rtl.engine import Accelerator
from rtl.flatten import FlatTop
from sim.runner import build_dir, run_bench

#: A small engine (8-lane vectors, 4 + 4 filters per pass) with buffers small enough that
#: the early layers of a digits-sized ResNet-18 run as several row tiles, each band in half
#: the act buffer (loaded while the tile before computes).
CFG = HwConfig(name="network-sim", part="xc7z020clg400-1", clock_mhz=100.0, pot_rows=4,
               pot_cols=8, dsp_rows=4, dsp_cols=8, max_channels=128, max_spatial=64,
               act_buf_depth=64, weight_buf_depth=256, out_buf_depth=16, result_lanes=4)
#: The default engine with three weight masters.
CFG_PORTS = CFG.replace(name="network-sim-ports", weight_ports=3)
#: The same engine with buffers for the 32x32 stem (which still runs in row tiles) and for
#: the trained digits model.
CFG_STEM = HwConfig.from_dict({**CFG.to_dict(), "name": "network-sim-stem",
                               "act_buf_depth": 256, "out_buf_depth": 128})
#: The default engine with 4-bit arrays (four lanes per DSP48E1): the first layer's pixels
#: arrive as nibbles (``split_input``, docs/engine.md).
CFG_SPLIT = CFG.replace(name="network-sim-split", split_input=True, dsp_pack=4)
#: The standard-stem engine so built, its act buffer doubled: a band of the split stem's
#: output row is 304 vectors (4 rows of 19 pixels of 4 chunks).
CFG_STEM_SPLIT = CFG_STEM.replace(name="network-sim-stem-split", split_input=True, dsp_pack=4,
                                  act_buf_depth=512)


#: How far the cycle model (rtl/cycle_model.py) may be from the RTL's own count, per layer
#: and for the whole network, on every engine of these benches. With DDR answering after
#: ``READ_LATENCY`` cycles every layer of the default bench is within 2 % and the total
#: within 0.5 %; on the standard-stem network every layer is within 2.7 % and the total
#: within 0.1 %. The model reads each pass's result slots from the network's DDR image: a
#: group of slots that share an out-buffer lane goes one slot a beat, which on a layer with
#: few steps per pixel (a 1 x 1 conv over two vectors of input channels) sets the pace.
MODEL_TOLERANCE_LAYER = 0.03
MODEL_TOLERANCE_TOTAL = 0.01


#: Cycles from a read burst's address to its first data in the benches' DDR (``sim.ddr``): the
#: latency the cycle model assumes for a Zynq HP port (``DdrTiming.zynq_hp``).
READ_LATENCY = 40


def bench_timing():
    """The DDR timing of the benches, as the cycle model takes it."""
    from rtl.cycle_model import DdrTiming

    return DdrTiming(read_latency=READ_LATENCY)


def check_cycle_model(model, cfg: HwConfig, cycles_json: Path, *,
                      tolerances: tuple[float, float] = (MODEL_TOLERANCE_LAYER,
                                                         MODEL_TOLERANCE_TOTAL),
                      fuse_pool: bool | None = None) -> list[tuple[str, int, int]]:
    """Every layer's measured cycles (``CYCLES_LO`` of its chain, DDR answering reads after
    ``READ_LATENCY`` cycles, no pauses) against the cycle model of the same descriptors (on
    the same DDR image, whose pass blocks give each pass's result beats), and the whole
    network as one chain; returns (layer, measured, modelled), the chain last as
    ``"(one chain)"``. ``tolerances``: relative, per layer and in total (the sum of the
    layers, and the chain). ``fuse_pool``: as the network was compiled."""
    from firmware.network import plan_network
    from rtl.cycle_model import chain_cycles
    from rtl.interface.descriptor import descriptor_bytes, split_descriptors
    from sim.network_bench import BASE, SIZE

    plan = plan_network(model, cfg, base=BASE, size=SIZE, fuse_pool=fuse_pool)
    table = dict(plan.memory)[plan.chain_addr]
    record = json.loads(cycles_json.read_text())
    measured = {row["name"]: row["cycles"] for row in record["layers"]}
    rows, chain = [], []
    for job in plan.jobs:
        descs = split_descriptors(table, (job.desc_addr - plan.chain_addr) // descriptor_bytes(),
                                  job.desc_count)
        chain += descs
        rows.append((job.name, measured[job.name],
                     chain_cycles(cfg, descs, bench_timing(), memory=plan.memory)))
    whole = ("(one chain)", record["chain"],
             chain_cycles(cfg, chain, bench_timing(), memory=plan.memory))
    for name, got, want in rows:
        print(f"{name:24s} measured {got:7d} modelled {want:7d} {100 * (want - got) / got:+6.2f} %")
    for name, got, want in rows:
        assert abs(want - got) <= tolerances[0] * got, (name, got, want)
    total_got, total_want = sum(r[1] for r in rows), sum(r[2] for r in rows)
    assert abs(total_want - total_got) <= tolerances[1] * total_got, (
        total_got, total_want)
    print(f"{whole[0]:24s} measured {whole[1]:7d} modelled {whole[2]:7d} "
          f"{100 * (whole[2] - whole[1]) / whole[1]:+6.2f} %")
    assert abs(whole[2] - whole[1]) <= tolerances[1] * whole[1], whole
    return [*rows, whole]


def _run(model, images, case: str, cfg: HwConfig = CFG, fuse_pool: bool | None = None
         ) -> None:
    acc = Accelerator(cfg=cfg)
    out = build_dir(case)
    out.mkdir(parents=True, exist_ok=True)
    path = model.save(out / "model.npz")
    # Compiled on the "PC" side, as a user would (python -m firmware.compile).
    network = compile_network(model, BuildPackage.of(cfg, acc.regmap), model_path=path,
                              fuse_pool=fuse_pool)
    net_path = network.save(out / "model.ilmpq.npz")
    run_bench(FlatTop(acc, Accelerator.bus_prefixes(cfg)), toplevel="accel_top",
              test_module="sim.network_bench", case=case,
              params={"config": cfg.to_json(), "regmap": acc.regmap.to_json(),
                      "model": str(path), "network": str(net_path),
                      "images": np.asarray(images).tolist(),
                      "cycles_out": str(out / "cycles.json"), "read_latency": READ_LATENCY})
    check_cycle_model(model, cfg, out / "cycles.json", fuse_pool=fuse_pool)


def test_random_resnet18_digits_size() -> None:
    """Every layer kind of ResNet-18 (small stem, 8x8 input, width 0.125) in sequence."""
    model = random_resnet18(3, input_shape=(3, 8, 8), width=0.125, ratio="60:35:5")
    _run(model, random_images(np.random.default_rng(4), 1, (3, 8, 8)), "network-random")


def test_random_resnet18_split_input() -> None:
    """The default network on 4-bit arrays: the first conv's pixels split into low and high
    nibbles, the high ones' products taken times 16; bit-exact, the model as tight."""
    model = random_resnet18(3, input_shape=(3, 8, 8), width=0.125, ratio="60:35:5")
    images = random_images(np.random.default_rng(4), 1, (3, 8, 8))
    images[0][:, 0, 0] = 255                           # both nibbles at their top
    _run(model, images, "network-split", CFG_SPLIT)


@pytest.mark.slow
def test_random_resnet18_standard_stem_split_input() -> None:
    """The standard stem (folded, its max-pool in the write-back) on 4-bit arrays."""
    model = random_resnet18(5, input_shape=(3, 32, 32), width=0.25, ratio="65:30:5",
                            small_stem=False)
    _run(model, random_images(np.random.default_rng(6), 2, (3, 32, 32)), "network-stem-split",
         CFG_STEM_SPLIT, fuse_pool=True)


@pytest.mark.slow
def test_random_resnet18_three_weight_ports() -> None:
    """The default network on an engine with three weight masters (as zc706 has), each with
    its own view of the memory and its own latency; the model is checked as tightly."""
    model = random_resnet18(3, input_shape=(3, 8, 8), width=0.125, ratio="60:35:5")
    _run(model, random_images(np.random.default_rng(4), 1, (3, 8, 8)), "network-ports3",
         CFG_PORTS)


@pytest.mark.slow
def test_random_resnet18_standard_stem() -> None:
    """The 7x7/2 stem and max-pool too: 32x32 input, width 0.25, two images; the max-pool
    runs in the stem conv's write-back, in pooled row tiles (on this small build that does
    not pay, so the firmware would run it apart: forced here to run the fused path)."""
    model = random_resnet18(5, input_shape=(3, 32, 32), width=0.25, ratio="65:30:5",
                            small_stem=False)
    _run(model, random_images(np.random.default_rng(6), 2, (3, 32, 32)), "network-stem",
         CFG_STEM, fuse_pool=True)


@pytest.mark.slow
def test_trained_digits_model(tmp_path) -> None:
    """A model trained and exported by ``python -m quant.train`` (a short run on the shipped
    digits), on digits test images: the accelerator's logits equal the golden model's."""
    import subprocess
    import sys

    from quant.data import load_data
    from quant.model_format import QModel

    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "quant.train", "--out", str(out), "--float-epochs",
                    "2", "--epochs", "1", "--max-steps", "10", "--eval-limit", "50",
                    "--no-progress"], check=True)
    model = QModel.load(out / "model.npz")
    images, _ = load_data("digits", channels=model.input_shape[0]).test_arrays(2)
    _run(model, images, "network-trained", CFG_STEM)
