"""The design-space search: its resource model reproduces the build it is calibrated on, every
design it proposes fits, and the pass steps it restricts itself to lose nothing."""

from __future__ import annotations

import json

import pytest

from rtl.build import dse
from rtl.config import PartTooSmallError, preset
from rtl.cycle_model import DdrTiming, resnet18_latency


def _slices(per_row: dict[str, float], base: dict[str, float]) -> dict[str, dict[str, float]]:
    return {str(r): {k: base[k] + per_row[k] * r for k in base} for r in (2, 4)}


def _package(tmp_path, cfg):
    """A build package as the flow writes it, with made-up but plausible Yosys figures."""
    zero = {"LUT": 0.0, "FF": 0.0, "DSP48E1": 0.0, "BRAM36": 0.0}
    pot = {"LUT": 40.0 * cfg.vec_len, "FF": 22.0 * cfg.vec_len, "DSP48E1": 0.0, "BRAM36": 0.0}
    dsp = {"LUT": 21.0 * cfg.vec_len, "FF": 27.0 * cfg.vec_len,
           "DSP48E1": cfg.vec_len / cfg.dsp_pack, "BRAM36": 0.0}
    wb = {"LUT": 30.0, "FF": 60.0, "DSP48E1": 0.0, "BRAM36": 1.5}
    parts = {"accel_core": {"LUT": 9000.0, "FF": 9000.0, "DSP48E1": 20.0, "BRAM36": 30.0,
                            "method": "whole"},
             "pot_array": {"slices": _slices(pot, zero)},
             "dsp_array": {"slices": _slices(dsp, zero)},
             "weight_banks": {"slices": _slices(wb, {**zero, "LUT": 100.0})}}
    folder = tmp_path / f"{cfg.name}-{cfg.config_hash_hex}"
    folder.mkdir()
    (folder / "hwconfig.json").write_text(cfg.to_json())
    (folder / "utilization.json").write_text(json.dumps({"parts": parts}))
    return folder, pot, dsp, wb


def test_model_is_linear_in_rows_from_the_build(tmp_path) -> None:
    cfg = preset("pynq-z2")
    folder, pot, dsp, wb = _package(tmp_path, cfg)
    cal = dse.Calibration.load(folder)
    res = dse.resources(cal, 10, 8)
    # the core (with 2-row arrays), 8 more PoT rows, 6 more DSP rows, 14 more bank rows
    assert res["LUT"] == 9000 + 8 * pot["LUT"] + 6 * dsp["LUT"] + 14 * wb["LUT"]
    assert res["BRAM36"] == 30 + 14 * 1.5


def test_every_proposal_fits_and_is_sorted(tmp_path) -> None:
    cfg = preset("pynq-z2")
    folder, *_ = _package(tmp_path, cfg)
    cal = dse.Calibration.load(folder)
    found = dse.search(cal, ratios=[(60, 35, 5), (100, 0, 0)])
    assert found and [c.ms for c in found] == sorted(c.ms for c in found)
    avail = cfg.resources
    for c in found:
        assert c.resources["LUT"] <= 0.85 * avail["lut"]
        assert c.resources["DSP48E1"] <= avail["dsp"]
        assert c.resources["BRAM36"] <= avail["bram36"]
        _, chain = resnet18_latency(cfg.replace(pot_rows=c.pot_rows, dsp_rows=c.dsp_rows),
                                    c.ratio, timing=DdrTiming.zynq_hp())
        assert chain == c.cycles


def test_command_prints_and_plots(tmp_path, capsys) -> None:
    cfg = preset("pynq-z2")
    folder, *_ = _package(tmp_path, cfg)
    rc = dse.main(["--part", "xc7z020", "--package", str(folder), "--top", "3",
                   "--plot", str(tmp_path / "dse.png")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "best per ratio:" in out and "the paper's 60:35:5 is" in out
    assert (tmp_path / "dse.png").stat().st_size > 10_000


def test_without_figures_it_says_what_to_build(tmp_path, capsys) -> None:
    rc = dse.main(["--part", "xc7z045", "--package", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith(f"error: {tmp_path}: no Yosys figures to calibrate on (")
    assert err.endswith("build the board first with 'python build.py --board <board>'\n")


@pytest.mark.parametrize("part", ["xc7z020", "xc7z045"])
def test_no_build_found(tmp_path, capsys, monkeypatch, part) -> None:
    monkeypatch.chdir(tmp_path)
    assert dse.main(["--part", part]) == 2
    board = {"xc7z020": "pynq-z2", "xc7z045": "zc706"}[part]
    assert capsys.readouterr().err == (
        f"error: no build of {board} under build/ to calibrate on; run 'python build.py "
        f"--board {board}' first (or pass --package)\n")


def test_pass_steps_lose_nothing(tmp_path) -> None:
    """Only rows and lanes where some layer needs a pass fewer are tried: no fitting pair
    of any other counts models faster (every pair on a coarse grid checked)."""
    cfg = preset("pynq-z2")
    folder, *_ = _package(tmp_path, cfg)
    cal = dse.Calibration.load(folder)
    ratio = (60, 35, 5)
    best = dse.search(cal, ratios=[ratio])[0]
    timing = DdrTiming.zynq_hp()
    for pot in range(2, 60):
        for dsp in range(2, 60, 3):
            if not dse._fits(dse.resources(cal, pot, dsp), cfg.part, 0.85):
                break
            try:
                shaped = cfg.replace(pot_rows=pot, dsp_rows=dsp)
            except PartTooSmallError:
                break
            _, chain = resnet18_latency(shaped, ratio, timing=timing)
            assert chain >= best.cycles, (pot, dsp)


def test_pass_steps_are_where_passes_drop() -> None:
    pots, lanes = dse.pass_steps((65, 30, 5), 120)
    # 65:30:5 of 64/128/256/512 filters: 42/83/166/333 PoT-4 filters
    for n in (42, 83, 84, 111):        # 333/4 -> 84 rows, 166/2 and 333/3 -> 111
        assert n in pots
    assert 43 not in pots and 85 not in pots
    # 64 filters: 19 Fixed-4 + 3 Fixed-8 need 19 + 1 (pair alignment) + 6 = 26 lanes
    assert 26 in lanes and 25 not in lanes
