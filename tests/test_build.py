"""build.py and rtl.build.flow: input errors, fit check, Yosys reports, resuming, packages."""

import json
import os
import re
import stat
from pathlib import Path

import pytest

import build
from rtl.build import flow, resources
from rtl.build import parts as T
from rtl.build.synth import SynthResult
from rtl.build.vivado import build_tcl
from rtl.config import HwConfig, preset

DATA = Path(__file__).parent / "data"

#: A config with tiny arrays, so that real Yosys runs take seconds; 6 rows, so that the
#: arrays are estimated from slices of 2 and 4 rows.
# 100 MHz, FCLK0 (the preset's 125 MHz is too; tests/test_vivado.py checks it).
# 8-bit arrays, one weight port, 16 adder lanes: the pynq-z2 layout before 2026-12-05.
TINY = preset("pynq-z2").replace(name="tiny", pot_rows=6, pot_cols=4, dsp_rows=6, dsp_cols=4,
                                 clock_mhz=100.0, split_input=False, dsp_pack=3,
                                 act_buf_depth=4096, weight_buf_depth=512, weight_ports=1,
                                 adder_lanes=16)


def _write(path: Path, cfg: HwConfig) -> str:
    path.write_text(cfg.to_json())
    return str(path)


def _main(capsys, *args):
    rc = build.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


# ---- input errors ------------------------------------------------------------


def test_unknown_board(capsys, tmp_path):
    rc, _, err = _main(capsys, "--board", "zedboard", "--out", str(tmp_path))
    assert rc == 2
    assert err == "error: unknown board 'zedboard'; valid boards: pynq-z2, zc706\n"


def test_unreadable_config(capsys, tmp_path):
    missing = tmp_path / "nope.json"
    rc, _, err = _main(capsys, "--config", str(missing), "--out", str(tmp_path))
    assert rc == 2
    assert err == f"error: cannot read HwConfig file {str(missing)!r}: No such file or directory\n"


