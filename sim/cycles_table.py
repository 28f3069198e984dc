"""Write docs/engine-cycles.md: measured cycles per layer of the whole-network bench against
the ideal MAC-bound cycles of the same hardware config.

    python -m sim.cycles_table        # runs the digits-size network bench (about a minute)
"""

from __future__ import annotations

import json
import sys

import numpy as np

from quant.model_format import QModel
from sim.runner import REPO_ROOT, build_dir


def ideal_cycles(model: QModel, name: str, cfg) -> int:
    """MACs of a layer over the MACs both arrays do per cycle (V x (PoT rows + DSP lanes)),
    or one vector per cycle for the vector layers."""
    node, info = model.node(name), model.infer()
    out = info[name].shape
    if node["op"] in ("conv", "fc"):
        k = model.params(name)["weight"][0].size
        return -(-int(np.prod(out)) * k // (cfg.vec_len * cfg.slots))
    src = info[node["inputs"][0]].shape
    vectors = cfg.chunks(src[0]) * src[1] * src[2]
    if node["op"] == "maxpool":
        return vectors * node["kernel"] ** 2 // node["stride"] ** 2
    return vectors


FULL_SIZE_HEADING = "## Full-size layers in RTL (Verilator)"


def main() -> None:
    from rtl.config import preset
    from rtl.cycle_model import DdrTiming, resnet18_cycles, resnet18_latency
    from sim.test_network import (
        CFG,
        READ_LATENCY,
        check_cycle_model,
        test_random_resnet18_digits_size,
    )
    test_random_resnet18_digits_size()
    out = build_dir("network-random")
    rows = json.loads((out / "cycles.json").read_text())["layers"]
    model = QModel.load(out / "model.npz")
    checked = check_cycle_model(model, CFG, out / "cycles.json")
    modelled = {name: want for name, _, want in checked}
    _, chain_got, chain_want = checked[-1]
    lines = [
        "# Layer engine: measured cycles, the cycle model, and the MAC-bound ideal",
        "",
        "Measured by the whole-network cocotb bench (`sim/test_network.py`, Icarus Verilog) on",
        f"config `{CFG.name}`: vectors of {CFG.vec_len}, {CFG.pot_rows} PoT rows + "
        f"{CFG.dsp_rows} DSP lanes per pass, {CFG.result_lanes} result lanes, act buffer "
        f"{CFG.act_buf_depth} and out buffer {CFG.out_buf_depth} vectors (small on purpose,",
        "so the early layers run as row tiles), a random ResNet-18 (small stem, 3x8x8 input,",
        "width 0.125, ratio 60:35:5). Each layer runs as its own chain of row tiles; cycles run",
        "from START to done and include the descriptor fetches, the DDR loads and the",
        f"write-back, with the bench's DDR (`sim/ddr.py`) answering each read burst "
        f"{READ_LATENCY} cycles",
        "after its address (the latency the model assumes for a Zynq HP port) and no pauses.",
        "Model: `rtl/cycle_model.py` on the same descriptors (the bench fails if a layer is off",
        "by more than 3 %, or the total by more than 1 %). Ideal: the layer's MACs over the MACs",
        "both arrays do per cycle (conv, fc), or one vector per cycle (add, pools). Regenerate",
        "with `python -m sim.cycles_table`; `python -m rtl.cycle_model --board NAME` prints the",
        "full-size table below per layer.",
        "",
        "| layer | op | tiles | measured | model | model error | ideal | measured / ideal |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    total_m = total_i = total_model = 0
    for row in rows:
        ideal = ideal_cycles(model, row["name"], CFG)
        want = modelled[row["name"]]
        total_m, total_i = total_m + row["cycles"], total_i + ideal
        total_model += want
        lines.append(f"| {row['name']} | {row['op']} | {row['tiles']} | {row['cycles']} | "
                     f"{want} | {100 * (want - row['cycles']) / row['cycles']:+.1f} % | "
                     f"{ideal} | {row['cycles'] / max(ideal, 1):.1f} |")
    lines += [f"| **total** | | | **{total_m}** | **{total_model}** | "
              f"**{100 * (total_model - total_m) / total_m:+.2f} %** | **{total_i}** | "
              f"**{total_m / max(total_i, 1):.1f}** |",
              f"| **as one chain** | | | **{chain_got}** | **{chain_want}** | "
              f"**{100 * (chain_want - chain_got) / chain_got:+.2f} %** | **{total_i}** | "
              f"**{chain_got / max(total_i, 1):.1f}** |", "",
              "As one chain (how the firmware runs an image) a layer's last tile overlaps the",
              "next layer's descriptor, band and first weights; the bench runs the network",
              "both ways and the model is held to 1 % on the chain too.", "",
              "On a map this small the fixed costs of a tile dominate: the first tile's",
              "descriptor, input band and first weight pass loaded before compute starts, the",
              "last tile's output band written back after (the tiles between overlap: the next",
              "band and weights load while a tile computes, a write-back drains while the next",
              "tile runs); the late layers (1 x 1 maps) wait for their weights. A residual add",
              "runs inside the conv before it (`Op.CONV_ADD`, one job named after the conv).",
              "",
              "## ResNet-18 at 224 x 224 on the board presets (cycle model)", "",
              "The same model on the full network, run as the firmware runs it (one chain, row",
              "tiles, passes, the stem folded by space-to-depth), with an assumed DDR latency of a",
              "Zynq HP port (`DdrTiming.zynq_hp()`). `python build.py` puts the per-layer table",
              "in its report.", "",
              "| board | ratio | clock | cycles | latency | all MACs busy | paper (same part) |",
              "|---|---|---:|---:|---:|---:|---:|"]
    from rtl.boards import BOARDS
    for board, facts in BOARDS.items():
        ratio, cfg = facts.ratio, preset(board)
        layers, cycles = resnet18_latency(cfg, ratio, timing=DdrTiming.zynq_hp())
        ideal = sum(layer.mac_cycles for layer in layers)
        ms = 1e3 * cfg.clock_mhz
        paper = facts.paper.latency_ms
        lines.append(f"| {board} | {':'.join(map(str, ratio))} | {cfg.clock_mhz:g} MHz | "
                     f"{cycles:,} | {cycles / ms:.2f} ms | {ideal / ms:.2f} ms | {paper} ms |")
    from rtl.cycle_model import phase_markdown
    lines += ["", "Weights come over their own HP ports (`HwConfig.weight_ports`: 1 on pynq-z2,",
              "3 on zc706); pynq-z2's out buffer holds layer4 whole (2048 vectors). A tile's",
              "write-back drains while the next tile runs, and a plain conv's starts behind",
              "its last pass; a conv's band streams in beside its first pass; while a conv",
              "or max-pool tile computes, the next tile's descriptor, band (into the other",
              "half of the act buffer) and the next conv's first weight passes load; an",
              "add's two inputs load at once (the second over a weight port); each block's",
              "residual add runs inside the conv before it (its row in the per-layer table",
              "is 0). Still exposed: a conv-add's second input and write-back (after its",
              "passes), the weights of layer4 and fc (more bytes than their compute",
              "hides over three ports), the stem's bands on pynq-z2 (the host-unrolled fold,",
              "6 bus words a pixel over one port; zc706's engine unrolls it: 2); the passes",
              "leave rows of the arrays idle when a layer's filters are not a multiple of them;",
              "the max-pool reads each window element once (9 cycles per output vector).", ""]
    for board, facts in BOARDS.items():
        cfg = preset(board)
        layers = resnet18_cycles(cfg, facts.ratio, timing=DdrTiming.zynq_hp())
        ms = sum(x.cycles for x in layers) / (1e3 * cfg.clock_mhz)
        lines += [f"### Where the time goes: {board} ({ms:.2f} ms layer by layer)", "",
                  phase_markdown(layers, cfg.clock_mhz),
                  f"![{board}: modelled time per layer, by phase](img/engine-time-{board}.png)",
                  f"(`python -m rtl.build.plots --board {board} --out "
                  f"docs/img/engine-time-{board}.png`)", ""]
    lines += ["Compute: the conv passes as the core runs them (a layer's last pass with idle",
              "rows included); weights: waiting for a pass's weights beyond that; maps in:",
              "input bands and an add's second input; `python -m rtl.cycle_model --board NAME`",
              "gives the same split per layer (`--json`).", ""]
    path = REPO_ROOT / "docs" / "engine-cycles.md"
    # The full-size section is written by hand from ``python -m sim.full_size`` runs (tens of
    # minutes each): kept as it is.
    kept = path.read_text().partition(FULL_SIZE_HEADING)[1:] if path.exists() else ("", "")
    path.write_text("\n".join(lines) + ("\n" + "".join(kept) if kept[0] else ""))
    print(f"wrote {path}: {total_m} cycles measured, {total_model} modelled, {total_i} ideal")


if __name__ == "__main__":
    sys.exit(main())
