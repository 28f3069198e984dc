"""Cycle model of the engine as built: what ``CYCLES_LO`` will read for a chain of
descriptors, phase by phase (docs/engine.md), so that layers too large to simulate in RTL
(ResNet-18 at 224 x 224) get a latency figure that follows the hardware rather than the
MAC-bound ideal.

Per descriptor: fetch it, load the input band, then for a conv the passes (the loader
streams pass 0 over the weight ports while the band loads, and pass ``p + 1`` into the free
weight bank while the core computes pass ``p``, each port its share; a pass
issues one activation vector per cycle, and each output pixel's ``pot_rows + dsp_rows``
results leave ``result_lanes`` a cycle, so a pixel costs ``max(steps, slots / lanes)``
cycles), for an add
the second input, for a pool the scan; then write the output band back. DDR is a port that
moves one bus word per cycle after ``read_latency`` / ``write_latency`` cycles, with up to
``rtl.dma.MAX_OUTSTANDING`` bursts in flight.

The model is checked against the cycles the RTL reports for every layer of the
whole-network bench (``sim/test_network.py``); the tolerance there is what it is worth.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from quant import contract as C
from quant.resnet_graph import layer_shapes, resnet18_nodes
from quant.schemes import parse_ratio, scheme_counts

from .boards import BOARDS, PARTS
from .config import WEIGHT_FORMATS, HwConfig
from .dma import MAX_BURST, MAX_OUTSTANDING
from .dsp_array import dsp_latency
from .interface.ddr import port_span, words_per_vector
from .interface.descriptor import Op, descriptor_bytes, unpack_descriptor
from .interface.stem import fold_plan
from .interface.tiling import layer_descriptors
from .postproc import PostProc
from .pot_array import pot_latency

__all__ = ["PHASES", "DdrTiming", "LayerCycles", "chain_cycles", "chain_phases",
           "descriptor_cycles", "descriptor_phases", "main", "markdown", "phase_markdown",
           "phase_totals", "resnet18_cycles"]


@dataclass(frozen=True)
class DdrTiming:
    """Latency of the DDR port in fabric cycles: from a burst's address to its first data
    beat (reads) or from its last beat to its response (writes)."""

    read_latency: int = 2
    write_latency: int = 2

    @classmethod
    def zynq_hp(cls) -> DdrTiming:
        """An assumed Zynq-7000 HP port to DDR3: about 40 fabric cycles per read burst
        (a figure to replace by a board measurement)."""
        return cls(read_latency=40, write_latency=20)


def _read(words: int, t: DdrTiming) -> int:
    """Cycles of a DMA read of ``words`` words: the command, the first latency, one word per
    cycle, and the latency that the bursts in flight cannot cover."""
    bursts = math.ceil(words / MAX_BURST)
    per_burst = max(MAX_BURST, math.ceil((t.read_latency + MAX_BURST) / MAX_OUTSTANDING))
    return 2 + t.read_latency + words + max(0, per_burst - MAX_BURST) * (bursts - 1)


def _bursts(addr: int, words: int) -> int:
    """Bursts the DMA cuts ``words`` words from byte address ``addr`` into: at most
    ``MAX_BURST`` beats, never across a 4 KiB boundary."""
    n = 0
    while words > 0:
        beats = min(words, MAX_BURST, (4096 - addr % 4096) // 8)
        addr, words, n = addr + 8 * beats, words - beats, n + 1
    return n


def _write(addr: int, words: int, t: DdrTiming) -> int:
    """Cycles of a DMA write: the command, each burst's address then its beats (the writer
    spends a cycle choosing the next burst and one on its address), the last response."""
    return 3 + words + 2 * (_bursts(addr, words) - 1) + t.write_latency


def _pass_cycles(cfg: HwConfig, pixels: int, steps: int) -> int:
    """One conv pass from start to done: one vector per cycle unless the result path
    (``result_lanes`` slots a beat) is slower; then the array, requantization and completion
    latency. Groups of slots that share an output-buffer lane are not counted (the host
    orders the filters of a pass to avoid them)."""
    groups = -(-(cfg.pot_rows + cfg.dsp_rows) // cfg.result_lanes)
    array_latency = max(pot_latency(cfg), dsp_latency(cfg))
    return pixels * max(steps, groups) + array_latency + PostProc.LATENCY + 4


#: Where a descriptor's cycles go (:func:`descriptor_phases`).
PHASES = ("descriptor", "maps in", "compute", "weights", "vector units", "write-back")


def _overlap(lo: int, hi: int, lo2: int, hi2: int) -> bool:
    return lo < hi2 and lo2 < hi


def _schedule(cfg: HwConfig, descs: list[dict[str, int]], t: DdrTiming
              ) -> tuple[int, dict[str, int]]:
    """Cycles of a chain and where they go. Each descriptor: fetch and check it, load its
    input band (the loader streams a conv's pass 0 meanwhile), then its compute, which waits
    for the previous descriptor's write-back to have left the out buffer; its own
    write-back then drains while the next descriptor is fetched and its band loads (a band
    that the write-back still writes waits for it). The run ends when the last write-back
    is done. Phases: each descriptor's own cycles; "write-back" is what the overlap leaves
    exposed (the last one, and the waits for one)."""
    v = cfg.vec_len
    phases = dict.fromkeys(PHASES, 0)
    now = 0                 # the cycle the descriptor's fetch starts
    free = 0                # the first cycle the last write-back is done
    written = (0, 0)        # the bytes it writes
    for d in descs:
        chunks_in, chunks_out = -(-d["in_c"] // v), -(-d["out_c"] // v)
        in_vecs = d["in_h"] * d["in_w"] * chunks_in
        out_pixels = d["out_h"] * d["out_w"]
        out_vecs = out_pixels * chunks_out
        own = dict.fromkeys(PHASES, 0)
        own["descriptor"] = 1 + _read(descriptor_bytes() * 8 // cfg.axi_data_width, t) + 1
        in_words = in_vecs * words_per_vector(cfg, d["in_bits"])
        act = 1 + _read(in_words, t)
        own["maps in"] = act
        band = now + own["descriptor"]
        in_addr = d.get("in_addr", 0)
        if _overlap(in_addr, in_addr + 8 * in_words, *written):
            band = max(band, free)
        end = band + act        # the input band is in
        gate = free - end       # the out buffer is free from then on (relative to ``end``)
        op = d["op"]
        if op == Op.CONV:
            # The weight ports read their shares of a pass at once; the slowest sets the pace.
            load = 1 + _read(max(port_span(cfg, d["steps"], j)[1]
                                 for j in range(cfg.weight_ports)), t)
            compute = 1 + _pass_cycles(cfg, out_pixels, d["steps"])
            # Times from the end of the input band; the loader started with the band's read.
            # Two banks: load p + 1 while p computes; load p + 2 waits for p's bank.
            loaded = [0] * d["passes"]
            done = [0] * d["passes"]
            ungated = 0
            for p in range(d["passes"]):
                start_load = (1 - act if p == 0 else
                              max(loaded[p - 1], done[p - 2] if p >= 2 else loaded[p - 1]))
                loaded[p] = start_load + load
                done[p] = max(loaded[p], done[p - 1] if p else 0) + compute
                if p == 0:
                    # Results wait for the previous write-back to have read their vectors:
                    # a pass that outruns it ends as it ends.
                    done[p] = max(done[p], gate - t.write_latency)
                ungated = max(loaded[p], ungated) + compute
            own["compute"] = d["passes"] * compute
            own["weights"] = ungated - own["compute"]
            body = done[-1]
        elif op == Op.ADD:
            # The adder takes a vector a cycle as its words come, then drains.
            second = 1 + _read(in_vecs * words_per_vector(cfg, d["in2_bits"]), t) - 3
            own["maps in"] += second
            own["vector units"] = 3
            body = max(gate, 0) + second + 3
        elif op == Op.MAXPOOL:
            own["vector units"] = 2 + out_vecs * d["kernel"] ** 2 + 3
            body = max(gate, 0) + own["vector units"]
        else:
            pixels = d["in_h"] * d["in_w"]
            own["vector units"] = 2 + chunks_in * max(pixels, v) + v + 3
            body = max(gate, 0) + own["vector units"]
        handoff = end + body
        # One output word a cycle: the out buffer reads the next vector as the last word of
        # a vector leaves.
        out_words = out_vecs * words_per_vector(cfg, d["out_bits"])
        out_addr = d.get("out_addr", 0)
        free = handoff + 1 + 1 + _write(out_addr, out_words, t) + 1
        written = (out_addr, out_addr + 8 * out_words)
        now = handoff + 1
        for name in PHASES:
            phases[name] += own[name]
    phases["write-back"] = free - sum(phases.values())
    return free, phases


def descriptor_phases(cfg: HwConfig, d: dict[str, int], timing: DdrTiming | None = None
                      ) -> dict[str, int]:
    """Modelled cycles of one descriptor run alone (fields as
    ``rtl.interface.descriptor.unpack_descriptor``), by phase: fetching and checking it,
    loading its input band (and an add's second input), the conv passes' compute, waiting
    for weights beyond that, the pools' and the adder's scans, and the write-back."""
    return _schedule(cfg, [d], timing or DdrTiming())[1]


def descriptor_cycles(cfg: HwConfig, d: dict[str, int], timing: DdrTiming | None = None
                      ) -> int:
    """Modelled cycles of one descriptor run alone (fields as
    ``rtl.interface.descriptor.unpack_descriptor``)."""
    return _schedule(cfg, [d], timing or DdrTiming())[0]


def chain_cycles(cfg: HwConfig, descriptors: Iterable[bytes],
                 timing: DdrTiming | None = None) -> int:
    """Modelled cycles of a chain (what ``CYCLES_LO`` reads after its run)."""
    return _schedule(cfg, [unpack_descriptor(raw) for raw in descriptors],
                     timing or DdrTiming())[0]


def chain_phases(cfg: HwConfig, descriptors: Iterable[bytes],
                 timing: DdrTiming | None = None) -> dict[str, int]:
    """Where a chain's cycles go (:data:`PHASES`); they add up to :func:`chain_cycles`."""
    return _schedule(cfg, [unpack_descriptor(raw) for raw in descriptors],
                     timing or DdrTiming())[1]


@dataclass(frozen=True)
class LayerCycles:
    name: str
    op: str
    tiles: int
    cycles: int
    #: MACs over the MACs both arrays do per cycle (conv, fc); 0 for the vector layers.
    mac_cycles: int
    #: ``cycles`` by phase (:data:`PHASES`), as (phase, cycles) pairs.
    phases: tuple[tuple[str, int], ...] = ()
    #: Multiply-accumulates of the layer (conv, fc), and bytes of its packed weights.
    macs: int = 0
    weight_bytes: int = 0


def _passes(cfg: HwConfig, filters: int, ratio: tuple[int, int, int]) -> int:
    counts = scheme_counts(filters, ratio)
    n_pot, n_f4, n_f8 = (counts[C.SCHEME_CODE[s]] for s in C.SCHEMES)
    pot = math.ceil(n_pot / cfg.pot_rows) if n_pot else 0
    dsp = math.ceil((n_f4 + n_f8 * cfg.fixed8_lanes) / cfg.dsp_rows) if n_f4 + n_f8 else 0
    return max(pot, dsp, 1)


def resnet18_cycles(cfg: HwConfig, ratio: str | tuple[int, int, int], *, image: int = 224,
                    timing: DdrTiming | None = None) -> list[LayerCycles]:
    """Every layer of ResNet-18 (standard stem, 1000 classes) at ``image`` x ``image`` as the
    firmware would run it on ``cfg``: row tiles, passes, DDR traffic. Raises
    ``rtl.interface.tiling.TilingError`` if a layer cannot be tiled into the buffers."""
    ratio = parse_ratio(ratio)
    check_formats(cfg, ratio)
    nodes = resnet18_nodes(width=1.0, num_classes=1000, in_channels=3)
    shapes = layer_shapes(nodes, image, 3)
    v, act, sgn = cfg.vec_len, cfg.act_bits, cfg.act_bits + 1
    out: list[LayerCycles] = []
    bits = {"input": cfg.input_bits}        # storage bits of every tensor
    for node in nodes:
        name, op = node["name"], node["op"]
        src = node["inputs"][0]
        (ci, hi, wi), (co, ho, wo) = shapes[src], shapes[name]
        bits[name] = (32 if op == "fc" else
                      sgn if op in ("conv", "add") and not node["relu"] else act)
        fields: dict[str, Any] = dict(in_addr=0, out_addr=0, in_c=ci, in_h=hi, in_w=wi,
                                      out_c=co, out_h=ho, out_w=wo, in_bits=bits[src],
                                      out_bits=bits[name])
        pad, mac_cycles, macs, weight_bytes = 0, 0, 0, 0
        if op in ("conv", "fc"):
            k = node["kernel"] if op == "conv" else 1
            macs = co * ci * k * k * ho * wo
            mac_cycles = math.ceil(macs / (v * (cfg.pot_rows + cfg.dsp_rows)))
            counts = scheme_counts(co, ratio)
            weight_bytes = math.ceil(ci * k * k * sum(
                counts[C.SCHEME_CODE[s]] * WEIGHT_FORMATS[s] for s in C.SCHEMES) / 8)
            stride, pad = node.get("stride", 1), node.get("padding", 0)
            fold = fold_plan(node, (ci, hi, wi), cfg) if src == "input" else None
            if fold:                     # as firmware.network runs it: space-to-depth
                (ci, hi, wi), k, stride, pad = fold.folded_shape, fold.folded_kernel, 1, 0
                fields.update(in_c=ci, in_h=hi, in_w=wi)
            fields.update(op=Op.CONV, kernel=k, stride=stride, passes=_passes(cfg, co, ratio),
                          steps=k * k * -(-ci // v))
        elif op == "add":
            fields.update(op=Op.ADD, in2_addr=0, in2_bits=bits[node["inputs"][1]])
        elif op == "maxpool":
            fields.update(op=Op.MAXPOOL, kernel=node["kernel"], stride=node["stride"])
            pad = node["padding"]
        else:
            fields.update(op=Op.AVGPOOL)
        descs = layer_descriptors(cfg, pad=pad, name=name, **fields)
        out.append(LayerCycles(name, op, len(descs), chain_cycles(cfg, descs, timing),
                               mac_cycles, tuple(chain_phases(cfg, descs, timing).items()),
                               macs, weight_bytes))
    return out


def phase_totals(layers: list[LayerCycles]) -> dict[str, int]:
    """Cycles of every phase (:data:`PHASES`) over ``layers``."""
    total = dict.fromkeys(PHASES, 0)
    for layer in layers:
        for name, n in layer.phases:
            total[name] += n
    return total


def phase_markdown(layers: list[LayerCycles], mhz: float) -> str:
    """Where the time goes: each phase's cycles, milliseconds and share, with a bar."""
    totals = phase_totals(layers)
    whole = sum(totals.values())
    out = ["| phase | cycles | ms | share | |", "|---|---:|---:|---:|---|"]
    for name, n in totals.items():
        out.append(f"| {name} | {n:,} | {n / (mhz * 1e3):.2f} | {100 * n / whole:.1f} % | "
                   f"`{'#' * round(40 * n / whole)}` |")
    return "\n".join(out) + "\n"


def paper_lines(cfg: HwConfig, ratio: str | tuple[int, int, int], ms: float) -> list[str]:
    """The ILMPQ paper's Table I result on ``cfg``'s part beside the modelled ``ms``."""
    part = PARTS[cfg.part]
    paper = next((b.paper for b in BOARDS.values() if b.part is part), None)
    if paper is None:
        return []
    ratio = parse_ratio(ratio)
    same = ("the same ratio" if paper.ratio == ratio else
            f"ratio {':'.join(map(str, paper.ratio))}, not {':'.join(map(str, ratio))}")
    return ["", f"The paper (ILMPQ, Table I, {paper.method.upper()} on "
                f"{part.device.upper()}, {same}): {paper.gops} GOP/s, {paper.latency_ms} ms "
                f"measured on its design; modelled here: {paper.latency_ms / ms:.2f}x its "
                f"speed."]


def check_formats(cfg: HwConfig, ratio: tuple[int, int, int]) -> None:
    """Refuse a ratio that gives filters to a weight format ``cfg`` does not build."""
    for scheme, share in zip(C.SCHEMES, ratio, strict=True):
        if share and scheme not in cfg.weight_formats:
            raise ValueError(
                f"ratio {':'.join(map(str, ratio))} assigns {scheme} filters but config "
                f"{cfg.name!r} implements only {', '.join(cfg.weight_formats)}; change the "
                f"ratio (--ratio) or the config's weight_formats")


def markdown(cfg: HwConfig, ratio: str | tuple[int, int, int], layers: list[LayerCycles],
             timing: DdrTiming, *, image: int = 224) -> str:
    """The build report's section: latency of ResNet-18 on the engine as built."""
    mhz = cfg.clock_mhz
    total = sum(layer.cycles for layer in layers)
    ideal = sum(layer.mac_cycles for layer in layers)
    gops = 2 * sum(layer.macs for layer in layers) / (total / (mhz * 1e6)) / 1e9
    r = ":".join(map(str, parse_ratio(ratio)))
    out = [
        f"Cycle model of the engine as built (`rtl/cycle_model.py`): ResNet-18, {image}x{image}, "
        f"ratio {r}, run as the firmware runs it (row tiles, passes, the stem folded by "
        f"space-to-depth), {mhz:g} MHz, DDR read latency {timing.read_latency} and write "
        f"latency {timing.write_latency} cycles (assumed for a Zynq HP port), one 64-bit word "
        f"per cycle. The model is checked against the cycles the RTL counts for every layer "
        f"of the whole-network bench (`sim/test_network.py`).",
        "",
        "| layer | op | tiles | cycles | MAC-bound cycles | cycles / MAC-bound | ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for layer in layers:
        ratio_text = f"{layer.cycles / layer.mac_cycles:.1f}" if layer.mac_cycles else "-"
        out.append(f"| {layer.name} | {layer.op} | {layer.tiles} | {layer.cycles:,} | "
                   f"{layer.mac_cycles or '-'} | {ratio_text} | "
                   f"{layer.cycles / (mhz * 1e3):.3f} |")
    out += [f"| **total** | | | **{total:,}** | **{ideal:,}** | **{total / ideal:.1f}** | "
            f"**{total / (mhz * 1e3):.2f}** |", "",
            f"Modelled latency: **{total / (mhz * 1e3):.2f} ms** per image at {mhz:g} MHz, "
            f"{gops:.1f} GOP/s (MAC-bound, every multiplier busy every cycle: "
            f"{ideal / (mhz * 1e3):.2f} ms).", *paper_lines(cfg, ratio, total / (mhz * 1e3)),
            "",
            "Where the time goes (compute: the conv passes as the core runs them, idle rows "
            "of a layer's last pass included; weights: waiting for a pass's weights beyond "
            "that; maps in: descriptors aside, input bands and an add's second input):", "",
            phase_markdown(layers, mhz)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """``python -m rtl.cycle_model --board NAME [--ratio R] [--json]``: the modelled ResNet-18
    latency per layer and in total on a board preset."""
    import argparse
    import json
    import sys

    from .config import preset, preset_names

    parser = argparse.ArgumentParser(
        prog="python -m rtl.cycle_model",
        description="Modelled latency of ResNet-18 (224 x 224, standard stem, 1000 classes) "
                    "on the engine as a board preset builds it, layer by layer.")
    parser.add_argument("--board", required=True, choices=preset_names(),
                        help="board preset (rtl/config.py)")
    parser.add_argument("--ratio", help="PoT-4:Fixed-4:Fixed-8 filter ratio, e.g. 60:35:5 "
                                        "(default: the board's)")
    parser.add_argument("--image", type=int, default=224, help="input size (default 224)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    cfg = preset(args.board)
    try:
        ratio = parse_ratio(args.ratio) if args.ratio else BOARDS[args.board].ratio
    except ValueError as exc:
        parser.error(str(exc))
    timing = DdrTiming.zynq_hp()
    layers = resnet18_cycles(cfg, ratio, image=args.image, timing=timing)
    mhz = cfg.clock_mhz
    total = sum(layer.cycles for layer in layers)
    if args.json:
        json.dump({"board": args.board, "config": cfg.name, "clock_mhz": mhz,
                   "ratio": list(ratio), "image": args.image,
                   "read_latency": timing.read_latency, "write_latency": timing.write_latency,
                   "layers": [{"name": layer.name, "op": layer.op, "tiles": layer.tiles,
                               "cycles": layer.cycles, "mac_cycles": layer.mac_cycles,
                               "macs": layer.macs, "weight_bytes": layer.weight_bytes,
                               "ms": layer.cycles / (mhz * 1e3),
                               "phases": dict(layer.phases)} for layer in layers],
                   "total_cycles": total, "total_ms": total / (mhz * 1e3),
                   "phases": phase_totals(layers)},
                  sys.stdout, indent=1)
        print()
    else:
        print(markdown(cfg, ratio, layers, timing, image=args.image), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
