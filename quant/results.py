"""Write docs/quantization-results.md: the Table I-shaped accuracy comparison on the shipped
digits data over several seeds (mean and standard deviation of the exported integer models),
its two plots, and the per-scheme weight quantization error of low- vs high-variance filters.

Reproduce with ``python -m quant.results`` (three seeds; about 25 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from . import contract as C
from .data import digits
from .qmodel import fold_layer, layer_names
from .quantizers import weight_to_int
from .resnet import ResNet18
from .resnet_graph import resnet_widths
from .train import build_parser, float_cache_path, run

__all__ = ["CONFIGS", "RECIPE", "main", "summarize", "weight_error_table"]

#: (row label, --ratio, --first-last-8bit) in the order of the paper's Table I.
CONFIGS: tuple[tuple[str, str, bool], ...] = (
    ("Fixed-4, 8-bit first/last", "0:100:0", True),
    ("Fixed-4, all layers", "0:100:0", False),
    ("PoT-4, all layers", "100:0:0", False),
    ("PoT+Fixed 50:50:0", "50:50:0", False),
    ("ILMPQ-1 60:35:5", "60:35:5", False),
    ("ILMPQ-2 65:30:5", "65:30:5", False),
)
#: Rows the paper proposes; every other quantized row is a baseline.
ILMPQ_ROWS = ("ILMPQ-1 60:35:5", "ILMPQ-2 65:30:5")

#: The training recipe of every row (``quant.train`` options; defaults fill in the rest).
RECIPE: tuple[str, ...] = ()


@torch.no_grad()
def weight_error_table(net: ResNet18) -> dict[str, Any]:
    """Relative squared error ``|w - q(w)|^2 / |w|^2`` of every filter (BatchNorm folded) under
    each scheme, averaged over the lower and the upper half of each layer's filters by weight
    variance; plus how often PoT-4 beats Fixed-4 in each half."""
    groups: dict[str, dict[str, list[float]]] = {
        g: {s: [] for s in C.SCHEMES} for g in ("low", "high")}
    pot_wins = {"low": [0, 0], "high": [0, 0]}
    for name in layer_names(net):
        w, _ = fold_layer(net, name)
        w = w.reshape(w.shape[0], -1).double().float()
        var = w.var(dim=1, unbiased=False).numpy()
        order = np.argsort(var, kind="stable")
        half = len(order) // 2
        if half == 0:
            continue
        errs = {}
        for code, scheme in enumerate(C.SCHEMES):
            values, scale = weight_to_int(w, torch.full((w.shape[0],), code))
            err = ((values * scale[:, None] - w) ** 2).sum(1) / (w ** 2).sum(1).clamp_min(1e-30)
            errs[scheme] = err.numpy()
        for group, idx in (("low", order[:half]), ("high", order[-half:])):
            for scheme in C.SCHEMES:
                groups[group][scheme].extend(errs[scheme][idx].tolist())
            pot_wins[group][0] += int((errs["pot4"][idx] < errs["fixed4"][idx]).sum())
            pot_wins[group][1] += len(idx)
    return {"mean": {g: {s: float(np.mean(v)) for s, v in d.items()} for g, d in groups.items()},
            "pot_wins": pot_wins}


def _stats(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (n - 1; 0 for one value)."""
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "n": len(v)}


def _fmt(values: list[float]) -> str:
    s = _stats(values)
    if s["n"] == 1:
        return f"{values[0]:.2f}"
    return f"{s['mean']:.2f} ± {s['std']:.2f} ({', '.join(f'{v:.2f}' for v in values)})"


def summarize(rows: dict[str, dict[str, Any]], float_acc: list[float]) -> list[str]:
    """Plain sentences comparing the ILMPQ rows with FP32 and with every baseline (means)."""
    fp = _stats(float_acc)["mean"]
    lines = []
    for label in ILMPQ_ROWS:
        if label not in rows:
            continue
        m = _stats(rows[label]["int"])["mean"]
        gap = fp - m
        where = (f"{gap:.2f} points below" if gap > 0 else f"{-gap:.2f} points above")
        lines.append(f"- {label}: {m:.2f} %, {where} FP32 ({fp:.2f} %): "
                     f"{'within' if gap <= 1.0 else 'NOT within'} 1 point.")
        ahead = [b for b in rows if b not in ILMPQ_ROWS
                 and _stats(rows[b]["int"])["mean"] > m]
        if ahead:
            lines.append(f"  Behind {len(ahead)} baseline row(s) on the mean: " + "; ".join(
                f"{b} {_stats(rows[b]['int'])['mean']:.2f} %" for b in ahead)
                + ". Here the data disagrees with the paper's ordering.")
        else:
            lines.append("  At least as good as every baseline row on the mean.")
    return lines


