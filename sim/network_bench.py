"""cocotb bench: a whole quantized ResNet-18 run through the accelerator, the host doing only
what the firmware does (copy the plan into DDR, start each layer's chain of row tiles, read
the logits; then the whole network as one chain), compared bit for bit with the golden
model."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from firmware.network import plan_network
from quant import golden
from quant.model_format import QModel
from rtl.config import HwConfig
from rtl.interface.regmap import RegisterMap
from sim.runner import bench_params

RAM = 1 << 22
BASE, SIZE = 0x10000, RAM - 0x20000
PAUSES = {"aw": [0, 1], "w": [0, 0, 1], "b": [1, 0], "ar": [0, 1, 0], "r": [0, 0, 0, 1]}


@cocotb.test()
async def network_matches_golden(dut):
    p = bench_params()
    cfg = HwConfig.from_json(p["config"])
    regmap = RegisterMap.from_json(p["regmap"])
    model = QModel.load(p["model"])
    images = np.array(p["images"], np.int64)
    plan = plan_network(model, cfg, base=BASE, size=SIZE)

    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=RAM)
    lite = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    channels = {"aw": ram.write_if.aw_channel, "w": ram.write_if.w_channel,
                "b": ram.write_if.b_channel, "ar": ram.read_if.ar_channel,
                "r": ram.read_if.r_channel}

    def pauses(on: bool) -> None:
        for name, chan in channels.items():
            chan.set_pause_generator(itertools.cycle(PAUSES[name]) if on else None)
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)

    async def write_reg(name: str, value: int) -> None:
        await lite.write_dword(regmap.offset(name), value)

    async def read_reg(name: str) -> int:
        return await lite.read_dword(regmap.offset(name))

    # What the firmware does: check identity, set the window, copy the plan, run each layer.
    assert await read_reg("ID") == cfg.config_hash
    await write_reg("WINDOW_BASE", BASE)
    await write_reg("WINDOW_SIZE", SIZE)
    await write_reg("IRQ_ENABLE", 0b11)
    for addr, blob in plan.memory:
        ram.write(addr, blob)
    expected = golden.run(model, images)

    async def run_chain(addr: int, count: int, label: str) -> int:
        await write_reg("DESC_ADDR", addr)
        await write_reg("DESC_COUNT", count)
        await write_reg("CTRL", 1)
        for _ in range(20_000_000):
            await RisingEdge(dut.clk)
            if dut.irq.value:
                break
        else:
            raise AssertionError(f"{label}: no interrupt")
        code = await read_reg("ERROR_CODE")
        assert code == 0, f"{label}: error code {code} at descriptor {await read_reg('DESC_DONE')}"
        assert await read_reg("DESC_DONE") == count, label
        await write_reg("IRQ_STATUS", 0b11)
        return await read_reg("CYCLES_LO")

    def check_logits(n: int, how: str) -> None:
        raw = ram.read(plan.output.addr, 8 * plan.output.words(cfg))
        np.testing.assert_array_equal(plan.logits(raw), expected[n], f"image {n}, {how}")
        ram.write(plan.output.addr, bytes(len(raw)))      # the next run must write it again

    total = 0
    per_layer: list[dict] = []
    for n, image in enumerate(images):
        ram.write(plan.input.addr, plan.input_bytes(image))
        if n == 0:
            # Layer by layer (each its own chain of row tiles), for cycles per layer, with
            # DDR answering at once (the figures the cycle model is checked against).
            pauses(False)
            for job in plan.jobs:
                cycles = await run_chain(job.desc_addr, job.desc_count, job.name)
                total += cycles
                dut._log.info(f"{job.name:24s} {job.op:8s} {job.desc_count:3d} tile(s) "
                              f"{cycles:8d} cycles")
                per_layer.append({"name": job.name, "op": job.op, "tiles": job.desc_count,
                                  "cycles": cycles})
            check_logits(n, "layer by layer")
        # The whole network: one START, one interrupt, with pauses on every AXI channel.
        pauses(True)
        cycles = await run_chain(plan.chain_addr, plan.chain_count, "network chain")
        total += cycles
        dut._log.info(f"image {n}: the whole network as one chain of {plan.chain_count} "
                      f"descriptors: {cycles} cycles")
        check_logits(n, "one chain")
    dut._log.info(f"{len(images)} images, {len(plan.jobs)} layers each, {total} cycles in all")
    if p.get("cycles_out"):
        Path(p["cycles_out"]).write_text(json.dumps(per_layer, indent=1))
