"""Vivado batch flow: a block design with the Zynq PS7 around the accelerator, and its reports.

The generated ``build.tcl`` needs nothing but Vivado (2020.1 or later). It creates the
project, a block design with ``processing_system7`` configured for the board, the accelerator
as an RTL module reference, its AXI4-Lite slave behind an AXI interconnect on the PS's
general-purpose master port at a fixed address, each of its AXI4 masters behind a SmartConnect
on its own high-performance port, the fabric clock (FCLK0 itself, or an MMCM fed by FCLK0 when
the processing system cannot make the configured clock), a processor-system reset and the
interrupt. It reads back the clocks the block design got and stops if they are not the
configured ones; after implementation it stops if setup or hold slack is negative; then it
writes the bitstream, the byte-swapped ``.bin`` for the Linux FPGA manager, the hardware
handoff (``.hwh``) and an ``.xsa``, and text reports for utilization and timing.

Every number the script and the build package share (clock, FCLK0, register window, HP
ports) comes from :func:`fabric_clock` and :func:`package_facts`, computed once from the
config and the board facts of ``rtl/boards.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..boards import board as board_facts
from ..config import HwConfig
from ..interface.regmap import build_regmap

__all__ = ["CLOCK_TOLERANCE", "FabricClock", "VivadoDesign", "build_tcl", "build_vivado_sh",
           "fabric_clock", "package_facts", "parse_facts", "parse_timing", "parse_utilization",
           "ps7_settings", "regs_window", "timing_failure", "write_project"]

#: Oldest Vivado the script runs on (``assign_bd_address -offset/-range``, ``.gen`` layout).
OLDEST_VIVADO = "2020.1"

#: Relative difference allowed between a clock read back from Vivado and the configured one
#: (the ZC706's 33.333333 MHz PS clock makes "100 MHz" 99.999990 MHz).
CLOCK_TOLERANCE = 1e-4

#: IP versions the block design instantiates (all present in Vivado 2020.1 to 2024.2).
_IP = {"ps7": "xilinx.com:ip:processing_system7:5.5", "clk_wiz": "xilinx.com:ip:clk_wiz:6.0",
       "reset": "xilinx.com:ip:proc_sys_reset:5.0",
       "interconnect": "xilinx.com:ip:axi_interconnect:2.1",
       "smartconnect": "xilinx.com:ip:smartconnect:1.0"}

#: Zynq-7000 fabric clocks: IO PLL / DIVISOR0 / DIVISOR1, each divisor 6 bits (UG585), and
#: at most 250 MHz.
_FCLK_DIVISOR_MAX = 63
_FCLK_MAX_MHZ = 250.0

#: 7-series MMCM (DS187 for the Z-7020, DS191 for the Z-7045): VCO range and phase-detector
#: maximum in MHz per speed grade; CLKFBOUT_MULT_F 2..64 and CLKOUT0_DIVIDE_F 1..128 in
#: steps of 1/8, DIVCLK_DIVIDE 1..106, phase detector at least 10 MHz.
_MMCM_VCO = {1: (600.0, 1200.0), 2: (600.0, 1440.0), 3: (600.0, 1600.0)}
_MMCM_PFD_MAX = {1: 450.0, 2: 500.0, 3: 550.0}
_MMCM_PFD_MIN = 10.0


@dataclass(frozen=True)
class VivadoDesign:
    """What the block design wraps: the accelerator's top module and its interface names."""

    top: str                            #: Verilog module name of the accelerator
    sources: tuple[str, ...]            #: Verilog files, relative to the Tcl script's directory
    slave: str = "s_axil"               #: its AXI4-Lite slave (control registers)
    masters: tuple[str, ...] = ("m_axi",)  #: its AXI4 masters, one HP port each, in order
    irq: str = "irq"                    #: its interrupt output (level high)
    clock: str = "clk"                  #: its clock input
    reset: str = "rst"                  #: its reset input (active high)


