"""cocotb bench: full-size layers through a board preset's accelerator, run by the firmware's
own driver (``firmware.driver`` over ``sim.rtl_backend``) as on the board: each layer is a
compiled one-layer network (planned and tiled by ``firmware.network``), copied and relocated
into DDR, its input written, its chain of row tiles started and waited for by interrupt;
the output read back and compared bit for bit with the golden model's. DDR answers each read
burst ``read_latency`` cycles after its address (``sim.ddr``), with no pauses, so that the
cycles the accelerator counts can be set against the cycle model. Meant for Verilator
(``sim.test_full_size``); a progress line every ``progress_cycles`` cycles."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Timer
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster

from firmware.compile import CompiledNetwork
from firmware.driver import Driver
from firmware.package import BuildPackage
from rtl.config import HwConfig
from rtl.interface.regmap import RegisterMap
from sim.ddr import LatencyAxiRam, weight_port_rams
from sim.rtl_backend import RamBuffer, RtlBackend
from sim.runner import bench_params


async def _progress(dut, period_ns: float, every: int, state: dict) -> None:
    """A line every ``every`` cycles: the layer running, its cycles so far against the
    model's, and the simulator's speed."""
    last_t, last_ns = time.monotonic(), get_sim_time(unit="ns")
    while True:
        await Timer(every * period_ns, unit="ns")
        now_t, now_ns = time.monotonic(), get_sim_time(unit="ns")
        rate = (now_ns - last_ns) / period_ns / max(now_t - last_t, 1e-9)
        last_t, last_ns = now_t, now_ns
        if state.get("layer"):
            done = (now_ns - state["start_ns"]) / period_ns
            dut._log.info(f"{state['layer']}: {done / 1e3:8.0f}k cycles "
                          f"({100 * done / state['modelled']:5.1f} % of the "
                          f"{state['modelled']} modelled), {rate:7.0f} cycles/s")


@cocotb.test()
async def full_size_layers_match_golden(dut):
    p = bench_params()
    cfg = HwConfig.from_json(p["config"])
    package = BuildPackage.of(cfg, RegisterMap.from_json(p["regmap"]))
    # An even number of picoseconds (150 MHz is 6.667 ns): the simulator's precision is 1 ps
    # and cocotb's clock splits the period into two equal halves.
    period_ps = 2 * round(5e5 / cfg.clock_mhz)
    period_ns = period_ps / 1e3

    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, period_ps, unit="ps").start())
    ram = LatencyAxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=p["ram"],
                        read_latency=p["read_latency"])
    weight_port_rams(dut, ram, cfg.weight_ports, read_latency=p["read_latency"])
    lite = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)

    backend = RtlBackend(dut, lite, RamBuffer(ram, p["base"], p["size"]), cfg.clock_mhz)
    driver = Driver(backend, package)
    await driver.open()
    state: dict = {}
    cocotb.start_soon(_progress(dut, period_ns, p["progress_cycles"], state))
    results = []
    for layer in p["layers"]:
        net = CompiledNetwork.load(layer["network"])
        expected = np.load(layer["expected"])
        await driver.load(net)
        out = net.manifest["output"]
        backend.memory.write(out["offset"], bytes(out["bytes"]))   # the run must write it
        state.update(layer=layer["name"], start_ns=get_sim_time(unit="ns"),
                     modelled=layer["modelled"])
        t0 = time.monotonic()
        result = await driver.infer(np.load(layer["image"]), per_layer=True)
        wall = time.monotonic() - t0
        state.clear()
        (run,) = result.layers
        exact = bool(np.array_equal(result.logits, expected.reshape(-1)))
        diff = int(np.count_nonzero(result.logits != expected.reshape(-1)))
        dut._log.info(f"{run.name}: {run.tiles} tile(s), {run.cycles} cycles counted, "
                      f"{layer['modelled']} modelled "
                      f"({100 * (layer['modelled'] - run.cycles) / run.cycles:+.2f} %), "
                      f"{'bit-exact' if exact else f'{diff} outputs differ'}, {wall:.1f} s "
                      f"wall, {run.cycles / wall:.0f} cycles/s")
        results.append({"name": run.name, "tiles": run.tiles, "cycles": run.cycles,
                        "bit_exact": exact, "wall_s": wall})
        Path(p["results"]).write_text(json.dumps(results, indent=1))
    for r, layer in zip(results, p["layers"], strict=True):
        assert r["bit_exact"], f"{layer['name']}: the accelerator's output is not the golden's"
