# amaranth: UnusedElaboratable=no
"""Vivado flow: the generated block-design Tcl has every piece, the top's interface attributes,
the clock plan, the package facts, and report parsing."""

import re

import pytest

from rtl import top as rtl_top
from rtl.boards import BOARDS
from rtl.build import parts as T
from rtl.build.vivado import (
    VivadoDesign,
    build_tcl,
    fabric_clock,
    package_facts,
    parse_facts,
    parse_timing,
    parse_utilization,
    ps7_settings,
    regs_window,
    timing_failure,
    write_project,
)
from rtl.config import preset
from rtl.interface.regmap import build_regmap

DESIGN = VivadoDesign(top="accel_top", sources=("accel_top.v",))


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_block_design_pieces(board):
    cfg = preset(board)
    tcl = build_tcl(board, cfg, DESIGN)
    lines = tcl.splitlines()
    assert f"create_project -force accel $here/vivado -part {cfg.part}" in lines
    assert "add_files -norecurse $here/accel_top.v" in lines
    assert "create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7:5.5 ps7" in lines
    assert "create_bd_cell -type module -reference accel_top accel" in lines
    ps7 = next(line for line in lines if line.startswith("set_property -dict [list CONFIG.PCW"))
    fclk0 = fabric_clock(board, cfg).fclk0_mhz
    for setting in ("CONFIG.PCW_USE_M_AXI_GP0 {1}", "CONFIG.PCW_USE_S_AXI_HP0 {1}",
                    f"CONFIG.PCW_S_AXI_HP0_DATA_WIDTH {{{cfg.axi_data_width}}}",
                    f"CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {{{fclk0:g}}}",
                    "CONFIG.PCW_USE_FABRIC_INTERRUPT {1}", "CONFIG.PCW_IRQ_F2P_INTR {1}"):
        assert setting in ps7
    assert "connect_bd_net [get_bd_pins accel/irq] [get_bd_pins ps7/IRQ_F2P]" in lines
    assert ("connect_bd_net -net accel_reset [get_bd_pins rst_fabric/peripheral_reset] "
            "[get_bd_pins accel/rst]") in lines
    assert "launch_runs impl_1 -to_step write_bitstream -jobs 4" in lines
    assert "file copy -force [build_find_hwh accel system] accel.hwh" in lines
    assert "report_utilization -file utilization.rpt" in lines
    assert "report_timing_summary -max_paths 10 -file timing.rpt" in lines
    assert "write_hw_platform -fixed -include_bit -force -file accel.xsa" in lines
    # The clock read back after validation, the slack checked before the bitstream.
    assert lines.index("validate_bd_design") < lines.index(
        f"build_check_mhz \"the accelerator's clock\" $clock_mhz {cfg.clock_mhz:g}")
    assert lines.index(f"build_check_timing system_i/accel/clk {cfg.clock_mhz:g}") < \
        lines.index("launch_runs impl_1 -to_step write_bitstream -jobs 4")
    assert ("assign_bd_address -target_address_space [get_bd_addr_spaces ps7/Data] -offset "
            "0x43C00000 -range 0x00001000 [build_one_segment accel/s_axil [get_bd_addr_segs "
            "-of_objects [get_bd_intf_pins accel/s_axil]]]") in lines
    ddr = 0x40000000 if board == "zc706" else 0x20000000
    assert ("assign_bd_address -target_address_space [get_bd_addr_spaces accel/m_axi] -offset "
            f"0x00000000 -range 0x{ddr:08X} [build_one_segment ps7/S_AXI_HP0 [get_bd_addr_segs "
            "ps7/S_AXI_HP0/HP0_DDR_LOWOCM]]") in lines
    # Nothing left to version-dependent automation but the PS preset.
    assert [line.split()[2] for line in lines if line.startswith("apply_bd_automation")] == [
        "xilinx.com:bd_rule:processing_system7"]
    assert "1.4" not in tcl and "(150 MHz)" not in tcl