@dataclass(frozen=True)
class FabricClock:
    """How the fabric clock is made: FCLK0 of the PS directly, or an MMCM fed by FCLK0."""

    clock_mhz: float                    #: the clock the accelerator runs at
    fclk0_mhz: float                    #: what the PS generates on FCLK0
    fclk0_divisors: tuple[int, int]     #: IO PLL dividers that make FCLK0 exactly
    #: MMCM settings (CLKFBOUT_MULT_F, DIVCLK_DIVIDE, CLKOUT0_DIVIDE_F) that make the clock
    #: exactly from FCLK0, or None when FCLK0 is the fabric clock. Vivado's clk_wiz picks its
    #: own; these prove that one exists, and the script checks what it picked.
    mmcm: tuple[float, int, float] | None

    @property
    def uses_mmcm(self) -> bool:
        return self.mmcm is not None


def _close(got: float, want: float) -> bool:
    return abs(got - want) <= want * CLOCK_TOLERANCE


def _fclk_divisors(io_pll_mhz: float, mhz: float) -> tuple[int, int] | None:
    if mhz > _FCLK_MAX_MHZ:
        return None
    for d0 in range(1, _FCLK_DIVISOR_MAX + 1):
        for d1 in range(1, d0 + 1):
            if _close(io_pll_mhz / (d0 * d1), mhz):
                return d0, d1
    return None


def _mmcm(fin_mhz: float, fout_mhz: float, speed: int) -> tuple[float, int, float] | None:
    vco_min, vco_max = _MMCM_VCO[speed]
    for divclk in range(1, 107):
        pfd = fin_mhz / divclk
        if pfd < _MMCM_PFD_MIN:
            break
        if pfd > _MMCM_PFD_MAX[speed]:
            continue
        for mult8 in range(64 * 8, 15, -1):       # CLKFBOUT_MULT_F in eighths, highest VCO first
            vco = pfd * mult8 / 8
            if not vco_min <= vco <= vco_max:
                continue
            out8 = round(vco * 8 / fout_mhz)      # CLKOUT0_DIVIDE_F in eighths
            if 8 <= out8 <= 128 * 8 and _close(vco * 8 / out8, fout_mhz):
                return mult8 / 8, divclk, out8 / 8
    return None


def fabric_clock(board: str, cfg: HwConfig) -> FabricClock:
    """The fabric clock of ``cfg`` on ``board``: FCLK0 if the PS makes ``clock_mhz`` exactly,
    else an MMCM from FCLK0 = the board's ``mmcm_input_mhz``.

    Raises
    ------
    ValueError
        If neither the PS nor an MMCM can make ``clock_mhz`` exactly.
    """
    ps = board_facts(board).ps
    direct = _fclk_divisors(ps.io_pll_mhz, cfg.clock_mhz)
    if direct is not None:
        return FabricClock(float(cfg.clock_mhz), float(cfg.clock_mhz), direct, None)
    fclk0 = _fclk_divisors(ps.io_pll_mhz, ps.mmcm_input_mhz)
    if fclk0 is None:
        raise ValueError(f"board {board}: the MMCM input {ps.mmcm_input_mhz:g} MHz is not the IO "
                         f"PLL {ps.io_pll_mhz:g} MHz divided by two divisors up to 63")
    speed = int(cfg.part.rsplit("-", 1)[1])
    mmcm = _mmcm(ps.mmcm_input_mhz, cfg.clock_mhz, speed)
    if mmcm is None:
        raise ValueError(
            f"clock_mhz {cfg.clock_mhz!r} can be made neither by the processing system (IO PLL "
            f"{ps.io_pll_mhz:g} MHz / two divisors up to 63, at most {_FCLK_MAX_MHZ:g} MHz) nor "
            f"by an MMCM from {ps.mmcm_input_mhz:g} MHz; choose a clock such as 100, 125 or 150")
    return FabricClock(float(cfg.clock_mhz), float(ps.mmcm_input_mhz), fclk0, mmcm)


