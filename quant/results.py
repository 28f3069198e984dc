"""Write docs/quantization-results.md: the Table I-style accuracy comparison on the shipped
digits data and the per-scheme weight quantization error of low- vs high-variance filters.

Reproduce with ``python -m quant.results`` (add ``--seeds 0 1 2`` for more seeds).
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

from . import contract as C
from .qmodel import fold_layer, layer_names
from .quantizers import weight_to_int
from .resnet import ResNet18
from .train import build_parser, run

__all__ = ["CONFIGS", "main", "weight_error_table"]

#: (row label, --ratio, --first-last-8bit) in the order of the paper's Table I.
CONFIGS: tuple[tuple[str, str, bool], ...] = (
    ("Fixed-4, 8-bit first/last", "0:100:0", True),
    ("Fixed-4, all layers", "0:100:0", False),
    ("PoT-4, all layers", "100:0:0", False),
    ("PoT+Fixed 50:50:0", "50:50:0", False),
    ("ILMPQ-1 60:35:5", "60:35:5", False),
    ("ILMPQ-2 65:30:5", "65:30:5", False),
)


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


def _fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values):.2f} ({', '.join(f'{v:.2f}' for v in values)})"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m quant.results", description=__doc__)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=4, help="QAT epochs per configuration")
    p.add_argument("--float-epochs", type=int, default=15)
    p.add_argument("--runs", default="runs/results", help="directory for the runs")
    p.add_argument("--out", default="docs/quantization-results.md")
    args = p.parse_args(argv)
    t0 = time.time()
    rows: dict[str, dict[str, Any]] = {}
    float_acc: list[float] = []
    for seed in args.seeds:
        for label, ratio, fl8 in CONFIGS:
            argv_run = ["--ratio", ratio, "--seed", str(seed), "--epochs", str(args.epochs),
                        "--float-epochs", str(args.float_epochs), "--no-progress",
                        "--out", str(Path(args.runs) / f"{ratio.replace(':', '-')}"
                                                       f"{'-fl8' if fl8 else ''}-s{seed}")]
            if fl8:
                argv_run.append("--first-last-8bit")
            print(f"[results] seed {seed}: {label}", flush=True)
            m = run(build_parser().parse_args(argv_run))
            row = rows.setdefault(label, {"ratio": ratio, "fl8": fl8, "int": [], "fake": [],
                                          "seconds": [], "filters": m["filters"]})
            row["int"].append(m["integer_test_acc"])
            row["fake"].append(m["fake_quant_test_acc"])
            row["seconds"].append(m["seconds"])
            if m["float_test_acc"] is not None and len(float_acc) < len(args.seeds):
                float_acc.append(m["float_test_acc"])
    from .data import digits
    from .train import _arch
    data = digits(seed=args.seeds[0])
    arch = _arch(build_parser().parse_args([]), data)
    cache = sorted(Path("runs/float").glob(f"digits-*-e{args.float_epochs}-s{args.seeds[0]}.pt"))
    net = ResNet18(**arch)
    net.load_state_dict(torch.load(cache[0], map_location="cpu", weights_only=False)["model"])
    net.eval()
    err = weight_error_table(net)
    n_test = len(data.test)
    lines = [
        "# Quantization results on the shipped digits data",
        "",
        "Generated by `python -m quant.results"
        f"{'' if args.seeds == [0] else ' --seeds ' + ' '.join(map(str, args.seeds))}"
        f"{'' if args.epochs == 4 else f' --epochs {args.epochs}'}` "
        f"(total {time.time() - t0:.0f} s on {platform.machine()} with "
        f"{torch.get_num_threads()} torch threads). Do not edit by hand.",
        "",
        f"ResNet-18, width {arch['width']} (channels {16}-{128}), small stem, 8x8x1 inputs "
        f"(scikit-learn `load_digits`, pixels scaled to 0..255), 4-bit activations, "
        f"8-bit input. Float model: {args.float_epochs} epochs from scratch; each quantized "
        f"row: the same float model, per-filter assignment, then {args.epochs} QAT epochs. "
        f"Seeds: {', '.join(map(str, args.seeds))}. Test set: {n_test} images (stratified 20% "
        f"split). Quantized accuracies are those of the **exported integer model run by the "
        f"golden model** (`quant.golden`); the fake-quant forward's accuracy is shown beside "
        f"it.",
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
        f"One test image is {100 / n_test:.2f} percentage points; with one seed, differences "
        f"of a point or two between rows are within run-to-run noise.",
        "",
        "## Weight quantization error: low- vs high-variance filters",
        "",
        "Float model above, BatchNorm folded. In each layer the filters are split at the "
        "median of their weight variance; each filter is quantized with each scheme "
        "(per-filter scale, best of the clipping candidates in `quant.quantizers`). Numbers are "
        "mean relative squared error `|w - q(w)|^2 / |w|^2` (lower is better).",
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
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    (Path(args.runs) / "summary.json").write_text(json.dumps(
        {"rows": rows, "float": float_acc, "errors": err}, indent=1))
    print(f"[results] wrote {args.out}")


if __name__ == "__main__":
    main()