def test_zc706_clock_from_an_mmcm():
    cfg = preset("zc706")
    clock = fabric_clock("zc706", cfg)
    assert (clock.clock_mhz, clock.fclk0_mhz, clock.uses_mmcm) == (150.0, 100.0, True)
    mult, divclk, out = clock.mmcm
    assert 100.0 * mult / divclk / out == 150.0
    assert 600 <= 100.0 * mult / divclk <= 1440          # the -2 part's VCO range
    assert mult * 8 == int(mult * 8) and out * 8 == int(out * 8)
    tcl = build_tcl("zc706", cfg, DESIGN)
    assert "create_bd_cell -type ip -vlnv xilinx.com:ip:clk_wiz:6.0 clk_wiz" in tcl
    assert "CONFIG.CLKOUT1_REQUESTED_OUT_FREQ {150.000}" in tcl
    assert "CONFIG.PRIM_SOURCE {No_buffer}" in tcl
    assert ("connect_bd_net -net mmcm_locked [get_bd_pins clk_wiz/locked] "
            "[get_bd_pins rst_fabric/dcm_locked]") in tcl
    assert "CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {100}" in tcl


def test_pynq_z2_clock_from_the_ps():
    clock = fabric_clock("pynq-z2", preset("pynq-z2"))
    assert (clock.clock_mhz, clock.fclk0_mhz, clock.mmcm) == (125.0, 125.0, None)
    assert clock.fclk0_divisors[0] * clock.fclk0_divisors[1] == 8      # the 1000 MHz IO PLL / 8
    assert "clk_wiz" not in build_tcl("pynq-z2", preset("pynq-z2"), DESIGN)


@pytest.mark.parametrize(("mhz", "fclk0", "mmcm"), [
    (125.0, 125.0, False), (200.0, 200.0, False), (142.857, 142.857, False),
    (150.0, 100.0, True), (175.0, 100.0, True), (133.333, 100.0, True)])
def test_clock_choices(mhz, fclk0, mmcm):
    clock = fabric_clock("zc706", preset("zc706").replace(clock_mhz=mhz))
    assert (clock.clock_mhz, clock.fclk0_mhz, clock.uses_mmcm) == (mhz, fclk0, mmcm)
    if mmcm:
        mult, divclk, out = clock.mmcm
        assert abs(100.0 * mult / divclk / out - mhz) <= mhz * 1e-4


def test_clock_nobody_can_make():
    with pytest.raises(ValueError, match=r"^clock_mhz 111\.1 can be made neither by the "
                                         r"processing system \(IO PLL 1000 MHz / two divisors "
                                         r"up to 63, at most 250 MHz\) nor by an MMCM from 100 "
                                         r"MHz; choose a clock such as 100, 125 or 150$"):
        fabric_clock("pynq-z2", preset("pynq-z2").replace(clock_mhz=111.1))


