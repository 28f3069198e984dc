"""The build report's figures are drawn from the records the build steps write."""

from __future__ import annotations

import json
from dataclasses import asdict

from rtl.build.plots import write_all
from rtl.config import preset
from rtl.cycle_model import DdrTiming, resnet18_cycles


def test_figures_from_the_build_records(tmp_path) -> None:
    cfg = preset("pynq-z2")
    work = tmp_path / "work"
    work.mkdir()
    layers = resnet18_cycles(cfg, "60:35:5", timing=DdrTiming.zynq_hp())
    (work / "engine-model.json").write_text(json.dumps(
        {"layers": [asdict(layer) for layer in layers]}))
    (work / "utilization.json").write_text(json.dumps(
        {"total": {"LUT": 40000, "FF": 30000, "DSP48E1": 150, "BRAM36": 100.5}}))
    names = write_all(work, tmp_path, cfg, "pynq-z2")
    assert names == ["latency.png", "roofline.png", "resources.png"]
    for name in names:
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_per_layer_figure_of_a_preset(tmp_path, capsys) -> None:
    """``python -m rtl.build.plots --board``: the phases stacked per layer, without a build."""
    from rtl.build.plots import main
    from rtl.cycle_model import phase_totals, resnet18_latency

    out = tmp_path / "time.png"
    assert main(["--board", "zc706", "--out", str(out)]) == 0
    layers, chain = resnet18_latency(preset("zc706"), "65:30:5", timing=DdrTiming.zynq_hp())
    ms = sum(layer.cycles for layer in layers) / 150e3
    assert capsys.readouterr().out == (f"{out}: {len(layers)} layers, {ms:.2f} ms layer by "
                                       f"layer, {chain / 150e3:.2f} ms as one chain\n")
    assert sum(phase_totals(layers).values()) == sum(layer.cycles for layer in layers)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