def regs_window(board: str, cfg: HwConfig) -> tuple[int, int]:
    """Base address and size in bytes of the accelerator's register segment on M_AXI_GP0: the
    board's ``regs_base`` and the register map rounded up to a power of two, at least 4 KiB."""
    size = 4096
    while size < build_regmap(cfg).size:
        size *= 2
    base = board_facts(board).ps.regs_base
    if base % size:
        raise ValueError(f"register base 0x{base:08X} is not aligned to the segment size "
                         f"0x{size:X}")
    return base, size


def _hp_ports(board: str, design: VivadoDesign) -> list[str]:
    count = board_facts(board).ps.hp_ports
    if not design.masters:
        raise ValueError(f"design {design.top!r} has no AXI master; it needs one for DDR")
    if len(design.masters) > count:
        raise ValueError(f"design {design.top!r} has {len(design.masters)} AXI masters "
                         f"({', '.join(design.masters)}) but the PS has {count} HP ports")
    return [f"S_AXI_HP{i}" for i in range(len(design.masters))]


def package_facts(board: str, cfg: HwConfig, design: VivadoDesign) -> dict[str, Any]:
    """What the firmware must know of the generated hardware, for ``package.json``.

    ``regs_base``/``regs_size``: the register segment on M_AXI_GP0; ``fclk0_mhz``: what the
    PS must generate on FCLK0; ``clock_mhz``: the accelerator's clock; ``hp_ports``: the HP
    ports of the masters, in the order of ``design.masters``.
    """
    clock = fabric_clock(board, cfg)
    base, size = regs_window(board, cfg)
    return {"regs_base": base, "regs_size": size, "fclk0_mhz": clock.fclk0_mhz,
            "clock_mhz": clock.clock_mhz, "hp_ports": _hp_ports(board, design)}


def ps7_settings(board: str, cfg: HwConfig, design: VivadoDesign | None = None
                 ) -> dict[str, str]:
    """``CONFIG.*`` values of processing_system7 for a board, config and design."""
    ps = board_facts(board).ps
    design = design or VivadoDesign(top="accel_top", sources=())
    settings = dict(ps.ps7)
    if ps.board_part is None:
        settings["PCW_CRYSTAL_PERIPHERAL_FREQMHZ"] = f"{ps.crystal_mhz:g}"
    settings.update({
        "PCW_USE_M_AXI_GP0": "1",
        "PCW_FPGA0_PERIPHERAL_FREQMHZ": f"{fabric_clock(board, cfg).fclk0_mhz:g}",
        "PCW_FCLK0_PERIPHERAL_CLKSRC": "IO PLL",
        "PCW_EN_CLK0_PORT": "1",
        "PCW_EN_RST0_PORT": "1",
        "PCW_USE_FABRIC_INTERRUPT": "1",
        "PCW_IRQ_F2P_INTR": "1",
    })
    for port in _hp_ports(board, design):
        n = port[-1]
        settings[f"PCW_USE_S_AXI_HP{n}"] = "1"
        settings[f"PCW_S_AXI_HP{n}_DATA_WIDTH"] = str(cfg.axi_data_width)
    return settings


# ---- the script ----------------------------------------------------------------------------------

