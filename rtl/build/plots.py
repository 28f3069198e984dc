"""The build report's figures: per-layer latency, a roofline and resources against the part.

Each function takes the records the build steps already wrote (``engine-model.json``,
``estimate.json``, ``utilization.json``) and writes one PNG; ``write_all`` makes the set for a
build folder. The latency is the cycle model's (the RTL-validated one), split by where the
time goes; the MAC-bound schedule is drawn beside it, not as a second model.

    python -m rtl.build.plots --board zc706 [--out FILE]

draws the per-layer figure of a board preset without a build (docs/img/engine-time-*.png).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quant.resnet_graph import layer_shapes, resnet18_nodes

from ..boards import board as board_facts
from ..config import HwConfig
from ..cycle_model import PHASES
from .errors import read_record

__all__ = ["latency_bars", "resource_bars", "roofline", "write_all"]

_RESOURCE_KEYS = {"LUT": "lut", "FF": "ff", "DSP48E1": "dsp", "BRAM36": "bram36"}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(plt: Any, fig: Any, path: Path) -> None:
    """Write a figure as PNG and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: Colours of the cycle model's phases in the per-layer figure.
_PHASE_COLOURS = {"descriptor": "tab:gray", "maps in": "tab:orange", "compute": "tab:blue",
                  "weights": "tab:red", "vector units": "tab:green", "write-back": "tab:purple"}


def latency_bars(layers: list[dict[str, Any]], clock_mhz: float, path: Path,
                 title: str = "") -> None:
    """Milliseconds per layer (cycle model), stacked by where the time goes (its phases),
    the MAC-bound schedule as ticks. Layers that run inside another (a fused add) are left
    out."""
    plt = _plt()
    layers = [layer for layer in layers if layer["cycles"]]
    names = [layer["name"] for layer in layers]
    ms = [layer["cycles"] / (clock_mhz * 1e3) for layer in layers]
    ideal = [layer.get("mac_cycles", 0) / (clock_mhz * 1e3) for layer in layers]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    xs = range(len(names))
    phases = [dict(layer.get("phases") or {}) for layer in layers]
    if any(phases):
        bottom = [0.0] * len(layers)
        for phase in PHASES:
            part = [p.get(phase, 0) / (clock_mhz * 1e3) for p in phases]
            ax.bar(xs, part, bottom=bottom, color=_PHASE_COLOURS[phase],
                   label=f"{phase} ({sum(part):.2f} ms)")
            bottom = [b + v for b, v in zip(bottom, part, strict=True)]
    else:
        ax.bar(xs, ms, color="tab:blue", label=f"cycle model ({sum(ms):.2f} ms)")
    ax.scatter([x for x, i in zip(xs, ideal, strict=True) if i],
               [i for i in ideal if i], marker="_", s=120, color="tab:red", zorder=3,
               label=f"MAC-bound ({sum(ideal):.2f} ms)")
    ax.set_xticks(list(xs), names, rotation=90, fontsize=6)
    ax.set_ylabel("ms per image")
    ax.set_title(title or f"ResNet-18 224x224 per layer at {clock_mhz:g} MHz: {sum(ms):.2f} ms",
                 fontsize=10)
    ax.legend(fontsize=8)
    _save(plt, fig, path)


def roofline(layers: list[dict[str, Any]], cfg: HwConfig, board: str, path: Path) -> None:
    """MACs per byte of least DDR traffic against MAC/s reached, per conv and fc layer,
    under the arrays' peak and the DDR roofs (the HP ports and the PS DDR)."""
    plt = _plt()
    mhz = cfg.clock_mhz
    shapes = layer_shapes(resnet18_nodes(), 224, 3)
    points = []
    prev_bytes = cfg.input_bits * 224 * 224 * 3 / 8
    for layer in layers:
        c, h, w = shapes[layer["name"]]
        out_bytes = c * h * w * cfg.act_bits / 8
        if layer["macs"]:
            traffic = layer["weight_bytes"] + prev_bytes + out_bytes
            seconds = layer["cycles"] / (mhz * 1e6)
            points.append((layer["macs"] / traffic, layer["macs"] / seconds, layer["name"]))
        prev_bytes = out_bytes
    peak = (cfg.pot_macs + cfg.dsp_lanes) * mhz * 1e6
    ports = 1 + getattr(cfg, "weight_ports", 0)
    hp = ports * cfg.axi_data_width / 8 * mhz * 1e6
    ddr = board_facts(board).ps.ddr_peak_gbs * 1e9
    fig, ax = plt.subplots(figsize=(7, 4.8))
    xs = [10 ** (k / 10) for k in range(0, 41)]
    ax.plot(xs, [min(peak, x * hp) for x in xs], "k-",
            label=f"arrays {peak / 1e9:.0f} GMAC/s, {ports} HP port(s) {hp / 1e9:.1f} GB/s")
    if ddr:
        ax.plot(xs, [min(peak, x * ddr) for x in xs], "k--", label=f"PS DDR {ddr / 1e9:.1f} GB/s")
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=14, color="tab:blue",
               label="layers (cycle model)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MACs per byte of DDR traffic (weights + input + output once)")
    ax.set_ylabel("MAC/s")
    ax.set_title(f"Roofline, {cfg.name} at {mhz:g} MHz", fontsize=10)
    ax.legend(fontsize=7)
    _save(plt, fig, path)