def test_pynq_z2_processing_system_is_complete():
    ps7 = ps7_settings("pynq-z2", preset("pynq-z2"), DESIGN)
    # Values of the board's published PS configuration (PYNQ's Pynq-Z2 project, TUL preset).
    expected = {
        "PCW_CRYSTAL_PERIPHERAL_FREQMHZ": "50", "PCW_APU_PERIPHERAL_FREQMHZ": "650",
        "PCW_UIPARAM_DDR_PARTNO": "MT41J256M16 RE-125", "PCW_UIPARAM_DDR_BUS_WIDTH": "16 Bit",
        "PCW_UIPARAM_DDR_FREQ_MHZ": "525", "PCW_UIPARAM_DDR_CL": "7",
        "PCW_UIPARAM_DDR_T_RC": "48.91", "PCW_UIPARAM_DDR_BOARD_DELAY0": "0.223",
        "PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_3": "-0.033",
        "PCW_UIPARAM_DDR_TRAIN_WRITE_LEVEL": "1", "PCW_UIPARAM_DDR_TRAIN_READ_GATE": "1",
        "PCW_UIPARAM_DDR_TRAIN_DATA_EYE": "1",
        "PCW_QSPI_PERIPHERAL_ENABLE": "1", "PCW_QSPI_GRP_SINGLE_SS_IO": "MIO 1 .. 6",
        "PCW_QSPI_GRP_FBCLK_IO": "MIO 8", "PCW_SD0_PERIPHERAL_ENABLE": "1",
        "PCW_SD0_SD0_IO": "MIO 40 .. 45", "PCW_SD0_GRP_CD_IO": "MIO 47",
        "PCW_ENET0_PERIPHERAL_ENABLE": "1", "PCW_ENET0_ENET0_IO": "MIO 16 .. 27",
        "PCW_ENET0_GRP_MDIO_IO": "MIO 52 .. 53", "PCW_ENET0_RESET_IO": "MIO 9",
        "PCW_USB0_PERIPHERAL_ENABLE": "1", "PCW_USB0_USB0_IO": "MIO 28 .. 39",
        "PCW_USB0_RESET_IO": "MIO 46", "PCW_UART0_PERIPHERAL_ENABLE": "1",
        "PCW_UART0_UART0_IO": "MIO 14 .. 15", "PCW_GPIO_MIO_GPIO_ENABLE": "1",
        "PCW_PRESET_BANK0_VOLTAGE": "LVCMOS 3.3V", "PCW_PRESET_BANK1_VOLTAGE": "LVCMOS 1.8V"}
    assert {k: ps7.get(k) for k in expected} == expected
    # Every MIO pin a peripheral takes belongs to one peripheral only.
    taken: dict[int, str] = {}
    for key, value in ps7.items():
        for lo, hi in re.findall(r"MIO (\d+)(?: \.\. (\d+))?$", value):
            for pin in range(int(lo), int(hi or lo) + 1):
                assert pin not in taken, (key, taken.get(pin))
                taken[pin] = key
    zc = build_tcl("zc706", preset("zc706"), DESIGN)
    assert "PCW_UIPARAM_DDR_PARTNO" not in zc and 'apply_board_preset "1"' in zc
    assert "get_board_parts -quiet -latest_file_version {xilinx.com:zc706:part0:*}" in zc
    assert "board_part" not in build_tcl("pynq-z2", preset("pynq-z2"), DESIGN)


def test_package_facts():
    for board in BOARDS:
        cfg = preset(board)
        facts = package_facts(board, cfg, DESIGN)
        assert facts == {"regs_base": 0x43C0_0000, "regs_size": 4096,
                         "fclk0_mhz": fabric_clock(board, cfg).fclk0_mhz,
                         "clock_mhz": cfg.clock_mhz, "hp_ports": ["S_AXI_HP0"]}
        assert build_regmap(cfg).size <= facts["regs_size"]
        assert f"-offset 0x{facts['regs_base']:08X} -range 0x{facts['regs_size']:08X}" in \
            build_tcl(board, cfg, DESIGN)
    assert regs_window("zc706", preset("zc706")) == (0x43C0_0000, 4096)
    facts = package_facts("pynq-z2", preset("pynq-z2").replace(clock_mhz=125), DESIGN)
    assert (facts["clock_mhz"], facts["fclk0_mhz"]) == (125.0, 125.0)
    assert all(isinstance(facts[k], float) for k in ("clock_mhz", "fclk0_mhz"))