# Procedures at the top of build.tcl. @TOLERANCE@ and @OLDEST@ are filled in.
_PROCS = r"""
# ---- checks: each stops the script with one line that says what is wrong --------------------

proc build_require_vivado {oldest} {
    set version [version -short]
    if {![regexp {^([0-9]+)\.([0-9]+)} $version -> major minor]} {
        error "cannot read the Vivado version from '$version'"
    }
    if {[package vcompare $major.$minor $oldest] < 0} {
        error "this script needs Vivado $oldest or later, not $version"
    }
}

proc build_write_facts {path facts} {
    set f [open $path w]
    foreach {key value} $facts { puts $f "$key $value" }
    close $f
}

proc build_require_run {run step} {
    set status [get_property STATUS [get_runs $run]]
    if {![string match "$step Complete*" $status]} {
        error "$run stopped before $step finished (status '$status'); see the logs in\
               [get_property DIRECTORY [get_runs $run]]"
    }
}

proc build_check_mhz {what got want} {
    if {![string is double -strict $got] || abs($got - $want) > $want * @TOLERANCE@} {
        error "clock: $what is '$got' MHz, not the $want MHz the design was built for;\
               change clock_mhz in the config or the block design"
    }
}

proc build_pin_mhz {pin} {
    set hz [get_property CONFIG.FREQ_HZ [get_bd_pins $pin]]
    if {![string is double -strict $hz]} {
        error "clock: pin $pin has no frequency (CONFIG.FREQ_HZ '$hz')"
    }
    return [expr {$hz / 1e6}]
}

proc build_check_timing {pin want_mhz} {
    set facts {}
    set clocks [get_clocks -quiet -of_objects [get_pins -quiet $pin]]
    if {[llength $clocks] == 1} {
        set period [get_property PERIOD $clocks]
        build_check_mhz "the implemented clock of $pin" [expr {1000.0 / $period}] $want_mhz
        lappend facts clock $clocks period_ns $period
    } else {
        puts "WARNING: no single clock found on $pin ('$clocks'); its period was not checked"
    }
    set failed {}
    foreach {kind type} {setup max hold min} {
        set path [get_timing_paths -delay_type $type -max_paths 1 -nworst 1]
        if {[llength $path] == 0} {
            error "timing: no timed $kind path; the design has no clock constraint"
        }
        set slack [get_property SLACK $path]
        if {![string is double -strict $slack] || abs($slack) > 1e6} {
            error "timing: the worst $kind path has no slack ('$slack'); is it constrained?"
        }
        set clock [get_property ENDPOINT_CLOCK $path]
        set from [get_property STARTPOINT_PIN $path]
        set to [get_property ENDPOINT_PIN $path]
        lappend facts ${kind}_slack_ns $slack ${kind}_clock $clock ${kind}_from $from \
            ${kind}_to $to ${kind}_requirement_ns [get_property REQUIREMENT $path]
        if {$slack < 0} { lappend failed "$kind slack $slack ns on clock $clock from $from to $to" }
    }
    build_write_facts timing-check.txt $facts
    if {[llength $failed]} { error "timing not met: [join $failed {; }]; see timing.rpt" }
}

proc build_one_segment {what segments} {
    if {[llength $segments] != 1} {
        error "address: $what has [llength $segments] address segments ('$segments'), not one"
    }
    return $segments
}

proc build_find_hwh {project bd} {
    set found [get_files -quiet -all */hw_handoff/$bd.hwh]
    foreach layout {gen srcs} {
        set dir vivado/$project.$layout/sources_1/bd/$bd/hw_handoff
        lappend found {*}[glob -nocomplain $dir/$bd.hwh]
    }
    foreach path $found { if {[file isfile $path]} { return $path } }
    error "no hardware handoff $bd.hwh was generated; see vivado.log"
}
"""


def _pins(*pins: str) -> str:
    return " ".join(f"[get_bd_pins {p}]" for p in pins)


def _dict(settings: dict[str, str]) -> str:
    return " ".join(f"CONFIG.{k} {{{v}}}" for k, v in sorted(settings.items()))


