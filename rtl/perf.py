"""The MAC-bound schedule of ResNet-18 on a configuration (per layer and in total).

What the arrays could do if nothing else took time: a bound, not a prediction. The engine as
built is costed by ``rtl.cycle_model`` (checked against the RTL's own cycle counts), which the
build report shows first. Each conv/fc layer's filters are split by the configured ratio with
:func:`quant.schemes.scheme_counts`; the PoT-4 filters run on the PoT array, ``pot_rows`` at a
time, and the Fixed-4/Fixed-8 filters on the DSP array, ``dsp_rows`` lanes at a time (a
Fixed-8 filter takes ``fixed8_lanes`` lanes). Both arrays work on the same layer at once and
take one ``vec_len`` activation vector per cycle, so a layer takes

    cycles = max(pot, dsp),  pot = ceil(n_pot / pot_rows) * ceil(K / vec_len) * P + overhead

(``K`` = input channels x kernel taps, ``P`` = output pixels; ``dsp`` likewise with lanes),
the MAC-bound schedule. ``overhead`` is :data:`PASS_OVERHEAD_CYCLES` per filter group (a
"pass": one group of filters over all output pixels), for filling and draining the array
pipeline and the requantization stage. Weight loading is assumed hidden by the double-buffered
weight buffer; the cycles to stream each layer's weights from DDR over the AXI master are
reported beside the MAC cycles (column ``weight stream``) so a layer where DDR, not the
arrays, would set the pace is visible. Adds and pools move one ``vec_len`` vector per cycle.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from quant import contract as C
from quant.resnet_graph import resnet18_nodes
from quant.schemes import parse_ratio, scheme_counts

from .config import HwConfig

__all__ = ["BOARD_RATIOS", "PAPER_RESULTS", "PASS_OVERHEAD_CYCLES", "LayerPerf", "PerfReport",
           "default_ratio", "estimate", "layer_shapes"]

#: Cycles added per pass (filter group over all output pixels): pipeline fill and drain of the
#: array (adder tree, at most 3 + log2(vec_len) cycles) plus requantization and write-back.
PASS_OVERHEAD_CYCLES = 16

#: Default PoT-4:Fixed-4:Fixed-8 ratio per board (the ILMPQ paper's optimal ratios).
BOARD_RATIOS: dict[str, tuple[int, int, int]] = {"pynq-z2": (60, 35, 5), "zc706": (65, 30, 5)}

#: The ILMPQ paper's Table I results for its optimal ratio on each part (ResNet-18, ImageNet).
PAPER_RESULTS: dict[str, dict[str, Any]] = {
    "xc7z020clg400-1": {"method": "ILMPQ-1", "ratio": (60, 35, 5), "gops": 89.0,
                        "latency_ms": 40.7},
    "xc7z045ffg900-2": {"method": "ILMPQ-2", "ratio": (65, 30, 5), "gops": 421.1,
                        "latency_ms": 8.6},
}

_SCHEME_WEIGHT_BITS = {C.SCHEME_CODE[s]: b for s, b in (("pot4", 4), ("fixed4", 4),
                                                           ("fixed8", 8))}


def default_ratio(board: str) -> tuple[int, int, int]:
    """The default ratio of a board; an unknown board lists the known ones."""
    try:
        return BOARD_RATIOS[board]
    except KeyError:
        raise ValueError(f"no default ratio for board {board!r}; known: "
                         f"{', '.join(sorted(BOARD_RATIOS))}") from None


@dataclass(frozen=True)
class LayerPerf:
    """Modelled cycles of one network node."""

    name: str
    op: str
    #: Output channels (filters for conv/fc).
    filters: int
    #: PoT-4, Fixed-4 and Fixed-8 filters.
    pot: int
    fixed4: int
    fixed8: int
    #: Dot-product length (input channels x kernel taps); 0 for vector ops.
    reduction: int
    #: Output pixels (H x W).
    pixels: int
    macs: int
    pot_cycles: int
    dsp_cycles: int
    #: Modelled cycles of the node: max(pot_cycles, dsp_cycles), or the vector cycles.
    cycles: int
    #: Which unit sets the pace: "pot", "dsp", "both" (balanced) or "vector".
    bound: str
    #: Bytes of packed weights (4 or 8 bits each) and cycles to stream them over the AXI master.
    weight_bytes: int
    stream_cycles: int


@dataclass(frozen=True)
class PerfReport:
    """The modelled layers of one configuration and ratio, with totals."""

    config_name: str
    part: str
    clock_mhz: float
    ratio: tuple[int, int, int]
    image: int
    layers: tuple[LayerPerf, ...]

    @property
    def total_cycles(self) -> int:
        return sum(layer.cycles for layer in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def stream_bound_cycles(self) -> int:
        """Total if every layer took at least the cycles to stream its weights from DDR."""
        return sum(max(layer.cycles, layer.stream_cycles) for layer in self.layers)

    @property
    def latency_ms(self) -> float:
        return self.total_cycles / (self.clock_mhz * 1e3)

    @property
    def gops(self) -> float:
        """Giga-operations per second, counting a multiply-accumulate as 2 operations."""
        return 2 * self.total_macs / (self.latency_ms * 1e-3) / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {"config_name": self.config_name, "part": self.part,
                "clock_mhz": self.clock_mhz, "ratio": list(self.ratio), "image": self.image,
                "total_cycles": self.total_cycles, "total_macs": self.total_macs,
                "latency_ms": self.latency_ms, "gops": self.gops,
                "stream_bound_cycles": self.stream_bound_cycles,
                "pass_overhead_cycles": PASS_OVERHEAD_CYCLES,
                "layers": [asdict(layer) for layer in self.layers]}

    def markdown(self) -> str:
        """Per-layer table, totals and the comparison with the paper."""
        r = ":".join(map(str, self.ratio))
        mhz = self.clock_mhz
        out = [
            f"MAC-bound schedule (not a measurement; what the arrays could do if nothing "
            f"else took time, beside the cycle model of the engine as built): ResNet-18, "
            f"{self.image}x{self.image}, "
            f"ratio {r} (PoT-4:Fixed-4:Fixed-8), {mhz:g} MHz. Per pass "
            f"{PASS_OVERHEAD_CYCLES} cycles of pipeline overhead; weight loading assumed "
            f"hidden by double buffering.",
            "",
            "| layer | op | filters (PoT/F4/F8) | K | pixels | MMAC | PoT cycles | DSP cycles "
            "| cycles | bound | ms | weight stream cycles |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for L in self.layers:
            split = f"{L.filters} ({L.pot}/{L.fixed4}/{L.fixed8})" if L.reduction else \
                f"{L.filters}"
            flag = " (DDR-bound)" if L.stream_cycles > L.cycles else ""
            out.append(
                f"| {L.name} | {L.op} | {split} | {L.reduction or '-'} | {L.pixels} | "
                f"{L.macs / 1e6:.1f} | {L.pot_cycles:,} | {L.dsp_cycles:,} | {L.cycles:,} | "
                f"{L.bound} | {L.cycles / (mhz * 1e3):.3f} | {L.stream_cycles:,}{flag} |")
        out += [
            f"| **total** | | | | | **{self.total_macs / 1e6:.1f}** | | | "
            f"**{self.total_cycles:,}** | | **{self.latency_ms:.2f}** | |",
            "",
            f"Total: {self.total_cycles:,} cycles = **{self.latency_ms:.2f} ms** at {mhz:g} MHz, "
            f"{2 * self.total_macs / 1e9:.2f} GOP (2 x {self.total_macs / 1e9:.3f} GMAC) -> "
            f"**{self.gops:.1f} GOP/s**.",
            f"If every layer also waited for its weights to stream from DDR "
            f"(weight stream column), the total would be {self.stream_bound_cycles:,} cycles = "
            f"{self.stream_bound_cycles / (mhz * 1e3):.2f} ms.",
        ]
        paper = PAPER_RESULTS.get(self.part)
        if paper is not None:
            pr = ":".join(map(str, paper["ratio"]))
            same = "the same ratio" if tuple(paper["ratio"]) == self.ratio else \
                f"ratio {pr}, not this build's {r}"
            out += [
                "",
                f"Paper (ILMPQ, Table I, {paper['method']} on {self.part.split('-')[0][:7].upper()}"
                f", {same}): {paper['gops']} GOP/s, {paper['latency_ms']} ms measured on their "
                f"design. The MAC-bound schedule: {self.gops:.1f} GOP/s, {self.latency_ms:.2f} ms "
                f"({self.latency_ms / paper['latency_ms']:.2f}x the paper's latency); it counts "
                f"MAC cycles of our arrays only, so the engine as built (the cycle model above) "
                f"and a board measurement are slower.",
            ]
        return "\n".join(out) + "\n"


def layer_shapes(nodes: list[dict[str, Any]], image: int, in_channels: int
                 ) -> dict[str, tuple[int, int, int]]:
    """Output shape (C, H, W) of every node, propagated from a square ``image``."""
    shapes: dict[str, tuple[int, int, int]] = {"input": (in_channels, image, image)}
    for node in nodes:
        c, h, w = shapes[node["inputs"][0]]
        op = node["op"]
        if op in ("conv", "maxpool"):
            k, s, p = node["kernel"], node["stride"], node["padding"]
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            if op == "conv":
                c = node["out_channels"]
        elif op == "avgpool":
            h = w = 1
        elif op == "fc":
            c, h, w = node["out_features"], 1, 1
        elif op != "add":
            raise ValueError(f"node {node['name']!r} has unknown op {op!r}")
        shapes[node["name"]] = (c, h, w)
    return shapes


def _check_formats(cfg: HwConfig, ratio: tuple[int, int, int]) -> None:
    for scheme, share in zip(C.SCHEMES, ratio, strict=True):
        if share and scheme not in cfg.weight_formats:
            raise ValueError(
                f"ratio {':'.join(map(str, ratio))} assigns {scheme} filters but config "
                f"{cfg.name!r} implements only {', '.join(cfg.weight_formats)}; change the "
                f"ratio (--ratio) or the config's weight_formats")


def _array_cycles(count: int, rows: int, steps: int, pixels: int) -> int:
    if count == 0:
        return 0
    passes = math.ceil(count / rows)
    return passes * steps * pixels + passes * PASS_OVERHEAD_CYCLES


def estimate(cfg: HwConfig, ratio: str | tuple[int, int, int], *, image: int = 224,
             width: float = 1.0, num_classes: int = 1000) -> PerfReport:
    """Model ResNet-18 (standard stem) on ``cfg`` with filters split by ``ratio``.

    Raises
    ------
    TypeError
        If ``cfg`` is not a :class:`HwConfig`.
    ValueError
        If the ratio is malformed or needs a weight format the config lacks.
    """
    if not isinstance(cfg, HwConfig):
        raise TypeError(f"estimate needs a HwConfig, not {cfg!r}")
    ratio = parse_ratio(ratio)
    _check_formats(cfg, ratio)
    if isinstance(image, bool) or not isinstance(image, int) or image < 32:
        raise ValueError(f"image size must be an integer of at least 32 pixels, not {image!r}")
    nodes = resnet18_nodes(width=width, num_classes=num_classes, in_channels=3)
    shapes = layer_shapes(nodes, image, 3)
    vec = cfg.vec_len
    layers = []
    for node in nodes:
        c, h, w = shapes[node["name"]]
        pixels = h * w
        if node["op"] in ("conv", "fc"):
            if node["op"] == "conv":
                k = node["kernel"]
                reduction = node["in_channels"] * k * k
            else:
                reduction = node["in_features"]
            counts = scheme_counts(c, ratio)
            n_pot, n_f4, n_f8 = (counts[C.SCHEME_CODE[s]] for s in C.SCHEMES)
            steps = math.ceil(reduction / vec)
            pot = _array_cycles(n_pot, cfg.pot_rows, steps, pixels)
            dsp = _array_cycles(n_f4 + n_f8 * cfg.fixed8_lanes, cfg.dsp_rows, steps, pixels)
            cycles = max(pot, dsp)
            bound = "both" if pot == dsp else ("pot" if pot > dsp else "dsp")
            weight_bits = reduction * sum(counts[code] * bits
                                          for code, bits in _SCHEME_WEIGHT_BITS.items())
            weight_bytes = math.ceil(weight_bits / 8)
            stream = math.ceil(weight_bytes / (cfg.axi_data_width // 8))
            layers.append(LayerPerf(
                name=node["name"], op=node["op"], filters=c, pot=n_pot, fixed4=n_f4,
                fixed8=n_f8, reduction=reduction, pixels=pixels, macs=c * reduction * pixels,
                pot_cycles=pot, dsp_cycles=dsp, cycles=cycles, bound=bound,
                weight_bytes=weight_bytes, stream_cycles=stream))
        else:
            # One vec_len vector per cycle: of the output for adds and max-pools, of the input
            # for the global average pool (which reads every input vector once).
            src = shapes[node["inputs"][0]]
            cin, hin, win = src
            cycles = (math.ceil(cin / vec) * hin * win if node["op"] == "avgpool"
                      else math.ceil(c / vec) * pixels)
            layers.append(LayerPerf(
                name=node["name"], op=node["op"], filters=c, pot=0, fixed4=0, fixed8=0,
                reduction=0, pixels=pixels, macs=0, pot_cycles=0, dsp_cycles=0, cycles=cycles,
                bound="vector", weight_bytes=0, stream_cycles=0))
    return PerfReport(config_name=cfg.name, part=cfg.part, clock_mhz=float(cfg.clock_mhz),
                      ratio=ratio, image=image, layers=tuple(layers))
