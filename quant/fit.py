"""Does a quantized model fit a hardware configuration? Bit widths, formats, sizes, accumulator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import contract as C
from .model_format import QModel

if TYPE_CHECKING:
    from rtl.config import HwConfig

__all__ = ["ModelMismatchError", "check_fits", "layer_acc_bound"]


class ModelMismatchError(ValueError):
    """The model cannot run on hardware built from this configuration."""


def layer_acc_bound(model: QModel, name: str) -> int:
    """Largest ``|bias + dot|`` layer ``name`` can produce for any legal input: every weight
    of each filter times the largest input value, plus that filter's |bias|."""
    node = model.node(name)
    p = model.params(name)
    src = node["inputs"][0]
    in_bits = model.input_bits if src == "input" else model.act_bits
    w = np.abs(p["weight"].reshape(len(p["bias"]), -1).astype(np.int64)).sum(axis=1)
    return int((w * ((1 << in_bits) - 1) + np.abs(p["bias"].astype(np.int64))).max())


def check_fits(model: QModel, cfg: HwConfig) -> None:
    """Raise ModelMismatchError listing every way ``model`` does not fit ``cfg``.

    A layer that passes has ``K <= max_reduction`` and ``|bias| <= max_abs_dot``, so
    ``|bias + dot| <= 2 * max_abs_dot < 2**(acc_bits - 1)``: it cannot overflow the
    accumulator (docs/arithmetic.md, "Accumulator width").
    """
    problems: list[str] = []
    if model.act_bits != cfg.act_bits:
        problems.append(f"model uses {model.act_bits}-bit activations, hardware "
                        f"{cfg.act_bits}-bit")
    if model.input_bits > cfg.input_bits:
        problems.append(f"model input is {model.input_bits}-bit, hardware reads "
                        f"{cfg.input_bits}-bit")
    if cfg.split_input:      # the pixels reach the arrays as nibbles: only a conv splits them
        others = sorted(n["name"] for n in model.nodes
                        if "input" in n["inputs"] and n["op"] not in ("conv", "fc"))
        if others:
            problems.append(f"{', '.join(others)} read(s) the network input, but this "
                            f"hardware (split_input) takes pixels only into a conv or fc "
                            f"layer; build without split_input")
    info = model.infer()
    for node in model.layers():
        name = node["name"]
        p = model.params(name)
        used = {C.SCHEMES[int(s)] for s in np.unique(p["scheme"])}
        missing = sorted(used - set(cfg.weight_formats))
        if missing:
            problems.append(f"{name}: uses {', '.join(missing)} weights, which the hardware "
                            f"does not implement")
        k = p["weight"][0].size
        if k > cfg.max_reduction:
            problems.append(f"{name}: dot products of length {k} exceed max_reduction "
                            f"{cfg.max_reduction}")
        kernel = p["weight"].shape[2] if p["weight"].ndim == 4 else 1
        steps = cfg.steps(kernel, p["weight"].shape[1])
        problem = cfg.pass_rows_problem(steps)
        if problem:
            problems.append(f"{name}: {problem}")
        rows = len(p["bias"])
        cin = p["weight"].shape[1]
        if max(rows, cin) > cfg.max_channels:
            problems.append(f"{name}: {max(rows, cin)} channels exceed max_channels "
                            f"{cfg.max_channels}")
        if np.abs(p["bias"].astype(np.int64)).max() > cfg.max_abs_dot:
            problems.append(f"{name}: a bias exceeds the accumulator-domain limit "
                            f"{cfg.max_abs_dot}")
    for name, meta in info.items():
        if max(meta.shape[1:]) > cfg.max_spatial:
            problems.append(f"{name}: feature map {meta.shape[1]}x{meta.shape[2]} exceeds "
                            f"max_spatial {cfg.max_spatial}")
    if problems:
        raise ModelMismatchError(
            f"model does not fit hardware config {cfg.name!r} ({cfg.config_hash_hex}):\n  - "
            + "\n  - ".join(problems)
            + "\nRe-export the model for this configuration, or build hardware from a config "
              "that matches it (--config FILE).")