def build_tcl(board: str, cfg: HwConfig, design: VivadoDesign, *, jobs: int = 4,
              project: str = "accel") -> str:
    """The complete Vivado batch script (run with ``vivado -mode batch -source build.tcl``)."""
    ps = board_facts(board).ps
    clock = fabric_clock(board, cfg)
    hp_ports = _hp_ports(board, design)
    regs_base, regs_size = regs_window(board, cfg)
    accel = "accel"
    bd = "system"
    lines = [
        f"# Vivado batch flow for board {board}, config {cfg.name} ({cfg.config_hash_hex}).",
        "# Generated by build.py; edit the config, not this file.",
        _PROCS.replace("@TOLERANCE@", f"{CLOCK_TOLERANCE:g}").strip("\n"),
        "",
        "# ---- project ---------------------------------------------------------------------",
        "set here [file normalize [file dirname [info script]]]",
        "cd $here",
        f"build_require_vivado {OLDEST_VIVADO}",
        "file delete -force accel.bit accel.bin accel.hwh accel.xsa timing-check.txt clock.txt",
        f"create_project -force {project} $here/vivado -part {cfg.part}",
    ]
    if ps.board_part:
        lines += [
            f"set board_parts [lsort -dictionary [get_board_parts -quiet -latest_file_version "
            f"{{{ps.board_part}}}]]",
            "if {[llength $board_parts] == 0} {",
            f"    error \"the {board} board files ({ps.board_part}) are not installed in this "
            "Vivado; install them or add their folder with set_param board.repoPaths\"",
            "}",
            "set_property board_part [lindex $board_parts end] [current_project]",
        ]
    lines += [f"add_files -norecurse $here/{src}" for src in design.sources]
    lines += [
        "update_compile_order -fileset sources_1",
        "",
        "# ---- block design: processing system ----------------------------------------------",
        f"create_bd_design {bd}",
        f"create_bd_cell -type ip -vlnv {_IP['ps7']} ps7",
        "apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 -config "
        f"{{make_external \"FIXED_IO, DDR\" apply_board_preset \"{1 if ps.board_part else 0}\" "
        "Master \"Disable\" Slave \"Disable\"} [get_bd_cells ps7]",
        f"set_property -dict [list {_dict(ps7_settings(board, cfg, design))}] [get_bd_cells ps7]",
        f"create_bd_cell -type module -reference {design.top} {accel}",
        "",
        "# ---- fabric clock and reset ---------------------------------------------------------",
        f"create_bd_cell -type ip -vlnv {_IP['reset']} rst_fabric",
    ]
    if clock.uses_mmcm:
        lines += [
            f"# The PS cannot make {clock.clock_mhz:g} MHz: an MMCM makes it from FCLK0 = "
            f"{clock.fclk0_mhz:g} MHz; the reset waits for it to lock.",
            f"create_bd_cell -type ip -vlnv {_IP['clk_wiz']} clk_wiz",
            "set_property -dict [list CONFIG.PRIMITIVE {MMCM} CONFIG.PRIM_SOURCE {No_buffer} "
            f"CONFIG.CLKOUT1_REQUESTED_OUT_FREQ {{{clock.clock_mhz:.3f}}} "
            "CONFIG.USE_LOCKED {true} CONFIG.USE_RESET {true} CONFIG.RESET_TYPE {ACTIVE_LOW} "
            "CONFIG.RESET_PORT {resetn}] [get_bd_cells clk_wiz]",
            f"connect_bd_net -net fclk0 {_pins('ps7/FCLK_CLK0', 'clk_wiz/clk_in1')}",
            f"connect_bd_net -net mmcm_locked {_pins('clk_wiz/locked', 'rst_fabric/dcm_locked')}",
        ]
        source = "clk_wiz/clk_out1"
        ps_reset = ["clk_wiz/resetn", "rst_fabric/ext_reset_in"]
    else:
        lines.append(f"# The PS makes {clock.clock_mhz:g} MHz on FCLK0 (IO PLL / "
                     f"{clock.fclk0_divisors[0]} / {clock.fclk0_divisors[1]}).")
        source = "ps7/FCLK_CLK0"
        ps_reset = ["rst_fabric/ext_reset_in"]
    n_hp = len(hp_ports)
    clocked = [source, f"{accel}/{design.clock}", "rst_fabric/slowest_sync_clk",
               "ps7/M_AXI_GP0_ACLK", "gp0_ic/ACLK", "gp0_ic/S00_ACLK", "gp0_ic/M00_ACLK"]
    clocked += [f"ps7/{port}_ACLK" for port in hp_ports]
    clocked += [f"hp{i}_sc/aclk" for i in range(n_hp)]
    lines += [
        f"connect_bd_net -net ps_reset_n {_pins('ps7/FCLK_RESET0_N', *ps_reset)}",
        f"connect_bd_net -net accel_reset {_pins('rst_fabric/peripheral_reset')} "
        f"[get_bd_pins {accel}/{design.reset}]",
        "",
        "# ---- control: PS M_AXI_GP0 -> AXI interconnect -> the accelerator's AXI4-Lite slave",
        f"create_bd_cell -type ip -vlnv {_IP['interconnect']} gp0_ic",
        "set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {1}] [get_bd_cells gp0_ic]",
        "connect_bd_intf_net [get_bd_intf_pins ps7/M_AXI_GP0] [get_bd_intf_pins gp0_ic/S00_AXI]",
        f"connect_bd_intf_net [get_bd_intf_pins gp0_ic/M00_AXI] "
        f"[get_bd_intf_pins {accel}/{design.slave}]",
        "",
        "# ---- data: each AXI4 master -> SmartConnect (AXI4 to AXI3) -> its own HP port --------",
    ]
    for i, (master, port) in enumerate(zip(design.masters, hp_ports, strict=True)):
        lines += [
            f"create_bd_cell -type ip -vlnv {_IP['smartconnect']} hp{i}_sc",
            f"set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{1}}] "
            f"[get_bd_cells hp{i}_sc]",
            f"connect_bd_intf_net [get_bd_intf_pins {accel}/{master}] "
            f"[get_bd_intf_pins hp{i}_sc/S00_AXI]",
            f"connect_bd_intf_net [get_bd_intf_pins hp{i}_sc/M00_AXI] "
            f"[get_bd_intf_pins ps7/{port}]",
        ]
    lines += [
        "",
        "# ---- clock, reset and interrupt nets -------------------------------------------------",
        f"connect_bd_net -net fabric_clk {_pins(*clocked)}",
        f"connect_bd_net -net interconnect_aresetn "
        f"{_pins('rst_fabric/interconnect_aresetn', 'gp0_ic/ARESETN')} "
        + " ".join(f"[get_bd_pins hp{i}_sc/aresetn]" for i in range(n_hp)),
        f"connect_bd_net -net peripheral_aresetn "
        f"{_pins('rst_fabric/peripheral_aresetn', 'gp0_ic/S00_ARESETN', 'gp0_ic/M00_ARESETN')}",
        f"connect_bd_net [get_bd_pins {accel}/{design.irq}] [get_bd_pins ps7/IRQ_F2P]",
        "",
        "# ---- addresses: registers at a fixed base (package.json regs_base), DDR for masters --",
        f"assign_bd_address -target_address_space [get_bd_addr_spaces ps7/Data] "
        f"-offset 0x{regs_base:08X} -range 0x{regs_size:08X} [build_one_segment "
        f"{accel}/{design.slave} [get_bd_addr_segs -of_objects [get_bd_intf_pins "
        f"{accel}/{design.slave}]]]",
    ]
    for master, port in zip(design.masters, hp_ports, strict=True):
        lines.append(
            f"assign_bd_address -target_address_space [get_bd_addr_spaces {accel}/{master}] "
            f"-offset 0x00000000 -range 0x{ps.ddr_bytes:08X} [build_one_segment ps7/{port} "
            f"[get_bd_addr_segs ps7/{port}/HP{port[-1]}_DDR_LOWOCM]]")
    lines += [
        "validate_bd_design",
        "",
        "# ---- the clocks the block design got must be the configured ones -------------------",
        "set fclk0_mhz [get_property CONFIG.PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ [get_bd_cells ps7]]",
        f"build_check_mhz \"FCLK0 of the processing system\" $fclk0_mhz {clock.fclk0_mhz:g}",
        f"set clock_mhz [build_pin_mhz {accel}/{design.clock}]",
        f"build_check_mhz \"the accelerator's clock\" $clock_mhz {clock.clock_mhz:g}",
        "build_write_facts clock.txt [list fclk0_mhz $fclk0_mhz clock_mhz $clock_mhz]",
        "save_bd_design",
        f"make_wrapper -files [get_files {bd}.bd] -top -import",
        f"set_property top {bd}_wrapper [current_fileset]",
        "update_compile_order -fileset sources_1",
        "",
        "# ---- synthesis, implementation, timing, bitstream -----------------------------------",
        f"launch_runs synth_1 -jobs {jobs}",
        "wait_on_run synth_1",
        "build_require_run synth_1 synth_design",
        f"launch_runs impl_1 -jobs {jobs}",
        "wait_on_run impl_1",
        "build_require_run impl_1 route_design",
        "open_run impl_1",
        "report_utilization -file utilization.rpt",
        "report_timing_summary -max_paths 10 -file timing.rpt",
        f"build_check_timing {bd}_i/{accel}/{design.clock} {clock.clock_mhz:g}",
        f"launch_runs impl_1 -to_step write_bitstream -jobs {jobs}",
        "wait_on_run impl_1",
        "build_require_run impl_1 write_bitstream",
        f"file copy -force [file join [get_property DIRECTORY [get_runs impl_1]] {bd}_wrapper.bit]"
        " accel.bit",
        "# The Linux FPGA manager loads a byte-swapped .bin, not a .bit.",
        "write_cfgmem -force -format bin -interface smapx32 -disablebitswap "
        "-loadbit \"up 0 accel.bit\" accel.bin",
        f"file copy -force [build_find_hwh {project} {bd}] accel.hwh",
        "write_hw_platform -fixed -include_bit -force -file accel.xsa",
        "puts \"build.tcl: accel.bit, accel.bin, accel.hwh and accel.xsa written\"",
    ]
    return "\n".join(lines) + "\n"


