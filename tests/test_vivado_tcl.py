"""The generated Vivado script run by ``tclsh`` against stand-ins for the Vivado commands.

No Vivado here, so every Vivado command the script calls is a Tcl procedure that checks its
options against the command's documented syntax (UG835) and its count of arguments, keeps a
small model of the block design (cells, the accelerator's ports and interfaces as declared by
the X_INTERFACE_INFO attributes of the generated Verilog, what is connected to what) and
answers property queries from a scenario: the clock Vivado made, the slack it reached. An
unknown command, an unknown option, a missing argument, a pin of a cell that does not exist,
a pin connected twice or a Tcl syntax error fails the run; the checks in the script (clock
read-back, slack, run status) are exercised by scenarios that make them fail.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from rtl.build import parts as T
from rtl.build.vivado import build_tcl, fabric_clock, package_facts, write_project
from rtl.config import HwConfig, preset

TCLSH = shutil.which("tclsh")
pytestmark = pytest.mark.skipif(
    TCLSH is None, reason="tclsh missing: ./run installs the Debian package tcl")

#: A config small enough to convert to Verilog in seconds.
TINY = preset("pynq-z2").replace(name="tiny", pot_rows=2, pot_cols=4, dsp_rows=2, dsp_cols=4)

# The stand-ins. Each Vivado command: its options (1 = takes a value, 0 = a switch), the least
# and most positional arguments (-1: any), and what it does. -quiet and -verbose are accepted
# by every Vivado command.
STUBS = r"""
set ::log [open $::env(STUB_LOG) w]
fconfigure $::log -buffering line
array set ::cfg [list version 2023.2 board_parts {xilinx.com:zc706:part0:1.4} \
    fclk0 100.000000 clock_hz 100000000 period 10.000 clock clk_fpga_0 \
    setup_slack 0.512 hold_slack 0.031 synth_status {synth_design Complete!} skip {} \
    missing_segments {}]
array set ::cfg $::env(STUB_SCENARIO)
set ::cells [dict create]
set ::connected [dict create]
set ::runs [dict create synth_1 {} impl_1 {}]
set ::top ""

proc stub_args {name spec min max argv} {
    set spec [dict merge {-quiet 0 -verbose 0} $spec]
    set opts [dict create]
    set pos {}
    for {set i 0} {$i < [llength $argv]} {incr i} {
        set a [lindex $argv $i]
        if {[string match -* $a] && ![string is double -strict $a]} {
            if {![dict exists $spec $a]} { error "$name: unknown option $a" }
            if {[dict get $spec $a]} {
                incr i
                if {$i >= [llength $argv]} { error "$name: option $a needs a value" }
                dict set opts $a [lindex $argv $i]
            } else {
                dict set opts $a 1
            }
        } else {
            lappend pos $a
        }
    }
    if {[llength $pos] < $min || ($max >= 0 && [llength $pos] > $max)} {
        error "$name: takes $min to $max arguments, not [llength $pos]: $pos"
    }
    puts $::log [list $name {*}$argv]
    return [list $opts $pos]
}

proc vivado {name spec min max body} {
    proc $name args "lassign \[stub_args $name [list $spec] $min $max \$args\] opts pos\n$body"
}

proc need {what value} { if {$value eq ""} { error "$what is empty" } }
proc cell_of {path} {
    set cell [lindex [split $path /] 0]
    if {![dict exists $::cells $cell]} { return "" }
    return $cell
}
proc connect {pin} {
    if {[dict exists $::connected $pin]} { error "$pin is connected twice" }
    dict set ::connected $pin 1
}
proc touch {path text} { set f [open $path w]; puts -nonewline $f $text; close $f }

vivado version {-short 0} 0 0 { return $::cfg(version) }
vivado create_project {-part 1 -force 0 -in_memory 0 -ip 0} 0 2 {
    need "create_project -part" [dict get $opts -part]
    if {[dict exists $opts -force] && [llength $pos] == 2} { file delete -force [lindex $pos 1] }
}
vivado get_board_parts {-latest_file_version 0 -latest_hw_revision 0 -filter 1 -regexp 0 \
        -nocase 0} 0 -1 { return $::cfg(board_parts) }