def test_several_masters_get_their_own_hp_ports():
    design = VivadoDesign(top="accel_top", sources=("accel_top.v",),
                          masters=("m_axi", "m_axi_w0", "m_axi_w1"))
    cfg = preset("zc706")
    assert package_facts("zc706", cfg, design)["hp_ports"] == ["S_AXI_HP0", "S_AXI_HP1",
                                                                "S_AXI_HP2"]
    tcl = build_tcl("zc706", cfg, design)
    for i, master in enumerate(design.masters):
        assert (f"connect_bd_intf_net [get_bd_intf_pins accel/{master}] "
                f"[get_bd_intf_pins hp{i}_sc/S00_AXI]") in tcl
        assert (f"connect_bd_intf_net [get_bd_intf_pins hp{i}_sc/M00_AXI] "
                f"[get_bd_intf_pins ps7/S_AXI_HP{i}]") in tcl
        assert f"CONFIG.PCW_USE_S_AXI_HP{i} {{1}}" in tcl
        assert f"[get_bd_addr_segs ps7/S_AXI_HP{i}/HP{i}_DDR_LOWOCM]]" in tcl
    five = VivadoDesign(top="t", sources=(), masters=tuple(f"m{i}" for i in range(5)))
    with pytest.raises(ValueError, match=r"^design 't' has 5 AXI masters \(m0, m1, m2, m3, m4\) "
                                         r"but the PS has 4 HP ports$"):
        package_facts("zc706", cfg, five)
    with pytest.raises(ValueError, match=r"^design 't' has no AXI master; it needs one for DDR$"):
        package_facts("zc706", cfg, VivadoDesign(top="t", sources=(), masters=()))


def test_write_project(tmp_path):
    paths = write_project(tmp_path, "zc706", preset("zc706"), DESIGN)
    assert [p.name for p in paths] == ["build.tcl", "build_vivado.sh"]
    sh = (tmp_path / "build_vivado.sh").read_text()
    assert "vivado -mode batch -nojournal -log vivado.log -source build.tcl" in sh
    assert sh.startswith("#!/usr/bin/env bash\n")


# ---- the Verilog top's interface attributes ------------------------------------------------------


def _attrs(verilog: str) -> dict[str, dict[str, str]]:
    """Port -> its attributes, from the port declarations of module accel_top."""
    body = re.search(r"^module accel_top\(.*?^endmodule", verilog, re.S | re.M).group(0)
    out = {}
    for attrs, port in re.findall(r"((?:^\s*\(\*[^\n]*\*\)\n)+)\s*(?:input|output)\s+"
                                  r"(?:\[[^\]]*\]\s*)?(\w+);", body, re.M):
        out[port] = dict(re.findall(r'\(\* (\w+) = "([^"]*)" \*\)', attrs))
    return out


@pytest.fixture(scope="module")
def tiny_top():
    return T.top_verilog(preset("pynq-z2").replace(name="tiny", pot_rows=2, pot_cols=4,
                                                    dsp_rows=2, dsp_cols=4, weight_ports=1))


def test_top_interface_attributes(tiny_top):
    attrs = _attrs(tiny_top)
    info = {port: a.get("X_INTERFACE_INFO") for port, a in attrs.items()}
    assert info["clk"] == "xilinx.com:signal:clock:1.0 clk CLK"
    assert attrs["clk"]["X_INTERFACE_PARAMETER"] == (
        "ASSOCIATED_BUSIF s_axil:m_axi:m_axi_w0, ASSOCIATED_RESET rst")
    assert info["rst"] == "xilinx.com:signal:reset:1.0 rst RST"
    assert attrs["rst"]["X_INTERFACE_PARAMETER"] == "POLARITY ACTIVE_HIGH"
    assert info["irq"] == "xilinx.com:signal:interrupt:1.0 irq INTERRUPT"
    assert attrs["irq"]["X_INTERFACE_PARAMETER"] == "SENSITIVITY LEVEL_HIGH"
    for port, value in info.items():
        for prefix in ("s_axil", "m_axi_w0", "m_axi"):      # the weight master's first
            if port.startswith(prefix + "_"):
                assert value == (f"xilinx.com:interface:aximm:1.0 {prefix} "
                                 f"{port[len(prefix) + 1:].upper()}")
                break
    assert set(info) == {p for p in attrs}           # every port is declared
    assert sum(p.startswith("s_axil_") for p in info) == 17
    assert attrs["s_axil_wdata"]["X_INTERFACE_PARAMETER"] == (
        "PROTOCOL AXI4LITE, DATA_WIDTH 32, ADDR_WIDTH 7")
    assert attrs["m_axi_wdata"]["X_INTERFACE_PARAMETER"] == (
        "PROTOCOL AXI4, DATA_WIDTH 64, ADDR_WIDTH 32, ID_WIDTH 1")
    params = [p for p, a in attrs.items() if "X_INTERFACE_PARAMETER" in a]
    assert attrs["m_axi_w0_wdata"]["X_INTERFACE_PARAMETER"] == (
        "PROTOCOL AXI4, DATA_WIDTH 64, ADDR_WIDTH 32, ID_WIDTH 1")
    assert sorted(params) == ["clk", "irq", "m_axi_w0_wdata", "m_axi_wdata", "rst",
                              "s_axil_wdata"]