def build_vivado_sh() -> str:
    """``build_vivado.sh``: sources Vivado's settings when given, runs ``build.tcl`` and fails
    unless the bitstream, its ``.bin`` and the handoff file were written."""
    return """#!/usr/bin/env bash
# Run the Vivado flow of this directory:
#   ./build_vivado.sh [/path/to/Vivado/<version>/settings64.sh]
# Vivado comes from the settings script given (or named by AMARANTH_ENV_VIVADO), else PATH.
set -euo pipefail
cd "$(dirname "$0")"
settings=${1:-${AMARANTH_ENV_VIVADO:-}}
if [ -n "$settings" ]; then
    if [ ! -f "$settings" ]; then
        echo "error: Vivado settings script '$settings' not found" >&2
        exit 2
    fi
    # shellcheck disable=SC1090
    . "$settings"
fi
if ! command -v vivado >/dev/null 2>&1; then
    echo "error: vivado is not on PATH; give Vivado's settings64.sh:" \\
         "./build_vivado.sh /opt/Xilinx/Vivado/2023.2/settings64.sh" >&2
    exit 2
fi
rm -f accel.bit accel.bin accel.hwh accel.xsa
vivado -mode batch -nojournal -log vivado.log -source build.tcl
for name in accel.bit accel.bin accel.hwh; do
    if [ ! -s "$name" ]; then
        echo "error: Vivado finished but $name is missing; see vivado.log" >&2
        exit 1
    fi
done
echo "done: accel.bit accel.bin accel.hwh accel.xsa"
"""