vivado current_project {} 0 1 { return accel }
vivado current_fileset {-constrset 0 -simset 0} 0 1 { return sources_1 }
vivado set_property {-dict 1} 1 3 {
    if {[dict exists $opts -dict]} {
        if {[llength $pos] != 1} { error "set_property -dict takes one object list" }
        if {[llength [dict get $opts -dict]] % 2} { error "set_property -dict: odd list" }
        foreach {key value} [dict get $opts -dict] {
            if {![string match CONFIG.* $key]} { error "set_property -dict: key $key" }
        }
    } elseif {[llength $pos] != 3} {
        error "set_property takes a name, a value and objects"
    } elseif {[lindex $pos 0] eq "top"} {
        set ::top [lindex $pos 1]
    }
    need "set_property objects" [lindex $pos end]
}
vivado add_files {-norecurse 0 -fileset 1 -of_objects 1 -copy_to 1 -force 0 \
        -scan_for_includes 0} 1 -1 {
    foreach f $pos { if {![file isfile $f]} { error "add_files: no file $f" } }
}
vivado update_compile_order {-fileset 1} 0 0 {}
vivado create_bd_design {-dir 1 -cell 1 -mode 1 -bdsource 1} 1 1 {}
vivado create_bd_cell {-type 1 -vlnv 1 -reference 1 -prop 1} 1 1 {
    set name [lindex $pos 0]
    if {[dict exists $::cells $name]} { error "create_bd_cell: $name exists" }
    switch -- [dict get $opts -type] {
        ip {
            if {![regexp {^[a-z.]+:ip:[a-z_0-9]+:[0-9]+\.[0-9]+$} [dict get $opts -vlnv]]} {
                error "create_bd_cell: bad VLNV [dict get $opts -vlnv]"
            }
            dict set ::cells $name ip
        }
        module {
            if {[dict get $opts -reference] ne $::env(STUB_MODULE)} {
                error "create_bd_cell: no module [dict get $opts -reference]"
            }
            dict set ::cells $name module
        }
        default { error "create_bd_cell: -type [dict get $opts -type]" }
    }
}
vivado apply_bd_automation {-rule 1 -dict 1 -config 1 -opts 1} 1 1 {
    need "apply_bd_automation object" [lindex $pos 0]
    if {[llength [dict get $opts -config]] % 2} { error "apply_bd_automation: odd -config" }
}
vivado get_bd_cells {-hierarchical 0 -filter 1 -of_objects 1 -regexp 0} 0 1 {
    return [cell_of [lindex $pos 0]]
}
vivado get_bd_pins {-hierarchical 0 -filter 1 -of_objects 1 -regexp 0} 0 1 {
    set pin [lindex $pos 0]
    set cell [cell_of $pin]
    if {$cell eq ""} { return "" }
    if {[dict get $::cells $cell] eq "module"
            && [lsearch -exact $::env(STUB_PORTS) [lindex [split $pin /] 1]] < 0} { return "" }
    return $pin
}
vivado get_bd_intf_pins {-hierarchical 0 -filter 1 -of_objects 1 -regexp 0} 0 1 {
    set pin [lindex $pos 0]
    set cell [cell_of $pin]
    if {$cell eq ""} { return "" }
    if {[dict get $::cells $cell] eq "module"
            && [lsearch -exact $::env(STUB_INTFS) [lindex [split $pin /] 1]] < 0} { return "" }
    return $pin
}
vivado get_bd_addr_spaces {-filter 1 -of_objects 1 -regexp 0} 0 1 {
    set space [lindex $pos 0]
    if {[cell_of $space] eq ""} { return "" }
    return $space
}
vivado get_bd_addr_segs {-filter 1 -of_objects 1 -regexp 0 -excluded 0 -addressables 0} 0 1 {
    if {[dict exists $opts -of_objects]} {
        need "get_bd_addr_segs -of_objects" [dict get $opts -of_objects]
        return [dict get $opts -of_objects]/reg0
    }
    set seg [lindex $pos 0]
    if {[cell_of $seg] eq "" || $seg in $::cfg(missing_segments)} { return "" }
    return $seg
}
vivado connect_bd_net {-design 1 -net 1 -boundary_type 1} 2 -1 {
    foreach pin $pos { need "connect_bd_net pin" $pin; connect $pin }
}
vivado connect_bd_intf_net {-design 1 -intf_net 1 -boundary_type 1} 2 2 {
    foreach pin $pos { need "connect_bd_intf_net pin" $pin; connect $pin }
}
vivado assign_bd_address {-target_address_space 1 -offset 1 -range 1 -export_to_file 1 \
        -import_from_file 1 -external 0 -dict 1 -force 0 -boundary 0 -export_gui_to_file 1} \
        0 1 {
    need "assign_bd_address -target_address_space" [dict get $opts -target_address_space]
    need "assign_bd_address segment" [lindex $pos 0]
    set offset [dict get $opts -offset]
    set range [dict get $opts -range]
    if {$range < 4096 || ($range & ($range - 1)) || ($offset % $range)} {
        error "assign_bd_address: range $range at $offset"
    }
}
vivado validate_bd_design {-force 0 -design 1} 0 0 {}
vivado save_bd_design {} 0 1 {}
vivado make_wrapper {-files 1 -top 0 -testbench 0 -inst_template 0 -fileset 1 -import 0 \
        -force 0} 0 0 { need "make_wrapper -files" [dict get $opts -files] }