def test_vivado_design_follows_the_top():
    design = T.vivado_design()
    assert (design.top, design.sources, design.slave, design.masters) == (
        "accel_top", ("accel_top.v",), "s_axil", ("m_axi",))
    # A config's weight masters follow the feature-map master, one HP port each.
    assert T.vivado_design(preset("pynq-z2")).masters == ("m_axi", "m_axi_w0", "m_axi_w1")
    assert T.vivado_design(preset("zc706")).masters == (
        "m_axi", "m_axi_w0", "m_axi_w1", "m_axi_w2")


def test_top_annotation_errors():
    cfg = preset("pynq-z2").replace(name="tiny", pot_rows=2, pot_cols=4, dsp_rows=2, dsp_cols=4)
    with pytest.raises(ValueError, match=r"^bus 'm_axi' is declared a slave but its awvalid is "
                                         r"an output$"):
        rtl_top.VivadoTop(rtl_top.flat_accelerator(cfg),
                          {**rtl_top.buses(cfg), "bus": ("m_axi", "slave")})
    with pytest.raises(ValueError, match=r"^bus 's_axil' is declared a master but its awvalid "
                                         r"is an input$"):
        rtl_top.VivadoTop(rtl_top.flat_accelerator(cfg), {"bus": ("s_axil", "master")})
    with pytest.raises(ValueError, match=r"^bus 's_axi' is not an AXI bus: it has no awvalid, "
                                         r"it has no awaddr, it has no wdata$"):
        rtl_top.VivadoTop(rtl_top.flat_accelerator(cfg), {"bus": ("s_axi", "slave")})
    top = rtl_top.VivadoTop(rtl_top.flat_accelerator(cfg), rtl_top.buses(cfg))
    with pytest.raises(ValueError, match=r"^no module 'accel_top' in the Verilog$"):
        top.annotate("module other(a);\nendmodule\n", "accel_top")
    with pytest.raises(ValueError, match=r"^ports .*irq.* are not declared in module "
                                         r"'accel_top'$"):
        top.annotate("module accel_top(clk);\n  input clk;\nendmodule\n", "accel_top")
    with pytest.raises(TypeError, match=r"^the top needs a one-bit output 'intr' for the "
                                        r"interrupt$"):
        rtl_top.VivadoTop(rtl_top.flat_accelerator(cfg), rtl_top.buses(cfg), irq="intr")


# Tables in the layout of Vivado's report_utilization (2022+ adds a "Prohibited" column).
UTIL_2022 = """
1. Slice Logic
--------------

+----------------------------+-------+-------+------------+-----------+-------+
|          Site Type         |  Used | Fixed | Prohibited | Available | Util% |
+----------------------------+-------+-------+------------+-----------+-------+
| Slice LUTs                 | 21345 |     0 |          0 |     53200 | 40.12 |
|   LUT as Logic             | 20001 |     0 |          0 |     53200 | 37.60 |
| Slice Registers            | 30211 |     0 |          0 |    106400 | 28.39 |
+----------------------------+-------+-------+------------+-----------+-------+
3. Memory
+-------------------+------+-------+------------+-----------+-------+
|     Site Type     | Used | Fixed | Prohibited | Available | Util% |
+-------------------+------+-------+------------+-----------+-------+
| Block RAM Tile    | 60.5 |     0 |          0 |       140 | 43.21 |
|   RAMB36/FIFO*    |   55 |     0 |          0 |       140 | 39.29 |
+-------------------+------+-------+------------+-----------+-------+
4. DSP
+----------------+------+-------+------------+-----------+-------+
|    Site Type   | Used | Fixed | Prohibited | Available | Util% |
+----------------+------+-------+------------+-----------+-------+
| DSPs           |  150 |     0 |          0 |       220 | 68.18 |
|   DSP48E1 only |  150 |       |            |           |       |
+----------------+------+-------+------------+-----------+-------+
"""