def resource_bars(total: dict[str, float], cfg: HwConfig, path: Path) -> None:
    """Used share of the part, per resource (the Yosys estimate)."""
    plt = _plt()
    avail = cfg.resources
    names = list(_RESOURCE_KEYS)
    share = [100 * total[k] / avail[_RESOURCE_KEYS[k]] for k in names]
    fig, ax = plt.subplots(figsize=(6, 3))
    bars = ax.barh(names, share, color=["tab:red" if s > 100 else "tab:blue" for s in share])
    for bar, k, s in zip(bars, names, share, strict=True):
        ax.text(bar.get_width() + 1, bar.get_y() + bar.get_height() / 2,
                f"{total[k]:,.0f} / {avail[_RESOURCE_KEYS[k]]:,} ({s:.0f} %)", va="center",
                fontsize=7)
    ax.axvline(100, color="k", linewidth=0.8)
    ax.set_xlim(0, max(120, max(share) + 30))
    ax.set_xlabel(f"% of {cfg.part}")
    ax.set_title("Utilization estimate (Yosys synth_xilinx)", fontsize=10)
    _save(plt, fig, path)


def write_all(work: Path, out: Path, cfg: HwConfig, board: str) -> list[str]:
    """The figures of a build from its ``work/`` records into ``out``; their file names."""
    model = read_record(work / "engine-model.json", "estimate")
    util = read_record(work / "utilization.json", "synthesize")
    written = []
    if model["layers"]:
        latency_bars(model["layers"], cfg.clock_mhz, out / "latency.png")
        roofline(model["layers"], cfg, board, out / "roofline.png")
        written += ["latency.png", "roofline.png"]
    resource_bars(util["total"], cfg, out / "resources.png")
    written.append("resources.png")
    return written


def main(argv: list[str] | None = None) -> int:
    """Per-layer figure of a board preset's modelled ResNet-18 (no build needed)."""
    import argparse
    from dataclasses import asdict

    from ..config import preset, preset_names
    from ..cycle_model import DdrTiming, resnet18_latency

    parser = argparse.ArgumentParser(prog="python -m rtl.build.plots", description=main.__doc__)
    parser.add_argument("--board", required=True, choices=preset_names())
    parser.add_argument("--out", metavar="FILE",
                        help="PNG to write (default: engine-time-<board>.png)")
    args = parser.parse_args(argv)
    cfg = preset(args.board)
    facts = board_facts(args.board)
    timing = DdrTiming.zynq_hp()
    found, chain = resnet18_latency(cfg, facts.ratio, timing=timing)
    layers = [asdict(layer) for layer in found]
    total = sum(layer["cycles"] for layer in layers) / (cfg.clock_mhz * 1e3)
    chain_ms = chain / (cfg.clock_mhz * 1e3)
    path = Path(args.out or f"engine-time-{args.board}.png")
    latency_bars(layers, cfg.clock_mhz, path, title=(
        f"{args.board}: ResNet-18 224x224 at {':'.join(map(str, facts.ratio))}, "
        f"{cfg.clock_mhz:g} MHz, DDR read latency {timing.read_latency} cycles (cycle model):\n"
        f"{total:.2f} ms layer by layer (the bars), {chain_ms:.2f} ms as one chain"))
    print(f"{path}: {len(layers)} layers, {total:.2f} ms layer by layer, {chain_ms:.2f} ms "
          f"as one chain")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