vivado get_files {-regexp 0 -nocase 0 -filter 1 -compile_order 1 -used_in 1 -references 0 \
        -all 0 -of_objects 1} 0 -1 {
    if {[string match *.bd [lindex $pos 0]]} { return [lindex $pos 0] }
    return ""
}
vivado get_runs {-regexp 0 -nocase 0 -filter 1 -of_objects 1} 0 1 {
    if {![dict exists $::runs [lindex $pos 0]]} { return "" }
    return [lindex $pos 0]
}
vivado launch_runs {-jobs 1 -to_step 1 -next_step 0 -host 1 -remote_cmd 1 -dir 1 -force 0 \
        -pre_launch_script 1 -post_launch_script 1} 1 -1 {
    foreach run $pos {
        need "launch_runs run" [get_runs $run]
        if {$run eq "synth_1"} {
            dict set ::runs synth_1 $::cfg(synth_status)
            file mkdir vivado/accel.gen/sources_1/bd/system/hw_handoff
            if {"hwh" ni $::cfg(skip)} {
                touch vivado/accel.gen/sources_1/bd/system/hw_handoff/system.hwh "<hwh/>"
            }
        } elseif {[dict exists $opts -to_step]} {
            if {[dict get $opts -to_step] ne "write_bitstream"} { error "launch_runs: step" }
            if {$::top eq ""} { error "launch_runs: no top set" }
            dict set ::runs $run "write_bitstream Complete!"
            file mkdir vivado/accel.runs/$run
            touch vivado/accel.runs/$run/$::top.bit "bit"
        } else {
            dict set ::runs $run "route_design Complete!"
        }
    }
}
vivado wait_on_run {-timeout 1} 1 1 { need "wait_on_run run" [get_runs [lindex $pos 0]] }
vivado open_run {-name 1 -pr_config 1 -disable_ila 0} 1 1 {
    if {[dict get $::runs [lindex $pos 0]] eq ""} { error "open_run: [lindex $pos 0] not run" }
}
vivado report_utilization {-file 1 -append 0 -return_string 0 -hierarchical 0} 0 0 {
    touch [dict get $opts -file] [join [list \
        "| Slice LUTs      | 21345 | 0 | 0 |  53200 | 40.12 |" \
        "| Slice Registers | 30211 | 0 | 0 | 106400 | 28.39 |" \
        "| Block RAM Tile  |  60.5 | 0 | 0 |    140 | 43.21 |" \
        "| DSPs            |   150 | 0 | 0 |    220 | 68.18 |" ""] \n]
}
vivado report_timing_summary {-file 1 -max_paths 1 -delay_type 1 -no_detailed_paths 0 \
        -return_string 0 -warn_on_violation 0 -check_timing_verbose 0} 0 0 {
    touch [dict get $opts -file] [join [list "| Design Timing Summary" "" \
        "    WNS(ns)      TNS(ns)  TNS Failing Endpoints      WHS(ns)" \
        "    -------      -------  ---------------------      -------" \
        "    $::cfg(setup_slack)        0.000                      0     $::cfg(hold_slack)" ""] \n]
}
vivado get_pins {-hierarchical 0 -filter 1 -of_objects 1 -regexp 0 -nocase 0} 0 1 {
    return [lindex $pos 0]
}
vivado get_clocks {-of_objects 1 -filter 1 -regexp 0 -nocase 0 -include_generated_clocks 0 \
        -match_style 1} 0 1 { return $::cfg(clock) }
