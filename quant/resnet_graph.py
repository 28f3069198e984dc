"""ResNet-18 as a graph of integer-model nodes, named like torchvision's modules."""

from __future__ import annotations

from typing import Any

__all__ = ["layer_shapes", "resnet18_nodes", "resnet_widths"]

_BASE = (64, 128, 256, 512)


def resnet_widths(width: float) -> tuple[int, ...]:
    """Channel counts of the four stages for a width multiplier (at least one channel each)."""
    if not isinstance(width, (int, float)) or isinstance(width, bool) or not 0 < width <= 8:
        raise ValueError(f"width multiplier must be a number in (0, 8], not {width!r}")
    return tuple(max(1, round(c * width)) for c in _BASE)


def _conv(name: str, src: str, cin: int, cout: int, k: int, s: int, relu: bool) -> dict[str, Any]:
    return {"name": name, "op": "conv", "inputs": [src], "in_channels": cin,
            "out_channels": cout, "kernel": k, "stride": s, "padding": k // 2, "relu": relu}


def resnet18_nodes(*, width: float = 1.0, num_classes: int = 1000, in_channels: int = 3,
                   small_stem: bool = False) -> list[dict[str, Any]]:
    """Nodes of ResNet-18 in execution order, without requantization parameters.

    The standard stem is conv 7x7/2 + max-pool 3x3/2; ``small_stem`` (for 8x8 or 32x32
    images) is a single conv 3x3/1 and no max-pool. Requant fields of ``add`` and
    ``avgpool`` nodes are filled with placeholders (multiplier 1, shift 0) for the caller.
    """
    widths = resnet_widths(width)
    nodes: list[dict[str, Any]] = []
    if small_stem:
        nodes.append(_conv("conv1", "input", in_channels, widths[0], 3, 1, True))
        x = "conv1"
    else:
        nodes.append(_conv("conv1", "input", in_channels, widths[0], 7, 2, True))
        nodes.append({"name": "maxpool", "op": "maxpool", "inputs": ["conv1"],
                      "kernel": 3, "stride": 2, "padding": 1})
        x = "maxpool"
    cin = widths[0]
    for stage, cout in enumerate(widths, start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            p = f"layer{stage}.{block}"
            nodes.append(_conv(f"{p}.conv1", x, cin, cout, 3, stride, True))
            nodes.append(_conv(f"{p}.conv2", f"{p}.conv1", cout, cout, 3, 1, False))
            shortcut = x
            if stride != 1 or cin != cout:
                nodes.append(_conv(f"{p}.downsample.0", x, cin, cout, 1, stride, False))
                shortcut = f"{p}.downsample.0"
            nodes.append({"name": f"{p}.add", "op": "add", "inputs": [f"{p}.conv2", shortcut],
                          "relu": True, "mult": [1, 1], "shift": [0, 0]})
            x, cin = f"{p}.add", cout
    nodes.append({"name": "avgpool", "op": "avgpool", "inputs": [x], "mult": 1, "shift": 0})
    nodes.append({"name": "fc", "op": "fc", "inputs": ["avgpool"], "in_features": cin,
                  "out_features": num_classes})
    return nodes


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