def _plots(rows: dict[str, dict[str, Any]], float_acc: list[float], layers: dict[str, Any],
           img_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(8, 4.2))
    labels = list(rows)
    means = [_stats(rows[k]["int"])["mean"] for k in labels]
    stds = [_stats(rows[k]["int"])["std"] for k in labels]
    x = np.arange(len(labels))
    for i, k in enumerate(labels):
        color = "tab:orange" if k in ILMPQ_ROWS else "tab:blue"
        ax.errorbar([i], [means[i]], yerr=[stds[i]], fmt="o", ms=8, capsize=6, color=color)
        ax.plot([i + 0.15] * len(rows[k]["int"]), rows[k]["int"], ".", color="0.4", ms=5)
    fp = _stats(float_acc)
    ax.axhline(fp["mean"], color="tab:green", lw=1.5, label=f"FP32 {fp['mean']:.2f} %")
    ax.axhspan(fp["mean"] - 1, fp["mean"], color="tab:green", alpha=0.12,
               label="within 1 point of FP32")
    ax.set_xticks(x, [f"{k}\n{rows[k]['ratio']}" for k in labels], fontsize=7)
    lo = min(min(min(r["int"]) for r in rows.values()), fp["mean"]) - 1
    ax.set_ylim(max(0.0, lo), min(100.0, max(max(max(r["int"]) for r in rows.values()),
                                          fp["mean"]) + 1))
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylabel("top-1, integer model (%)")
    ax.set_title(f"Digits test accuracy by PoT-4:Fixed-4:Fixed-8 ratio "
                 f"(mean ± std over {fp['n']} seeds; grey dots: each seed)", fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    paths.append(img_dir / "quant-accuracy.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(len(layers), 1, figsize=(10, 2.8 * len(layers)), squeeze=False)
    for ax, (label, per_layer) in zip(axes[:, 0], layers.items(), strict=True):
        names = list(per_layer)
        totals = np.array([sum(per_layer[n].values()) for n in names], np.float64)
        bottom = np.zeros(len(names))
        for scheme, color in zip(C.SCHEMES, ("tab:purple", "tab:blue", "tab:red"), strict=True):
            share = np.array([per_layer[n][scheme] for n in names]) / totals * 100
            ax.bar(range(len(names)), share, bottom=bottom, color=color, label=scheme)
            bottom += share
        ax.set_xticks(range(len(names)), [f"{n} ({int(t)})" for n, t in zip(names, totals,
                                                                             strict=True)],
                      rotation=60, ha="right", fontsize=6)
        ax.set_ylabel("filters (%)")
        ax.set_title(f"{label}: scheme share per layer (filters in brackets)", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    paths.append(img_dir / "quant-layer-schemes.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m quant.results", description=__doc__)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--runs", default="runs/results",
                   help="output root of the runs (one folder per row and seed, and the float "
                        "model cache)")
    p.add_argument("--out", default="docs/quantization-results.md")
    p.add_argument("--img-dir", default="docs/img")
    p.add_argument("--reuse", action="store_true",
                   help="reuse runs already in --runs with the same settings (--resume) "
                        "instead of training them again")
    p.add_argument("train_options", nargs=argparse.REMAINDER,
                   help="after --: quant.train options for every row, appended to the recipe")
    args = p.parse_args(argv)
    extra = [a for a in args.train_options if a != "--"]
    recipe = [*RECIPE, *extra]
    t0 = time.time()
    rows: dict[str, dict[str, Any]] = {}
    float_acc: list[float] = []
    layers: dict[str, Any] = {}
    runs_root = Path(args.runs)
    jobs = [(seed, *cfg) for seed in args.seeds for cfg in CONFIGS]
    first_settings = None
    for seed, label, ratio, fl8 in tqdm(jobs, desc="results", unit="run"):
        out = runs_root / f"{ratio.replace(':', '-')}{'-fl8' if fl8 else ''}-s{seed}"
        argv_run = [*recipe, "--ratio", ratio, "--seed", str(seed), "--root", str(runs_root),
                    "--out", str(out), "--no-progress"]
        if fl8:
            argv_run.append("--first-last-8bit")
        reuse = args.reuse and (out / "metrics.json").is_file()
        argv_run.append("--resume" if reuse else "--force")
        tqdm.write(f"[results] seed {seed}: {label}{' (reused)' if reuse else ''}")
        m = run(build_parser().parse_args(argv_run))
        first_settings = first_settings or m["settings"]
        row = rows.setdefault(label, {"ratio": ratio, "fl8": fl8, "int": [], "fake": [],
                                      "seconds": [], "filters": m["filters"]})
        row["int"].append(m["integer_test_acc"])
        row["fake"].append(m["fake_quant_test_acc"])
        row["seconds"].append(m["seconds"])
        if label == CONFIGS[0][0]:
            float_acc.append(m["float_test_acc"])
        if label in ILMPQ_ROWS and seed == args.seeds[0]:
            layers[label] = m["filters_per_layer"]
    settings = first_settings
    data = digits(seed=args.seeds[0])
    net = ResNet18(num_classes=10, in_channels=1, width=settings["width"],
                   small_stem=settings["small_stem"], input_size=8, mean=data.mean,
                   std=data.std)
    cache = float_cache_path(runs_root, {**settings, "seed": args.seeds[0]})
    net.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True)["model"])
    net.eval()
    err = weight_error_table(net)
    images = _plots(rows, float_acc, layers, Path(args.img_dir))
    total_s = time.time() - t0
    n_test = len(data.test)
    s = settings
    widths = resnet_widths(s["width"])
    command = "python -m quant.results" + (
        "" if args.seeds == [0, 1, 2] else " --seeds " + " ".join(map(str, args.seeds))) + (
        " -- " + " ".join(extra) if extra else "")
    lines = [
        "# Quantization results on the shipped digits data",
        "",
        f"Generated by `{command}` in {total_s / 60:.1f} minutes on {platform.machine()} "
        f"({torch.get_num_threads()} torch thread per run, one run at a time, on a 2-core "
        f"machine shared with other jobs){', some runs reused' if args.reuse else ''}. "
        f"Do not edit by hand.",
        "",
        f"ResNet-18, width {s['width']:g} (channels {widths[0]}-{widths[-1]}), small stem, "
        f"8x8x1 inputs (scikit-learn `load_digits`, pixels scaled to 0..255), {s['act_bits']}-bit "
        f"activations, 8-bit input. Float model: {s['float_epochs']} epochs from scratch, "
        f"AdamW lr {s['lr']:g}, batch {s['batch_size']}, weight decay {s['weight_decay']:g}, "
        f"label smoothing {s['label_smoothing']:g}, cosine schedule. Each quantized row: the "
        f"same float model of its seed, per-filter assignment, calibration, then "
        f"{s['epochs']} QAT epochs (AdamW lr {s['qat_lr']:g}, cosine, BatchNorm folded with "
        f"frozen statistics, distillation from the float model with weight {s['kd']:g} at "
        f"temperature {s['kd_temp']:g}). Seeds: {', '.join(map(str, args.seeds))}; the seed "
        f"also draws the stratified 80/20 split, so each seed has its own {n_test} test "
        f"images. Quantized accuracies are those of the **exported integer model run by the "
        f"golden model** (`quant.golden`); the fake-quant forward's accuracy is shown "
        f"beside it. Mean ± sample standard deviation over the seeds, then each seed's value.",
        "",
        "| method | PoT-4:Fixed-4:Fixed-8 | first/last layer | filters P/F4/F8 | top-1 integer (%) "
        "| top-1 fake-quant (%) | run time (s) |",
        "|---|---|---|---|---|---|---|",
        f"| FP32 | - | float | - | {_fmt(float_acc)} | - | - |",
    ]
    for label, row in rows.items():
        f = row["filters"]
        lines.append(
            f"| {label} | {row['ratio']} | {'8-bit Fixed' if row['fl8'] else 'mixed (same)'} | "
            f"{f['pot4']}/{f['fixed4']}/{f['fixed8']} | {_fmt(row['int'])} | "
            f"{_fmt(row['fake'])} | {np.mean(row['seconds']):.0f} |")
    lines += [
        "",
        f"One test image is {100 / n_test:.2f} percentage points. Run time is per row and seed "
        f"(the float model is trained once per seed, in the first row).",
        "",
        "## The paper's claims on this data",
        "",
        *summarize(rows, float_acc),
        "",
        "![accuracy by ratio](img/quant-accuracy.png)",
        "",
        "The assignment gives every layer the ratio's share of each scheme (largest-remainder "
        "rounding, so small layers deviate): Fixed-8 to the filters with the largest Hessian "
        "eigenvalue, then PoT-4 to the lowest-variance filters. Seed "
        f"{args.seeds[0]}:",
        "",
        "![scheme share per layer](img/quant-layer-schemes.png)",
        "",
        "## Weight quantization error: low- vs high-variance filters",
        "",
        f"Float model of seed {args.seeds[0]}, BatchNorm folded. In each layer the filters are "
        "split at the median of their weight variance; each filter is quantized with each "
        "scheme (per-filter scale, best of the clipping candidates in `quant.quantizers`). "
        "Numbers are mean relative squared error `|w - q(w)|^2 / |w|^2` (lower is better).",
        "",
        "| filters | PoT-4 | Fixed-4 | Fixed-8 | PoT-4 better than Fixed-4 |",
        "|---|---|---|---|---|",
    ]
    for group in ("low", "high"):
        m = err["mean"][group]
        wins, total = err["pot_wins"][group]
        lines.append(f"| {group}-variance half | {m['pot4']:.4f} | {m['fixed4']:.4f} | "
                     f"{m['fixed8']:.5f} | {wins}/{total} ({100 * wins / total:.0f}%) |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    runs_root.mkdir(parents=True, exist_ok=True)
    (runs_root / "summary.json").write_text(json.dumps(
        {"rows": rows, "float": float_acc, "errors": err, "layers": layers,
         "seconds": round(total_s, 1), "settings": settings,
         "images": [str(p) for p in images]}, indent=1))
    print(f"[results] wrote {args.out} and {', '.join(map(str, images))} in "
          f"{total_s / 60:.1f} min")


if __name__ == "__main__":
    main()
