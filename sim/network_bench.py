"""cocotb bench: a whole quantized ResNet-18 run through the accelerator by the firmware's own
driver (``firmware.driver`` over ``sim.rtl_backend``), DDR answering reads a set number of
cycles after their address (``sim.ddr``): identity check, the compiled network copied and
relocated into DDR, each layer's chain of row tiles, then the whole network as one chain;
logits compared bit for bit with the golden model."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster

from firmware.compile import CompiledNetwork
from firmware.driver import Driver
from firmware.package import BuildPackage
from quant import golden
from quant.model_format import QModel
from rtl.config import HwConfig
from rtl.interface.regmap import RegisterMap
from sim.ddr import LatencyAxiRam, weight_port_rams
from sim.rtl_backend import RamBuffer, RtlBackend
from sim.runner import bench_params

RAM = 1 << 22
BASE, SIZE = 0x10000, RAM - 0x20000
PAUSES = {"aw": [0, 1], "w": [0, 0, 1], "b": [1, 0], "ar": [0, 1, 0], "r": [0, 0, 0, 1]}
CLOCK_MHZ = 100.0


@cocotb.test()
async def network_matches_golden(dut):
    p = bench_params()
    cfg = HwConfig.from_json(p["config"])
    package = BuildPackage.of(cfg, RegisterMap.from_json(p["regmap"]))
    model = QModel.load(p["model"])
    net = CompiledNetwork.load(p["network"])
    images = np.array(p["images"], np.int64)

    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, 1e3 / CLOCK_MHZ, unit="ns").start())
    ram = LatencyAxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=RAM,
                        read_latency=p["read_latency"])
    lite = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    rams = [ram, *weight_port_rams(dut, ram, cfg.weight_ports, read_latency=p["read_latency"])]

    def pauses(on: bool) -> None:
        for r in rams:
            for name, chan in {"aw": r.write_if.aw_channel, "w": r.write_if.w_channel,
                               "b": r.write_if.b_channel, "ar": r.read_if.ar_channel,
                               "r": r.read_if.r_channel}.items():
                chan.set_pause_generator(itertools.cycle(PAUSES[name]) if on else None)
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)

    backend = RtlBackend(dut, lite, RamBuffer(ram, BASE, SIZE), CLOCK_MHZ)
    driver = Driver(backend, package)
    await driver.open()
    await driver.load(net)
    expected = golden.run(model, images)
    out = net.manifest["output"]

    total = 0
    per_layer: list[dict] = []
    for n, image in enumerate(images):
        backend.memory.write(out["offset"], bytes(out["bytes"]))  # each run must write it
        if n == 0:
            # Layer by layer (each its own chain of row tiles), for cycles per layer, with
            # read data ``read_latency`` cycles after their address and no pauses (the
            # figures the cycle model is checked against).
            pauses(False)
            result = await driver.infer(image, per_layer=True)
            for layer in result.layers:
                dut._log.info(f"{layer.name:24s} {layer.op:8s} {layer.tiles:3d} tile(s) "
                              f"{layer.cycles:8d} cycles")
                per_layer.append({"name": layer.name, "op": layer.op, "tiles": layer.tiles,
                                  "cycles": layer.cycles})
            np.testing.assert_array_equal(result.logits, expected[n], f"image {n}, by layer")
            total += result.cycles
            # The whole network as one chain under the same conditions: the latency of an
            # image that the cycle model is checked against.
            backend.memory.write(out["offset"], bytes(out["bytes"]))
            result = await driver.infer(image)
            chain = result.cycles
            dut._log.info(f"image {n}: the whole network as one chain, no pauses: {chain} "
                          f"cycles")
            np.testing.assert_array_equal(result.logits, expected[n], f"image {n}, chain")
            total += result.cycles
            backend.memory.write(out["offset"], bytes(out["bytes"]))
        # The whole network: one START, one interrupt, with pauses on every AXI channel.
        pauses(True)
        result = await driver.infer(image)
        total += result.cycles
        dut._log.info(f"image {n}: the whole network as one chain of {net.chain[1]} "
                      f"descriptors: {result.cycles} cycles")
        np.testing.assert_array_equal(result.logits, expected[n], f"image {n}, one chain")
    dut._log.info(f"{len(images)} images, {len(net.layers)} layers each, {total} cycles in all")
    if p.get("cycles_out"):
        Path(p["cycles_out"]).write_text(json.dumps({"layers": per_layer, "chain": chain},
                                                    indent=1))