def test_invalid_config(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    data = json.loads(preset("zc706").to_json())
    data["pot_rowz"] = 3
    bad.write_text(json.dumps(data))
    rc, _, err = _main(capsys, "--config", str(bad), "--out", str(tmp_path))
    assert rc == 2
    assert err.startswith(f"error: {bad}: HwConfig has no field 'pot_rowz'; known fields: ")
    assert "Traceback" not in err
    data = json.loads(preset("zc706").to_json())
    data["pot_rows"] = "52"
    bad.write_text(json.dumps(data))
    rc, _, err = _main(capsys, "--config", str(bad), "--out", str(tmp_path))
    assert (rc, err) == (2, f"error: {bad}: HwConfig.pot_rows must be an integer, not '52'\n")
    bad.write_text("{not json")
    rc, _, err = _main(capsys, "--config", str(bad), "--out", str(tmp_path))
    assert rc == 2 and err.startswith(f"error: {bad}: HwConfig JSON is malformed: ")


def test_part_mismatch(capsys, tmp_path):
    cfg = _write(tmp_path / "zc.json", preset("zc706"))
    rc, _, err = _main(capsys, "--board", "pynq-z2", "--config", cfg, "--out", str(tmp_path))
    assert rc == 2
    assert err == ("error: config part xc7z045ffg900-2 does not match board pynq-z2 "
                   "(part xc7z020clg400-1)\n")


def test_bad_ratio_and_steps(capsys, tmp_path):
    rc, _, err = _main(capsys, "--ratio", "60:40", "--out", str(tmp_path))
    assert rc == 2 and err.startswith("error: ratio must look like 'POT4:FIXED4:FIXED8'")
    rc, _, err = _main(capsys, "--from", "place", "--out", str(tmp_path))
    assert rc == 2
    assert err == ("error: unknown step 'place' for --from; steps in order: elaborate, regmap, "
                   "estimate, synthesize, bitstream, package\n")
    rc, _, err = _main(capsys, "--from", "package", "--to", "regmap", "--out", str(tmp_path))
    assert rc == 2
    assert err.startswith("error: --from package comes after --to regmap")


# ---- Yosys reports and the fit check --------------------------------------------------


def test_recorded_yosys_report_dsp_array():
    """A real report: a DSP array of 2 lanes x 4 (4 DSP48E1), see tests/data/README.md."""
    res = resources.synth_result_from_stat((DATA / "yosys_stat_dsp_array_tiny.json").read_text(),
                                      "dsp_array")
    # Numbers as printed in the text report beside it.
    text = (DATA / "yosys_stat_dsp_array_tiny.txt").read_text()
    counts = {m[2]: int(m[1]) for m in re.finditer(r"^\s+(\d+)\s+([A-Z][A-Z0-9]+)$", text, re.M)}
    assert counts == {"BUFG": 1, "CARRY4": 32, "DSP48E1": 4, "FDRE": 166, "INV": 12,
                      "LUT2": 79, "LUT3": 85, "LUT4": 7, "LUT5": 1}
    assert res.cells == counts
    assert resources.resource_usage(res) == {"LUT": 79 + 85 + 7 + 1 + 12, "FF": 166, "DSP48E1": 4,
                                        "BRAM36": 0}


def test_recorded_yosys_report_memories():
    """A real report with block RAM: one RAMB18E1 and two RAMB36E1."""
    res = resources.synth_result_from_stat((DATA / "yosys_stat_mems.json").read_text(), "mems")
    assert res.cells == {"BUFG": 1, "FDRE": 128, "RAMB18E1": 1, "RAMB36E1": 2}
    assert resources.resource_usage(res) == {"LUT": 0, "FF": 128, "DSP48E1": 0, "BRAM36": 2.5}


def test_lut_as_memory_counts():
    res = SynthResult(top="x", family="xc7", report="", log="",
                      cells={"LUT6": 10, "SRLC32E": 3, "RAM64M": 2, "INV": 1, "FDSE": 2,
                             "FDCE": 1})
    assert resources.resource_usage(res) == {"LUT": 10 + 3 + 8 + 1, "FF": 3, "DSP48E1": 0,
                                        "BRAM36": 0}


def test_fit_check():
    cfg = preset("pynq-z2")
    rows = resources.check_fit({"LUT": 53_200, "FF": 10, "DSP48E1": 220, "BRAM36": 0.5}, cfg)
    assert [(r["resource"], r["fits"]) for r in rows] == [
        ("LUT", True), ("FF", True), ("DSP48E1", True), ("BRAM36", True)]
    with pytest.raises(resources.FitError) as info:
        resources.check_fit({"LUT": 80_000, "FF": 10, "DSP48E1": 221, "BRAM36": 140.5}, cfg)
    assert str(info.value) == (
        "config 'pynq-z2' does not fit xc7z020clg400-1:\n"
        "  LUT      needed    80,000  available    53,200  (150%)\n"
        "  DSP48E1  needed       221  available       220  (100%)\n"
        "  BRAM36   needed     140.5  available       140  (100%)\n"
        "hint: reduce pot_rows or pot_cols in the config (the PoT array is built from LUTs)\n"
        "hint: reduce dsp_rows or dsp_cols in the config (dsp_rows x dsp_cols / dsp_pack "
        "DSP48E1 slices)\n"
        "hint: reduce act_buf_depth, weight_buf_depth or out_buf_depth in the config")


def test_extrapolate():
    assert resources.SLICE_ROWS == (2, 4)
    small = {"LUT": 2560, "FF": 1242, "DSP48E1": 0, "BRAM36": 0.5}
    large = {"LUT": 5108, "FF": 2468, "DSP48E1": 0, "BRAM36": 1.0}
    # per row: 1274 LUT, 613 FF, 0.25 BRAM36; at 52 rows: 2560 + 50 * 1274 = 66260
    assert resources.extrapolate(small, large, 52) == {"LUT": 66_260, "FF": 1242 + 50 * 613,
                                                  "DSP48E1": 0, "BRAM36": 13.0}
    assert resources.extrapolate(small, large, 2) == small
    assert resources.extrapolate({"LUT": 10, "FF": 3, "DSP48E1": 8, "BRAM36": 0},
                            {"LUT": 21, "FF": 4, "DSP48E1": 16, "BRAM36": 0}, 5) == {
        "LUT": 26, "FF": 4, "DSP48E1": 20, "BRAM36": 0}  # 26.5 -> 26, 4.5 -> 4 (half to even)


def test_faster_netlists_change_nothing(tmp_path):
    """The RTLIL of the tiny top is the same with and without ``faster_netlists`` (in fresh
    processes with one hash seed: Amaranth's internal names depend on it)."""
    import subprocess
    import sys

    code = ("import hashlib, sys; from amaranth.back import rtlil; "
            "from rtl.build import parts as T; from rtl.config import HwConfig; "
            "from rtl.top import top_module; "
            "cfg = HwConfig.from_json(open(sys.argv[1]).read()); "
            "top = top_module(cfg); "
            "text = T.to_rtlil(top, 'accel_top') if sys.argv[2] == 'fast' else "
            "rtlil.convert(top, name='accel_top'); "
            "print(hashlib.sha256(text.encode()).hexdigest(), len(text))")
    path = _write(tmp_path / "tiny.json", TINY)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    root = Path(__file__).resolve().parent.parent
    got = [subprocess.run([sys.executable, "-c", code, path, mode], env=env, cwd=root,
                          capture_output=True, text=True, check=True).stdout
           for mode in ("fast", "plain")]
    assert got[0] == got[1] and int(got[0].split()[1]) > 100_000


# ---- the flow with stand-in parts and synthesis (fast) -------------------------------------------


class _Dummy:
    pass


class FakeTools:
    """Knobs of the stand-in tools: LUTs of the PoT array per MAC, and the synthesis calls."""

    def __init__(self) -> None:
        self.pot_macs = 8
        self.calls: list[str] = []


@pytest.fixture
def fake_tools(monkeypatch):
    """Parts with one-line Verilog and a synthesis whose LUTs grow with the PoT array."""
    tools = FakeTools()

    def parts(cfg):
        return [T.AcceleratorPart(name=name, description=f"stand-in {name}", design=_Dummy(),
                                  to_verilog=lambda name=name: f"module {name}; endmodule\n")
                for name in ("accel_core", "pot_array", "dsp_array")]

    def synthesize(path, *, top, work_dir, timing=None):
        tools.calls.append(top)
        cells = {"accel_core": {"LUT6": 300, "FDRE": 200},
                 "pot_array": {"LUT6": 40 * tools.pot_macs, "FDRE": 100},
                 "dsp_array": {"LUT3": 50, "FDRE": 50, "DSP48E1": 8}}[top]
        return SynthResult(top=top, family="xc7", cells=cells, report="", log="", seconds=0.1)

    monkeypatch.setattr(T, "accelerator_parts", parts)
    monkeypatch.setattr(flow, "synthesize", synthesize)
    return tools


def _ctx(tmp_path, cfg=TINY, ratio=None, env=None, jobs=2):
    path = _write(tmp_path / f"{cfg.name}.json", cfg)
    return flow.make_context("pynq-z2", config=path, ratio=ratio, out=tmp_path / "build",
                             jobs=jobs, echo=lambda s: None, env=env or {"PATH": ""})


def test_non_fitting_config(capsys, tmp_path, fake_tools):
    """Arrays that cannot fit the part are refused from the config, before any elaboration."""
    big = preset("pynq-z2").to_dict() | {"name": "big", "pot_rows": 200}
    (tmp_path / "big.json").write_text(json.dumps(big))
    rc, out, err = _main(capsys, "--board", "pynq-z2", "--config", str(tmp_path / "big.json"),
                         "--out", str(tmp_path))
    assert rc == 1
    assert err == (
        f"error: {tmp_path / 'big.json'}: config 'big' does not fit xc7z020clg400-1: its arrays "
        f"and buffers alone need 68,800 LUT (20 per PoT MAC and 10 per DSP lane at least), the "
        f"part has 53,200; reduce pot_rows, dsp_rows or the columns\n")
    assert out == "" and fake_tools.calls == []
    assert list(tmp_path.iterdir()) == [tmp_path / "big.json"]      # nothing built


def test_resume(tmp_path, fake_tools):
    ctx = _ctx(tmp_path)
    with pytest.raises(flow.FlowError, match=r"^cannot start at 'synthesize': .*build-state\.json "
                                             r"does not exist"):
        flow.run_flow(ctx, start="synthesize")
    state = flow.run_flow(ctx, stop="estimate")
    assert list(state["steps"]) == ["elaborate", "regmap", "estimate"]
    assert fake_tools.calls == []
    for name in ("elaborate", "regmap", "estimate"):
        assert (ctx.logs / f"{name}.log").read_text().rstrip().endswith("s")
    state = flow.run_flow(ctx, start="synthesize", stop="synthesize")
    assert list(state["steps"]) == ["elaborate", "regmap", "estimate", "synthesize"]
    assert state["last_run"] == ["synthesize"]
    assert sorted(fake_tools.calls) == ["accel_core", "dsp_array", "pot_array"]
    assert all(isinstance(s["seconds"], float) for s in state["steps"].values())
    # Re-running an early step forgets the later ones until they run again.
    flow.run_flow(ctx, start="regmap", stop="regmap")
    with pytest.raises(flow.FlowError, match=r"^cannot start at 'bitstream': step 'estimate' has "
                                             r"not finished in .*; run with --from estimate$"):
        flow.run_flow(ctx, start="bitstream")
    flow.run_flow(ctx, start="estimate")
    assert (ctx.out / "build-report.md").is_file()
    # A missing output of an earlier step is named.
    (ctx.work / "engine-model.json").unlink()
    with pytest.raises(flow.FlowError) as info:
        flow.run_flow(ctx, start="synthesize")
    assert str(info.value) == (f"cannot start at 'synthesize': {ctx.work / 'engine-model.json'} "
                               f"(an output of step 'estimate') is missing; run with "
                               f"--from estimate")
    assert info.value.exit_code == 2
    # Another ratio than the outputs were made with.
    other = _ctx(tmp_path, ratio="50:50:0")
    with pytest.raises(flow.FlowError, match=r"were made with ratio '60:35:5', not '50:50:0'"):
        flow.run_flow(other, start="package")
    # Only the estimate depends on the ratio: starting there with another one is allowed.
    state = flow.run_flow(other, start="estimate", stop="estimate")
    assert state["inputs"]["ratio"] == "50:50:0" and "estimate" in state["steps"]
    assert "ratio 50:50:0" in (ctx.work / "estimate.md").read_text()


def test_failing_top_conversion_is_reported(tmp_path, fake_tools, monkeypatch):
    """accel_top.v is written in the background; its failure stops the flow with one message,
    and the elaborate step is not recorded as finished."""
    def broken(cfg):
        raise ValueError("no top today")

    monkeypatch.setattr(T, "top_verilog", broken)
    ctx = _ctx(tmp_path)
    with pytest.raises(flow.FlowError, match=r"^project/accel_top\.v: ValueError: no top today$"):
        flow.run_flow(ctx)
    state = json.loads(ctx.state_path.read_text())
    assert "elaborate" not in state["steps"]
    assert "ValueError: no top today" in (ctx.logs / "elaborate.log").read_text()
    with pytest.raises(flow.FlowError, match=r"step 'elaborate' has not finished"):
        flow.run_flow(ctx, start="package")


def test_progress_lines(tmp_path):
    """While runs work, a line every ``progress_every`` seconds: elapsed, time left, what runs."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    lines: list[str] = []
    ctx = flow.make_context("pynq-z2", out=tmp_path, jobs=2, echo=lines.append,
                            env={"PATH": ""})
    ctx.progress_every = 0.2
    jobs = [flow.Job(f"run{n}", n, 0.5, time.sleep, (0.5,)) for n in range(3)]
    finished = []
    with ThreadPoolExecutor(2) as pool:
        flow.run_jobs(ctx, pool, jobs, lambda job, _: finished.append(job.key), what="runs")
    assert sorted(finished) == [0, 1, 2]
    progress = [ln for ln in lines if ln.startswith("  ... ")]
    assert progress, lines
    assert re.fullmatch(r"  \.\.\. \d+ s in this step, about \d+ s left: running run\d \d+ s"
                        r"(, run\d \d+ s)?(; 1 runs waiting)?", progress[0]), progress[0]
    assert ctx.speed("runs") == pytest.approx(1.0, abs=0.5)


def test_generated_project(tmp_path, fake_tools):
    ctx = _ctx(tmp_path, jobs=3)
    flow.run_flow(ctx, stop="elaborate")
    tcl = (ctx.project_dir / "build.tcl").read_text()
    assert tcl == build_tcl("pynq-z2", TINY, T.vivado_design(TINY), jobs=3)
    lines = tcl.splitlines()
    assert "add_files -norecurse $here/accel_top.v" in lines
    assert "create_bd_cell -type module -reference accel_top accel" in lines
    assert "launch_runs synth_1 -jobs 3" in lines
    assert f"create_project -force accel $here/vivado -part {TINY.part}" in lines
    assert "CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {100}" in tcl
    assert "connect_bd_net [get_bd_pins accel/irq] [get_bd_pins ps7/IRQ_F2P]" in lines
    sh = ctx.project_dir / "build_vivado.sh"
    assert sh.stat().st_mode & stat.S_IXUSR
    # The complete top, with the port names the block design connects.
    top = (ctx.project_dir / "accel_top.v").read_text()
    assert "module accel_top(" in top
    for port in ("s_axil_awaddr", "s_axil_rdata", "m_axi_araddr", "m_axi_wdata", "irq"):
        assert re.search(rf"\b(input|output) (\[[^]]*\] )?{port};", top), port


def test_find_vivado(tmp_path):
    assert flow.find_vivado({"PATH": str(tmp_path)}) is None
    exe = tmp_path / "vivado"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert flow.find_vivado({"PATH": str(tmp_path)}) == [str(exe)]
    cmd = flow.find_vivado({"AMARANTH_ENV_VIVADO": "/opt/Xilinx/settings64.sh", "PATH": ""})
    assert cmd == ["sh", "-c", '. "$AMARANTH_ENV_VIVADO" && exec vivado "$@"', "vivado"]


def test_failing_vivado_is_reported_plainly(tmp_path, fake_tools):
    exe = tmp_path / "bin" / "vivado"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 3\n")
    exe.chmod(0o755)
    ctx = _ctx(tmp_path, env={"PATH": str(exe.parent)})
    with pytest.raises(flow.FlowError, match=r"^Vivado failed \(exit 3\); see .*vivado\.log$"):
        flow.run_flow(ctx)
    assert (ctx.project_dir / "accel_top.v").is_file()


_FAKE_VIVADO = """#!/bin/sh
# Stands in for Vivado: checks its arguments and writes what build.tcl would.
[ "$*" = "-mode batch -nojournal -log vivado.log -source build.tcl" ] || exit 5
[ -f accel_top.v ] || exit 6
echo "INFO: fake run"
printf 'bit' > accel.bit
printf 'bin' > accel.bin
printf '<hwh/>' > accel.hwh
cat > utilization.rpt <<'EOF'
| Slice LUTs                 | 21345 |     0 |          0 |     53200 | 40.12 |
| Slice Registers            | 30211 |     0 |          0 |    106400 | 28.39 |
| Block RAM Tile             |    60 |     0 |          0 |       140 | 42.86 |
| DSPs                       |   144 |     0 |          0 |       220 | 65.45 |
EOF
cat > timing.rpt <<'EOF'
Design Timing Summary
    WNS(ns)      TNS(ns)  TNS Failing Endpoints
    -------      -------  ---------------------
      0.512        0.000                      0
EOF
"""


def test_vivado_flow_with_a_top(tmp_path, fake_tools, monkeypatch):
    exe = tmp_path / "bin" / "vivado"
    exe.parent.mkdir()
    exe.write_text(_FAKE_VIVADO)
    exe.chmod(0o755)
    monkeypatch.setattr(T, "top_verilog", lambda cfg: "module accel_top; endmodule\n")
    ctx = _ctx(tmp_path, env={"PATH": str(exe.parent)})
    flow.run_flow(ctx)
    assert (ctx.project_dir / "accel_top.v").read_text() == "module accel_top; endmodule\n"
    status = json.loads((ctx.work / "bitstream.json").read_text())
    assert status["built"] is True
    assert status["utilization"]["dsp"] == {"used": 144.0, "available": 220.0}
    assert status["timing"] == {"wns_ns": 0.512, "tns_ns": 0.0}
    assert (ctx.out / "accel.bit").read_text() == "bit"
    assert (ctx.out / "accel.hwh").read_text() == "<hwh/>"
    manifest = json.loads((ctx.out / "package.json").read_text())
    assert (manifest["bitstream"], manifest["hwh"]) == ("accel.bit", "accel.hwh")
    report = (ctx.out / "build-report.md").read_text()
    assert "Timing: WNS +0.512 ns, TNS +0.000 ns at 100 MHz" in report


# ---- end to end with real Yosys ----------------------------------------------------------------


def _check_package(outdir: Path, cfg: HwConfig, board: str) -> dict:
    for name in ("build-report.md", "hwconfig.json", "config_hash.txt", "regmap.json",
                 "regmap.md", "estimate.md", "utilization.json",
                 "package.json", "project/build.tcl", "project/accel_top.v",
                 "project/build_vivado.sh",
                 "build-state.json"):
        assert (outdir / name).is_file(), name
    for step in flow.STEP_NAMES:
        assert (outdir / "logs" / f"{step}.log").is_file()
    assert not (outdir / "accel.bit").exists()
    assert HwConfig.load(outdir / "hwconfig.json") == cfg
    assert (outdir / "config_hash.txt").read_text() == cfg.config_hash_hex + "\n"
    assert json.loads((outdir / "regmap.json").read_text())["config_hash"] == cfg.config_hash
    assert "module accel_top(" in (outdir / "project/accel_top.v").read_text()
    assert not (outdir / "rtl").exists()
    # The estimate synthesized RTLIL: the core, and the arrays' slices only (the weight
    # banks' at the core's 4 rows and at all rows).
    work = outdir / "work"
    assert (work / "parts/accel_core.il").is_file()
    pack = cfg.dsp_pack
    rows = cfg.pot_rows + cfg.dsp_rows
    assert sorted(p.name for p in (work / "slices").iterdir()) == sorted(
        [f"pot_array_r{n}.il" for n in (2, 4)] + [f"weight_banks_r{n}.il" for n in (4, rows)]
        + [f"dsp_array_r{n}.il" for n in (pack, 2 * pack)])
    assert not (work / "parts/pot_array.il").exists()
    manifest = json.loads((outdir / "package.json").read_text())
    assert (manifest["board"], manifest["config_hash"], manifest["bitstream"]) == (
        board, cfg.config_hash_hex, None)
    util = json.loads((outdir / "utilization.json").read_text())
    # The DSP array maps one DSP48E1 per group of dsp_pack lanes and column (also when
    # extrapolated from slices of whole groups); the core holds its first two lanes (a whole
    # group), plus the engine's own multipliers.
    groups = -(-cfg.dsp_rows // pack)
    assert util["parts"]["dsp_array"]["DSP48E1"] == (groups - 1) * cfg.dsp_cols
    assert util["total"]["DSP48E1"] > cfg.dsp_count
    assert util["parts"]["pot_array"]["method"] == (
        f"rows 3 to {cfg.pot_rows} (the core part holds the first 2), extrapolated from slices "
        f"of 2 and 4 rows")
    assert util["parts"]["dsp_array"]["method"] == (
        f"rows 3 to {cfg.dsp_rows} (the core part holds the first 2), extrapolated from slices "
        f"of {pack} and {2 * pack} rows, in whole groups of {pack}")
    assert util["parts"]["weight_banks"]["method"] == (
        f"rows 5 to {rows} (the core part holds the first 4), all {rows} rows less the "
        f"core's 4")
    assert util["parts"]["pot_array"]["DSP48E1"] == 0
    assert all(util["parts"][p]["LUT"] > 0 and util["parts"][p]["FF"] > 0 for p in util["parts"])
    report = (outdir / "build-report.md").read_text()
    assert "Not built: Vivado not found" in report
    assert "Cycle model" in report      # the model, or why ResNet-18 does not fit
    # The timing estimate of every part with registers, with the registers of its worst path.
    timing = util["timing"]
    assert "accel_core" in timing["parts"] and timing["clock_mhz"] == cfg.clock_mhz
    assert timing["fmax_mhz"] == min(t["fmax_MHz"] for t in timing["parts"].values())
    core = timing["parts"]["accel_core"]
    assert core["start"] and core["end"] and not core["end"].startswith("$")
    assert "## Timing estimate" in report and f"`{core['start']}` -> `{core['end']}`" in report
    return util


def test_end_to_end_tiny(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", os.environ["PATH"])  # no Vivado here
    if flow.find_vivado() is not None:
        monkeypatch.setattr(flow, "find_vivado", lambda env=None: None)
    rc, out, err = _main(capsys, "--board", "pynq-z2", "--config",
                         _write(tmp_path / "tiny.json", TINY), "--out", str(tmp_path / "b"),
                         "--jobs", "2")
    assert (rc, err) == (0, "")
    outdir = tmp_path / "b" / f"pynq-z2-{TINY.config_hash_hex}"
    assert "Vivado not found" in out
    assert "[6/6] package done in" in out
    util = _check_package(outdir, TINY, "pynq-z2")
    assert sorted(util["parts"]["pot_array"]["slices"]) == ["2", "4"]
    assert util["parts"]["accel_core"]["method"] == "whole"


@pytest.mark.slow
@pytest.mark.parametrize("board", ["zc706", "pynq-z2"])
def test_end_to_end_preset(capsys, tmp_path, monkeypatch, board):
    monkeypatch.setattr(flow, "find_vivado", lambda env=None: None)
    rc, out, err = _main(capsys, "--board", board, "--out", str(tmp_path))
    assert (rc, err) == (0, ""), out
    cfg = preset(board)
    util = _check_package(tmp_path / f"{board}-{cfg.config_hash_hex}", cfg, board)
    assert all(r["fits"] for r in util["fit"])


@pytest.mark.slow
def test_sliced_matches_full(tmp_path):
    """The slice extrapolation against synthesizing the arrays whole."""
    cfg = preset("pynq-z2").replace(name="mid", pot_rows=10, dsp_rows=10)
    path = _write(tmp_path / "mid.json", cfg)
    got = {}
    for mode in flow.SYNTH_MODES:
        ctx = flow.make_context("pynq-z2", config=path, out=tmp_path / mode, synth_mode=mode,
                                echo=lambda s: None, env={"PATH": ""})
        flow.run_flow(ctx, stop="synthesize")
        got[mode] = json.loads((ctx.work / "utilization.json").read_text())["parts"]
    for name in ("pot_array", "dsp_array"):
        full, sliced = got["full"][name], got["sliced"][name]
        assert full["method"] == "whole"
        assert sliced["DSP48E1"] == full["DSP48E1"]
        for key in ("LUT", "FF"):
            assert abs(sliced[key] - full[key]) <= 0.03 * full[key], (name, key, sliced, full)


def test_timing_section_gives_the_latency_at_the_estimated_clock() -> None:
    from rtl.build.report import timing_lines

    cfg = preset("zc706")
    part = {"fmax_MHz": 120.0, "period_ns": 8.33, "lut_levels": 7, "carry4": 0,
            "start": "a", "end": "b", "dsp_limited": False, "synthesized": "whole"}
    timing = {"fmax_mhz": 120.0, "model": "m", "parts": {"accel_core": part}}
    text = "\n".join(timing_lines(timing, cfg, 1_200_000))
    assert ("does **not** support the target" in text and "At 120 MHz an image of ResNet-18 "
            "would take 10.00 ms instead of the 8.00 ms modelled at the target." in text)
    fast = {**timing, "fmax_mhz": 200.0}
    assert "supports the target. Model: m." in "\n".join(timing_lines(fast, cfg, 1_200_000))