vivado get_timing_paths {-delay_type 1 -max_paths 1 -nworst 1 -from 1 -to 1 -through 1 \
        -setup 0 -hold 0 -filter 1} 0 0 {
    return [dict get {max setup_path min hold_path} [dict get $opts -delay_type]]
}
vivado write_cfgmem {-format 1 -interface 1 -force 0 -disablebitswap 0 -size 1 -checksum 0 \
        -loadbit 1 -loaddata 1} 1 1 {
    if {[dict get $opts -format] ne "bin" || [dict get $opts -interface] ne "smapx32"} {
        error "write_cfgmem: format/interface"
    }
    lassign [dict get $opts -loadbit] dir address bit
    if {$dir ne "up" || ![file isfile $bit]} { error "write_cfgmem: -loadbit $dir $bit" }
    if {"bin" ni $::cfg(skip)} { touch [lindex $pos 0] "bin" }
}
vivado write_hw_platform {-fixed 0 -include_bit 0 -force 0 -minimal 0 -file 1 -hw 0 \
        -include_sim_content 0} 0 1 { touch [dict get $opts -file] "xsa" }
vivado get_property {-min 0 -max 0} 2 2 {
    lassign $pos name object
    need "get_property object" $object
    switch -glob -- $name {
        STATUS { return [dict get $::runs $object] }
        DIRECTORY { return vivado/accel.runs/$object }
        CONFIG.PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ { return $::cfg(fclk0) }
        CONFIG.FREQ_HZ { return $::cfg(clock_hz) }
        PERIOD { return $::cfg(period) }
        SLACK { return $::cfg([string map {_path {}} $object]_slack) }
        ENDPOINT_CLOCK { return $::cfg(clock) }
        STARTPOINT_PIN { return "system_i/accel/inst/a_reg/C" }
        ENDPOINT_PIN { return "system_i/accel/inst/b_reg/D" }
        REQUIREMENT { return $::cfg(period) }
        default { error "get_property: no stand-in for $name" }
    }
}

