"""Random valid quantized ResNet-18 models, for tests of the golden model and the RTL.

Weights are random but legal for each filter's scheme; requantization parameters are
calibrated on random images so every layer's outputs spread over the activation range
instead of saturating or vanishing (which would make bit-exact comparisons weak).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import contract as C
from . import golden
from .model_format import FORMAT_NAME, FORMAT_VERSION, QModel
from .resnet_graph import resnet18_nodes
from .schemes import parse_ratio, scheme_counts

__all__ = ["random_images", "random_resnet18", "random_schemes", "random_weights"]


def random_schemes(rng: np.random.Generator, rows: int, ratio: tuple[int, int, int]
                   ) -> np.ndarray:
    """A shuffled per-filter scheme code vector with the ratio's filter counts."""
    counts = scheme_counts(rows, ratio)
    codes = np.concatenate([np.full(n, code, np.uint8) for code, n in counts.items()])
    return rng.permutation(codes)


def random_weights(rng: np.random.Generator, schemes: np.ndarray, cols: int) -> np.ndarray:
    """(rows, cols) int8 weights, each row uniformly drawn from its scheme's legal values."""
    out = np.empty((len(schemes), cols), np.int8)
    pot = np.array(C.POT_VALUES, np.int8)
    for row, code in enumerate(schemes):
        if code == C.POT4:
            out[row] = rng.choice(pot, cols)
        else:
            lo, hi = C.weight_range(int(code))
            out[row] = rng.integers(lo, hi + 1, cols)
    return out


def random_images(rng: np.random.Generator, n: int, shape: tuple[int, int, int],
                  bits: int = 8) -> np.ndarray:
    return rng.integers(0, 1 << bits, (n, *shape), dtype=np.int64)


def _calibrated(acc: np.ndarray, target: int, axis: tuple[int, ...]) -> np.ndarray:
    """Per-channel real multiplier sending the 99th percentile of |acc| to ``target``."""
    p = np.percentile(np.abs(acc), 99, axis=axis)
    return target / np.maximum(p, 1.0)


def _requant_arrays(scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = [C.quantize_multiplier(float(s)) for s in scale]
    return (np.array([m for m, _ in pairs], np.uint16), np.array([s for _, s in pairs], np.uint8))


def random_resnet18(seed: int = 0, *, input_shape: tuple[int, int, int] = (3, 32, 32),
                    width: float = 0.25, num_classes: int = 10, act_bits: int = 4,
                    ratio: str | tuple[int, int, int] = "ilmpq-1",
                    small_stem: bool | None = None, first_last_8bit: bool = False,
                    calib_images: int = 2) -> QModel:
    """A random, valid, calibrated ResNet-18 integer model.

    ``small_stem`` defaults to True for inputs smaller than 64 pixels. With
    ``first_last_8bit`` the first conv and the fc are all Fixed-8 (the papers' baseline);
    otherwise every layer, first and last included, uses the mixed ratio.
    """
    rng = np.random.default_rng(seed)
    ratio = parse_ratio(ratio)
    if small_stem is None:
        small_stem = min(input_shape[1:]) < 64
    nodes = resnet18_nodes(width=width, num_classes=num_classes, in_channels=input_shape[0],
                           small_stem=small_stem)
    manifest: dict[str, Any] = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "act_bits": act_bits,
        "input_bits": 8, "input_shape": list(input_shape), "output": "fc", "nodes": nodes,
        "meta": {"generator": "random_resnet18", "seed": seed, "width": width,
                 "ratio": list(ratio), "first_last_8bit": first_last_8bit},
    }
    model = QModel(manifest, {})
    act_max = (1 << act_bits) - 1
    values = {"input": random_images(rng, calib_images, input_shape)}
    first_conv = next(n["name"] for n in nodes if n["op"] == "conv")
    for node in nodes:
        name, op = node["name"], node["op"]
        ins = [values[i] for i in node["inputs"]]
        if op in ("conv", "fc"):
            rows = node["out_channels"] if op == "conv" else node["out_features"]
            cols = (node["in_channels"] * node["kernel"] ** 2 if op == "conv"
                    else node["in_features"])
            eight = first_last_8bit and (name == first_conv or op == "fc")
            schemes = (np.full(rows, C.FIXED8, np.uint8) if eight
                       else random_schemes(rng, rows, ratio))
            weight = random_weights(rng, schemes, cols)
            if op == "conv":
                weight = weight.reshape(rows, node["in_channels"], node["kernel"], node["kernel"])
                dots = golden.conv2d_acc(ins[0], weight, node["stride"], node["padding"])
                axis = (0, 2, 3)
            else:
                dots = golden.dot_products(ins[0].reshape(len(ins[0]), -1), weight)
                axis = (0,)
            spread = np.maximum(dots.std(axis=axis), 1.0)
            bias = np.round(rng.normal(0.0, 0.5, rows) * spread).astype(np.int32)
            target = act_max if op == "conv" else 1000
            shaped = bias[None, :, None, None] if op == "conv" else bias[None, :]
            mult, shift = _requant_arrays(_calibrated(dots + shaped, target, axis))
            for key, arr in (("weight", weight), ("scheme", schemes), ("bias", bias),
                             ("mult", mult), ("shift", shift)):
                model.arrays[f"{name}.{key}"] = arr
        elif op == "add":
            # Each side gets a real scale near 1/2 (jittered) so the sum stays in range.
            pairs = [C.quantize_multiplier(float(rng.uniform(0.35, 0.75))) for _ in range(2)]
            node["mult"] = [m for m, _ in pairs]
            node["shift"] = [s for _, s in pairs]
        elif op == "avgpool":
            hw = ins[0].shape[2] * ins[0].shape[3]
            node["mult"], node["shift"] = C.quantize_multiplier(1.5 / hw)
        values[name] = golden.run_node(model, node, ins)
    model.validate()
    return model


def random_conv_layer(rng: np.random.Generator, *, cin: int, cout: int, kernel: int,
                      stride: int, pad: int, size: int, ratio: tuple[int, int, int],
                      relu: bool, in_bits: int, act_bits: int = 4
                      ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """One random conv layer with calibrated requantization, for RTL tests.

    Returns ``(x, schemes, params, node)``: a (1, cin, size, size) input of ``in_bits``-bit
    values, per-filter scheme codes, the arrays ``weight/bias/mult/shift``, and the node
    fields ``kernel/stride/padding/relu`` that ``golden.conv`` reads.
    """
    schemes = random_schemes(rng, cout, ratio)
    w = random_weights(rng, schemes, cin * kernel * kernel).reshape(cout, cin, kernel, kernel)
    x = rng.integers(0, 1 << in_bits, (1, cin, size, size))
    acc = golden.conv2d_acc(x, w, stride, pad)
    spread = np.maximum(acc.std(axis=(0, 2, 3)), 1.0)
    bias = np.round(rng.normal(0.0, 0.5, cout) * spread).astype(np.int32)
    hi = (1 << act_bits) - 1
    mult, shift = _requant_arrays(hi / (2.5 * spread))
    node = {"kernel": kernel, "stride": stride, "padding": pad, "relu": relu}
    return x, schemes, {"weight": w, "scheme": schemes, "bias": bias, "mult": mult,
                        "shift": shift}, node