# ---- reports ------------------------------------------------------------------------------------

_UTIL_ROWS = {"Slice LUTs": "lut", "Slice LUTs*": "lut", "Slice Registers": "ff",
              "Block RAM Tile": "bram36", "DSPs": "dsp"}


def parse_utilization(text: str) -> dict[str, dict[str, float]]:
    """Used/available counts from Vivado's ``report_utilization`` text tables.

    Rows are found by their site type; the "Used" column is the first number and
    "Available" the one before "Util%", so reports with or without a "Prohibited" column
    both parse. Block RAM tiles count RAMB36 (a RAMB18 is half a tile).
    """
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or cells[0] not in _UTIL_ROWS:
            continue
        key = _UTIL_ROWS[cells[0]]
        if key in out:
            continue
        try:
            out[key] = {"used": float(cells[1]), "available": float(cells[-2])}
        except ValueError:
            continue
    if not out:
        raise ValueError("no utilization table found in the report (expected Vivado's "
                         "report_utilization output)")
    return out


def parse_timing(text: str) -> dict[str, float]:
    """Worst negative slack and total negative slack (ns) from ``report_timing_summary``, and
    worst hold slack (``whs_ns``) where the table has it."""
    match = re.search(r"(WNS\(ns\)\s+TNS\(ns\)[^\n]*)\n\s*-[^\n]*\n([^\n]*)", text)
    if not match:
        raise ValueError("no 'Design Timing Summary' found in the report (expected Vivado's "
                         "report_timing_summary output)")
    header = re.split(r"\s{2,}", match.group(1).strip())
    values = match.group(2).split()
    row = dict(zip(header, values, strict=False))
    try:
        out = {"wns_ns": float(row["WNS(ns)"]), "tns_ns": float(row["TNS(ns)"])}
        if "WHS(ns)" in row:
            out["whs_ns"] = float(row["WHS(ns)"])
    except (KeyError, ValueError):
        raise ValueError("the 'Design Timing Summary' of the report has no numbers under "
                         "WNS(ns)/TNS(ns)") from None
    return out