UTIL_2019 = """
| Slice LUTs*                | 1200 |     0 |     218600 |  0.55 |
| Slice Registers            | 2400 |     0 |     437200 |  0.55 |
| Block RAM Tile             |    4 |     0 |        545 |  0.73 |
| DSPs                       |  512 |     0 |        900 | 56.89 |
"""

_TIMING_COLUMNS = [("WNS(ns)", "-0.213"), ("TNS(ns)", "-4.102"), ("TNS Failing Endpoints", "31"),
                   ("TNS Total Endpoints", "98765"), ("WHS(ns)", "0.041"), ("THS(ns)", "0.000"),
                   ("THS Failing Endpoints", "0"), ("THS Total Endpoints", "98765"),
                   ("WPWS(ns)", "2.750"), ("TPWS(ns)", "0.000")]
# The summary table as report_timing_summary lays it out: right-aligned columns two apart.
TIMING = "\n".join([
    "| Design Timing Summary", "| ---------------------", "",
    "  ".join(f"{h:>{len(h) + 2}}" for h, _ in _TIMING_COLUMNS),
    "  ".join(f"{'-' * len(h):>{len(h) + 2}}" for h, _ in _TIMING_COLUMNS),
    "  ".join(f"{v:>{len(h) + 2}}" for h, v in _TIMING_COLUMNS), ""])


def test_parse_utilization():
    assert parse_utilization(UTIL_2022) == {
        "lut": {"used": 21345, "available": 53200}, "ff": {"used": 30211, "available": 106400},
        "bram36": {"used": 60.5, "available": 140}, "dsp": {"used": 150, "available": 220}}
    assert parse_utilization(UTIL_2019)["lut"] == {"used": 1200, "available": 218600}
    with pytest.raises(ValueError, match=r"^no utilization table found"):
        parse_utilization("nothing here")


def test_parse_timing():
    assert parse_timing(TIMING) == {"wns_ns": -0.213, "tns_ns": -4.102, "whs_ns": 0.041}
    with pytest.raises(ValueError, match=r"^no 'Design Timing Summary' found"):
        parse_timing("")
    with pytest.raises(ValueError, match=r"^the 'Design Timing Summary' of the report has no "
                                         r"numbers under WNS\(ns\)/TNS\(ns\)$"):
        parse_timing("    WNS(ns)      TNS(ns)\n    -------      -------\n   NA   NA\n")


CHECK = """setup_slack_ns -0.213
setup_clock clk_out1_system_clk_wiz_0
setup_from system_i/accel/inst/a_reg/C
setup_to system_i/accel/inst/b_reg/D
setup_requirement_ns 6.667
hold_slack_ns 0.031
hold_clock clk_out1_system_clk_wiz_0
hold_from x/C
hold_to y/D
hold_requirement_ns 0.000
"""


def test_timing_failure_message():
    facts = parse_facts(CHECK)
    assert facts["setup_from"] == "system_i/accel/inst/a_reg/C"
    assert timing_failure(facts, 150.0) == (
        "timing not met at 150 MHz: worst setup slack -0.213 ns on clock "
        "clk_out1_system_clk_wiz_0 from system_i/accel/inst/a_reg/C to "
        "system_i/accel/inst/b_reg/D (reaches about 145.3 MHz)")
    facts.update(setup_slack_ns="0.100", hold_slack_ns="-0.020")
    assert timing_failure(facts, 150.0) == (
        "timing not met at 150 MHz: worst hold slack -0.020 ns on clock "
        "clk_out1_system_clk_wiz_0 from x/C to y/D")
    facts["hold_slack_ns"] = "0.000"
    assert timing_failure(facts, 150.0) is None