set argv0 [lindex $argv 0]
source $argv0
"""


def accel_ports(verilog: str, module: str = T.TOP_NAME) -> tuple[list[str], list[str]]:
    """The ports of ``module`` and the interfaces its X_INTERFACE_INFO attributes declare."""
    body = re.search(rf"^module {module}\(.*?^endmodule", verilog, re.S | re.M)
    assert body, f"no module {module}"
    ports = re.findall(r"^\s*(?:input|output)\s+(?:\[[^\]]*\]\s*)?(\w+);", body.group(0), re.M)
    declared = re.findall(r"\(\* X_INTERFACE_INFO = \"([^\"]+)\" \*\)\n(?:\s*\(\*[^\n]*\n)*"
                          r"\s*(?:input|output)\s+(?:\[[^\]]*\]\s*)?(\w+);", body.group(0))
    intfs = sorted({info.split()[1] for info, _ in declared if ":interface:" in info})
    return ports, intfs


class Stubs:
    """Runs build.tcl (or any script) under the stand-ins in a project directory."""

    def __init__(self, project: Path, verilog: str) -> None:
        self.project = project
        self.ports, self.intfs = accel_ports(verilog)
        self.prelude = project / "vivado_stubs.tcl"
        self.prelude.write_text(STUBS)

    def env(self, **scenario: str) -> dict[str, str]:
        return {**os.environ, "STUB_LOG": str(self.project / "calls.log"),
                "STUB_SCENARIO": " ".join(f"{k} {{{v}}}" for k, v in scenario.items()),
                "STUB_MODULE": T.TOP_NAME, "STUB_PORTS": " ".join(self.ports),
                "STUB_INTFS": " ".join(self.intfs)}

    def run(self, script: str = "build.tcl", **scenario: str) -> subprocess.CompletedProcess:
        return subprocess.run([TCLSH, str(self.prelude), script], cwd=self.project,
                              env=self.env(**scenario), capture_output=True, text=True,
                              timeout=60)

    def calls(self) -> list[list[str]]:
        return [self._split(line) for line in (self.project / "calls.log").read_text()
                .splitlines()]

    @staticmethod
    def _split(line: str) -> list[str]:
        out = subprocess.run([TCLSH], input=f"puts [join {{{line}}} \\x1f]", text=True,
                             capture_output=True, check=True).stdout
        return out.rstrip("\n").split("\x1f")

    def fake_vivado(self, bindir: Path) -> Path:
        """A ``vivado`` that runs ``-source FILE`` with tclsh under the stand-ins."""
        bindir.mkdir(parents=True, exist_ok=True)
        exe = bindir / "vivado"
        exe.write_text(
            "#!/bin/sh\n# Stands in for Vivado: runs the script under tclsh with stand-ins.\n"
            "while [ $# -gt 0 ]; do case $1 in -source) script=$2; shift;; esac; shift; done\n"
            f"exec {shlex.quote(TCLSH or 'tclsh')} {shlex.quote(str(self.prelude))} "
            "\"$script\"\n")
        exe.chmod(0o755)
        return exe


@pytest.fixture(scope="module")
def top_verilog() -> str:
    return T.top_verilog(TINY)


@functools.cache
def _top_with_ports(weight_ports: int) -> str:
    return T.top_verilog(TINY.replace(weight_ports=weight_ports))


def _project(tmp_path: Path, board: str, cfg: HwConfig, verilog: str) -> Stubs:
    if cfg.weight_ports != TINY.weight_ports:      # the top has one AXI master per HP port
        verilog = _top_with_ports(cfg.weight_ports)
    project = tmp_path / "project"
    write_project(project, board, cfg, T.vivado_design(cfg), jobs=2)
    (project / T.TOP_FILE).write_text(verilog)
    return Stubs(project, verilog)


def _scenario(board: str, cfg: HwConfig, **changes: str) -> dict[str, str]:
    """What a Vivado run that makes the planned clocks answers."""
    clock = fabric_clock(board, cfg)
    out = {"fclk0": f"{clock.fclk0_mhz:.6f}", "clock_hz": f"{round(clock.clock_mhz * 1e6)}",
           "period": f"{1000 / clock.clock_mhz:.3f}",
           "clock": "clk_out1_system_clk_wiz_0" if clock.uses_mmcm else "clk_fpga_0"}
    out.update(changes)
    return out


BOARD_CFGS = [("pynq-z2", TINY), ("zc706", preset("zc706").replace(
    name="tiny", pot_rows=2, pot_cols=4, dsp_rows=2, dsp_cols=4))]


@pytest.mark.parametrize(("board", "cfg"), BOARD_CFGS, ids=[b for b, _ in BOARD_CFGS])
def test_script_runs_and_builds_the_block_design(tmp_path, top_verilog, board, cfg):
    stubs = _project(tmp_path, board, cfg, top_verilog)
    proc = stubs.run(**_scenario(board, cfg))
    assert proc.returncode == 0, proc.stderr
    assert "accel.bit, accel.bin, accel.hwh and accel.xsa written" in proc.stdout
    for name in ("accel.bit", "accel.bin", "accel.hwh", "accel.xsa", "clock.txt",
                 "timing-check.txt", "utilization.rpt", "timing.rpt"):
        assert (stubs.project / name).is_file(), name
    calls = stubs.calls()
    clock = fabric_clock(board, cfg)
    facts = package_facts(board, cfg, T.vivado_design(cfg))

    # Every port and interface of the accelerator is connected, each once.
    nets = [c for c in calls if c[0] in ("connect_bd_net", "connect_bd_intf_net")]
    connected = [a for c in nets for a in c[1:] if a.startswith("accel/")]
    assert sorted(connected) == sorted(["accel/clk", "accel/rst", "accel/irq",
                                        *(f"accel/{i}" for i in stubs.intfs)])
    assert stubs.intfs == sorted([*T.vivado_design(cfg).masters, "s_axil"])
    # The fabric clock net: from the MMCM or FCLK0 to the accelerator, reset, interconnects.
    fabric = next(c for c in nets if c[1:3] == ["-net", "fabric_clk"])
    source = "clk_wiz/clk_out1" if clock.uses_mmcm else "ps7/FCLK_CLK0"
    assert fabric[3] == source
    for pin in ("accel/clk", "rst_fabric/slowest_sync_clk", "ps7/M_AXI_GP0_ACLK",
                "ps7/S_AXI_HP0_ACLK", "gp0_ic/ACLK", "hp0_sc/aclk"):
        assert pin in fabric
    cells = {c[-1]: c for c in calls if c[0] == "create_bd_cell"}
    assert ("clk_wiz" in cells) == clock.uses_mmcm == (board == "zc706")
    if clock.uses_mmcm:
        locked = next(c for c in nets if "clk_wiz/locked" in c)
        assert "rst_fabric/dcm_locked" in locked
    assert ["connect_bd_net", "-net", "accel_reset", "rst_fabric/peripheral_reset",
            "accel/rst"] in calls
    # Interconnects made explicitly.
    assert ["connect_bd_intf_net", "ps7/M_AXI_GP0", "gp0_ic/S00_AXI"] in calls
    assert ["connect_bd_intf_net", "gp0_ic/M00_AXI", "accel/s_axil"] in calls
    assert ["connect_bd_intf_net", "accel/m_axi", "hp0_sc/S00_AXI"] in calls
    assert ["connect_bd_intf_net", "hp0_sc/M00_AXI", "ps7/S_AXI_HP0"] in calls
    assert not any(c[0] == "apply_bd_automation" and "axi4" in c[2] for c in calls)
    # The registers at the fixed base address of the package.
    assert next(c for c in calls if c[0] == "assign_bd_address") == [
        "assign_bd_address", "-target_address_space", "ps7/Data",
        "-offset", f"0x{facts['regs_base']:08X}", "-range", f"0x{facts['regs_size']:08X}",
        "accel/s_axil/reg0"]
    assert facts["regs_base"] == 0x43C0_0000 and facts["regs_size"] == 4096
    # The bitstream comes after the timing check, the .bin from it.
    order = [c[0] for c in calls]
    assert order.index("get_timing_paths") < max(
        i for i, c in enumerate(calls) if c[0] == "launch_runs" and "-to_step" in c)
    cfgmem = next(c for c in calls if c[0] == "write_cfgmem")
    assert cfgmem == ["write_cfgmem", "-force", "-format", "bin", "-interface", "smapx32",
                      "-disablebitswap", "-loadbit", "up 0 accel.bit", "accel.bin"]
    keys = (stubs.project / "clock.txt").read_text().split()
    assert keys[0::2] == ["fclk0_mhz", "clock_mhz"]
    assert [float(v) for v in keys[1::2]] == pytest.approx([clock.fclk0_mhz, clock.clock_mhz],
                                                           rel=1e-6)


def test_zc706_board_version_found_at_run_time(tmp_path, top_verilog):
    board, cfg = BOARD_CFGS[1]
    stubs = _project(tmp_path, board, cfg, top_verilog)
    proc = stubs.run(**_scenario(board, cfg),
                     board_parts="xilinx.com:zc706:part0:1.3 xilinx.com:zc706:part0:1.4")
    assert proc.returncode == 0, proc.stderr
    assert ["set_property", "board_part", "xilinx.com:zc706:part0:1.4", "accel"] in stubs.calls()
    proc = stubs.run(**_scenario(board, cfg), board_parts="")
    assert proc.returncode != 0
    assert ("the zc706 board files (xilinx.com:zc706:part0:*) are not installed in this Vivado; "
            "install them or add their folder with set_param board.repoPaths") in proc.stderr


@pytest.mark.parametrize(("change", "message"), [
    ({"clock_hz": "142857142"}, "clock: the accelerator's clock is '142.857142' MHz, not the "
                                "150 MHz the design was built for"),
    ({"fclk0": "142.857132"}, "clock: FCLK0 of the processing system is '142.857132' MHz, not "
                              "the 100 MHz the design was built for"),
    ({"clock_hz": ""}, "clock: pin accel/clk has no frequency (CONFIG.FREQ_HZ '')"),
    ({"period": "7.000"}, "clock: the implemented clock of system_i/accel/clk is "
                          "'142.85714285714286' MHz, not the 150 MHz"),
    ({"setup_slack": "-0.213"}, "timing not met: setup slack -0.213 ns on clock "
                                "clk_out1_system_clk_wiz_0 from system_i/accel/inst/a_reg/C to "
                                "system_i/accel/inst/b_reg/D; see timing.rpt"),
    ({"hold_slack": "-0.05"}, "timing not met: hold slack -0.05 ns on clock"),
    ({"setup_slack": "inf"}, "timing: the worst setup path has no slack ('inf')"),
    ({"version": "2019.2"}, "this script needs Vivado 2020.1 or later, not 2019.2"),
    ({"synth_status": "synth_design ERROR"}, "synth_1 stopped before synth_design finished "
                                             "(status 'synth_design ERROR')"),
    ({"skip": "hwh"}, "no hardware handoff system.hwh was generated; see vivado.log"),
    ({"missing_segments": "ps7/S_AXI_HP0/HP0_DDR_LOWOCM"},
     "address: ps7/S_AXI_HP0 has 0 address segments (''), not one"),
], ids=["clock", "fclk0", "no-freq", "period", "setup", "hold", "unconstrained", "old-vivado",
        "synth-failed", "no-hwh", "no-segment"])
def test_script_checks_stop_it(tmp_path, top_verilog, change, message):
    board, cfg = BOARD_CFGS[1]
    stubs = _project(tmp_path, board, cfg, top_verilog)
    proc = stubs.run(**_scenario(board, cfg, **change))
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    if "slack" in message and "timing not met" in message:
        facts = (stubs.project / "timing-check.txt").read_text()
        assert "setup_clock clk_out1_system_clk_wiz_0" in facts
        assert not (stubs.project / "accel.bit").exists()


@pytest.mark.parametrize(("edit", "message"), [
    (("connect_bd_intf_net", "conect_bd_intf_net"), 'invalid command name "conect_bd_intf_net"'),
    (("proc build_write_facts {path facts} {", "proc build_write_facts {path facts} {{"),
     "missing close-brace"),
    (("-target_address_space", "-target_space"), "assign_bd_address: unknown option -target_space"),
    (("[get_bd_intf_pins accel/s_axil]]", "[get_bd_intf_pins accel/s_axi]]"),
     "get_bd_addr_segs -of_objects is empty"),
    (("[get_bd_pins accel/irq]", "[get_bd_pins accel/intr]"), "connect_bd_net pin is empty"),
    (("create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect:1.0 hp0_sc\n", ""),
     "set_property objects is empty"),
    (("launch_runs synth_1 -jobs 2", "launch_runs synth_1 -jobs"),
     "launch_runs: option -jobs needs a value"),
], ids=["typo", "brace", "option", "interface", "port", "missing-cell", "argument"])
def test_a_broken_script_fails(tmp_path, top_verilog, edit, message):
    """The stand-ins catch the mistakes they are there for (a check that cannot fail is none)."""
    board, cfg = BOARD_CFGS[1]
    stubs = _project(tmp_path, board, cfg, top_verilog)
    script = (stubs.project / "build.tcl").read_text()
    assert edit[0] in script
    (stubs.project / "broken.tcl").write_text(script.replace(edit[0], edit[1], 1))
    proc = stubs.run("broken.tcl", **_scenario(board, cfg))
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


# ---- build_vivado.sh -----------------------------------------------------------------------------


def _sh(project: Path, *args: str, path: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PATH": path, **env}
    full.pop("AMARANTH_ENV_VIVADO", None)
    full.update(env)
    return subprocess.run(["bash", str(project / "build_vivado.sh"), *args], env=full,
                          capture_output=True, text=True, timeout=60)


def test_build_vivado_sh(tmp_path, top_verilog):
    board, cfg = BOARD_CFGS[1]
    stubs = _project(tmp_path, board, cfg, top_verilog)
    bindir = tmp_path / "xilinx" / "bin"
    stubs.fake_vivado(bindir)
    settings = tmp_path / "xilinx" / "settings64.sh"
    settings.write_text(f"export PATH={shlex.quote(str(bindir))}:$PATH\n")
    base = "/usr/bin:/bin"
    scenario = " ".join(f"{k} {{{v}}}" for k, v in _scenario(board, cfg).items())
    env = {k: v for k, v in stubs.env().items() if k.startswith("STUB_")}
    env["STUB_SCENARIO"] = scenario

    proc = _sh(stubs.project, path=base, **env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: vivado is not on PATH; give Vivado's settings64.sh")
    proc = _sh(stubs.project, str(tmp_path / "nothing.sh"), path=base, **env)
    assert (proc.returncode, proc.stderr) == (
        2, f"error: Vivado settings script '{tmp_path / 'nothing.sh'}' not found\n")

    proc = _sh(stubs.project, str(settings), path=base, **env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("done: accel.bit accel.bin accel.hwh accel.xsa\n")
    assert (stubs.project / "accel.bin").read_text() == "bin"
    # The same through AMARANTH_ENV_VIVADO.
    proc = _sh(stubs.project, path=base, AMARANTH_ENV_VIVADO=str(settings), **env)
    assert proc.returncode == 0, proc.stderr

    # A run that leaves out a file fails, naming it (the old ones were removed first).
    for skip in ("bin", "hwh"):
        env["STUB_SCENARIO"] = scenario + f" skip {skip}"
        proc = _sh(stubs.project, str(settings), path=base, **env)
        assert proc.returncode != 0, (env["STUB_SCENARIO"], proc.stdout, proc.stderr)
        if skip == "bin":
            assert proc.stderr.endswith(
                "error: Vivado finished but accel.bin is missing; see vivado.log\n")
        else:
            assert "no hardware handoff system.hwh was generated" in proc.stderr
            assert not (stubs.project / "accel.hwh").exists()


def test_generated_script_is_the_one_written(tmp_path, top_verilog):
    board, cfg = BOARD_CFGS[0]
    stubs = _project(tmp_path, board, cfg, top_verilog)
    assert (stubs.project / "build.tcl").read_text() == build_tcl(
        board, cfg, T.vivado_design(cfg), jobs=2)
    json.dumps(package_facts(board, cfg, T.vivado_design(cfg)))   # plain JSON values
