"""The bitstream and package steps with a Vivado stand-in that runs the generated script under
``tclsh`` (tests/test_vivado_tcl.py): what reaches ``package.json`` and the report, and how a
timing failure or a wrong clock stops ``build.py``."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from rtl.build import flow
from rtl.build import parts as T
from rtl.build.synth import SynthResult
from rtl.build.vivado import fabric_clock, package_facts
from rtl.config import preset
from tests.test_vivado_tcl import STUBS, TCLSH, accel_ports

pytestmark = pytest.mark.skipif(
    TCLSH is None, reason="tclsh missing: ./run installs the Debian package tcl")

BOARDS = {"pynq-z2": preset("pynq-z2"), "zc706": preset("zc706")}


def _tiny(board: str):
    return BOARDS[board].replace(name="tiny", pot_rows=2, pot_cols=4, dsp_rows=2, dsp_cols=4)


@pytest.fixture
def quick_parts(monkeypatch):
    """One-line parts and a synthesis that answers at once; the real accel_top."""
    def parts(cfg):
        return [T.AcceleratorPart(name="accel_core", description="stand-in", design=object(),
                                  to_verilog=lambda: "module accel_core; endmodule\n")]

    def synthesize(path, *, top, work_dir, timing=None):
        return SynthResult(top=top, family="xc7", cells={"LUT6": 100, "FDRE": 100},
                           report="", log="", seconds=0.1)

    monkeypatch.setattr(T, "accelerator_parts", parts)
    monkeypatch.setattr(flow, "synthesize", synthesize)


def _vivado(tmp_path: Path, board: str, **scenario: str) -> dict[str, str]:
    """An environment whose ``vivado`` runs build.tcl under the stand-ins."""
    cfg = _tiny(board)
    ports, intfs = accel_ports(T.top_verilog(cfg))
    prelude = tmp_path / "vivado_stubs.tcl"
    prelude.write_text(STUBS)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "vivado"
    exe.write_text(
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do case $1 in -source) s=$2; shift;; esac; shift; done\n"
        f"exec {shlex.quote(TCLSH or 'tclsh')} {shlex.quote(str(prelude))} \"$s\"\n")
    exe.chmod(0o755)
    clock = fabric_clock(board, cfg)
    answers = {"fclk0": f"{clock.fclk0_mhz:.6f}", "clock_hz": str(round(clock.clock_mhz * 1e6)),
               "period": f"{1000 / clock.clock_mhz:.3f}", "clock": "clk_fpga_0", **scenario}
    return {"PATH": f"{bindir}:/usr/bin:/bin", "STUB_LOG": str(tmp_path / "calls.log"),
            "STUB_SCENARIO": " ".join(f"{k} {{{v}}}" for k, v in answers.items()),
            "STUB_MODULE": T.TOP_NAME, "STUB_PORTS": " ".join(ports),
            "STUB_INTFS": " ".join(intfs)}


def _ctx(tmp_path: Path, board: str, env: dict[str, str], monkeypatch) -> flow.BuildContext:
    for key in ("STUB_LOG", "STUB_SCENARIO", "STUB_MODULE", "STUB_PORTS", "STUB_INTFS"):
        monkeypatch.setenv(key, env[key])
    path = tmp_path / "tiny.json"
    path.write_text(_tiny(board).to_json())
    return flow.make_context(board, config=path, out=tmp_path / "build", jobs=1,
                             echo=lambda s: None, env={"PATH": env["PATH"]})


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_package_has_what_the_firmware_reads(tmp_path, quick_parts, monkeypatch, board):
    ctx = _ctx(tmp_path, board, _vivado(tmp_path, board), monkeypatch)
    flow.run_flow(ctx)
    manifest = json.loads((ctx.out / "package.json").read_text())
    cfg = _tiny(board)
    facts = package_facts(board, cfg, T.vivado_design(cfg))
    assert {k: manifest[k] for k in facts} == facts
    assert manifest["regs_base"] == 0x43C0_0000 and manifest["regs_size"] >= 4096
    assert manifest["clock_mhz"] == cfg.clock_mhz
    assert manifest["fclk0_mhz"] == (100.0 if board == "zc706" else cfg.clock_mhz)
    # Feature maps on HP0, weights on the next ports (HwConfig.weight_ports).
    assert manifest["hp_ports"] == [f"S_AXI_HP{i}" for i in range(1 + cfg.weight_ports)]
    assert (manifest["bitstream"], manifest["bin"], manifest["hwh"]) == (
        "accel.bit", "accel.bin", "accel.hwh")
    assert (ctx.out / "accel.bin").read_text() == "bin"
    status = json.loads((ctx.work / "bitstream.json").read_text())
    # What Vivado reports (the fake: six decimals, as the real one).
    assert status["clock"] == pytest.approx({"fclk0_mhz": manifest["fclk0_mhz"],
                                             "clock_mhz": cfg.clock_mhz}, rel=1e-6)
    assert status["timing_check"]["setup_slack_ns"] == "0.512"
    report = (ctx.out / "build-report.md").read_text()
    assert "- registers: AXI4-Lite at 0x43C00000 (4096 bytes) on M_AXI_GP0; DDR through " \
           "S_AXI_HP0" in report
    if board == "zc706":
        assert ("- clock: 150 MHz fabric clock (an MMCM makes it from FCLK0 = 100 MHz, which "
                "the PS cannot set to 150 MHz); the estimate and timing use it") in report
    else:
        assert ("- clock: 125 MHz fabric clock (FCLK0 of the processing system (IO PLL / "
                "4 / 2)); the estimate and timing use it") in report
    assert "- `accel.bin`: the bitstream for the Linux FPGA manager (byte-swapped)" in report


def test_timing_failure_fails_the_build(tmp_path, quick_parts, monkeypatch):
    env = _vivado(tmp_path, "zc706", setup_slack="-0.213", clock="clk_out1_system_clk_wiz_0",
                  period="6.667")
    ctx = _ctx(tmp_path, "zc706", env, monkeypatch)
    with pytest.raises(flow.FlowError) as info:
        flow.run_flow(ctx)
    assert str(info.value) == (
        "timing not met at 150 MHz: worst setup slack -0.213 ns on clock "
        "clk_out1_system_clk_wiz_0 from system_i/accel/inst/a_reg/C to "
        "system_i/accel/inst/b_reg/D (reaches about 145.3 MHz); see "
        f"{ctx.project_dir / 'timing.rpt'}")
    assert info.value.exit_code == 1
    assert not (ctx.project_dir / "accel.bit").exists()
    assert not (ctx.out / "package.json").exists()


def test_wrong_clock_fails_the_build(tmp_path, quick_parts, monkeypatch):
    env = _vivado(tmp_path, "zc706", clock_hz="142857142")
    ctx = _ctx(tmp_path, "zc706", env, monkeypatch)
    with pytest.raises(flow.FlowError, match=r"^Vivado failed \(exit 1\); see .*vivado\.log$"):
        flow.run_flow(ctx)
    log = (ctx.logs / "bitstream.log").read_text()
    assert ("clock: the accelerator's clock is '142.857142' MHz, not the 150 MHz the design "
            "was built for") in log


def test_missing_bin_fails_the_build(tmp_path, quick_parts, monkeypatch):
    ctx = _ctx(tmp_path, "pynq-z2", _vivado(tmp_path, "pynq-z2", skip="bin"), monkeypatch)
    with pytest.raises(flow.FlowError, match=r"^Vivado finished but .*accel\.bin is missing; "
                                             r"see .*vivado\.log$"):
        flow.run_flow(ctx)


def test_clock_no_one_can_make_is_bad_input(tmp_path):
    path = tmp_path / "odd.json"
    path.write_text(preset("pynq-z2").replace(name="odd", clock_mhz=111.1).to_json())
    with pytest.raises(ValueError, match=r"^clock_mhz 111\.1 can be made neither by the "
                                         r"processing system"):
        flow.make_context("pynq-z2", config=path, out=tmp_path, env={"PATH": ""})