def parse_facts(text: str) -> dict[str, str]:
    """``key value`` lines, as the script writes ``clock.txt`` and ``timing-check.txt``."""
    facts = {}
    for line in text.splitlines():
        if line.strip():
            key, _, value = line.strip().partition(" ")
            facts[key] = value.strip()
    return facts


def timing_failure(facts: dict[str, str], clock_mhz: float) -> str | None:
    """One message for a timing failure recorded in ``timing-check.txt``, or None if met.

    It names the slack, the failing clock, the worst path's endpoints and, for setup, the
    frequency the design would reach.
    """
    parts = []
    for kind in ("setup", "hold"):
        slack = float(facts[f"{kind}_slack_ns"])
        if slack < 0:
            text = (f"worst {kind} slack {slack:+.3f} ns on clock {facts[f'{kind}_clock']} from "
                    f"{facts[f'{kind}_from']} to {facts[f'{kind}_to']}")
            if kind == "setup":
                period = float(facts.get("setup_requirement_ns") or 1000.0 / clock_mhz)
                text += f" (reaches about {1000.0 / (period - slack):.1f} MHz)"
            parts.append(text)
    if not parts:
        return None
    return f"timing not met at {clock_mhz:g} MHz: " + "; ".join(parts)


def write_project(outdir: Path, board: str, cfg: HwConfig, design: VivadoDesign,
                  jobs: int = 4) -> list[Path]:
    """Write ``build.tcl`` and ``build_vivado.sh`` into ``outdir``; return their paths."""
    outdir.mkdir(parents=True, exist_ok=True)
    tcl = outdir / "build.tcl"
    tcl.write_text(build_tcl(board, cfg, design, jobs=jobs))
    sh = outdir / "build_vivado.sh"
    sh.write_text(build_vivado_sh())
    sh.chmod(0o755)
    return [tcl, sh]
