"""Vivado flow: the generated block-design Tcl has every piece, and report parsing."""

import pytest

from rtl.boards import BOARDS, board_platform, part_of
from rtl.config import preset
from rtl.vivado import VivadoDesign, build_tcl, parse_timing, parse_utilization, write_project

DESIGN = VivadoDesign(top="accel_top", sources=("accel_top.v",))


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_board_part_matches_preset(board):
    assert part_of(board_platform(board)) == preset(board).part


def test_unknown_board():
    with pytest.raises(ValueError, match=r"^unknown board 'zedboard'; valid boards: pynq-z2, "
                                         r"zc706$"):
        board_platform("zedboard")


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
    for setting in ("CONFIG.PCW_USE_M_AXI_GP0 {1}", "CONFIG.PCW_USE_S_AXI_HP0 {1}",
                    f"CONFIG.PCW_S_AXI_HP0_DATA_WIDTH {{{cfg.axi_data_width}}}",
                    f"CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {{{cfg.clock_mhz:g}}}",
                    "CONFIG.PCW_USE_FABRIC_INTERRUPT {1}", "CONFIG.PCW_IRQ_F2P_INTR {1}"):
        assert setting in ps7
    gp0 = next(line for line in lines if '"/ps7/M_AXI_GP0"' in line)
    assert gp0.endswith("[get_bd_intf_pins accel/s_axil]")
    hp0 = next(line for line in lines if '"/accel/m_axi"' in line)
    assert hp0.endswith("[get_bd_intf_pins ps7/S_AXI_HP0]")
    assert "connect_bd_net [get_bd_pins accel/irq] [get_bd_pins ps7/IRQ_F2P]" in lines
    assert "connect_bd_net [get_bd_pins ps7/FCLK_CLK0] [get_bd_pins accel/clk]" in lines
    assert "connect_bd_net [get_bd_pins rst_fclk0/peripheral_reset] [get_bd_pins accel/rst]" \
        in lines
    assert any("proc_sys_reset" in line for line in lines)
    assert "launch_runs impl_1 -to_step write_bitstream -jobs 4" in lines
    assert any(line.endswith("$here/accel.hwh") for line in lines)
    assert "report_utilization -file $here/utilization.rpt" in lines
    assert "report_timing_summary -file $here/timing.rpt" in lines
    assert "write_hw_platform -fixed -include_bit -force -file $here/accel.xsa" in lines


def test_board_specific_ps7():
    z2 = build_tcl("pynq-z2", preset("pynq-z2"), DESIGN)
    assert "CONFIG.PCW_UIPARAM_DDR_PARTNO {MT41K256M16 RE-125}" in z2
    assert "board_part" not in z2
    zc = build_tcl("zc706", preset("zc706"), DESIGN)
    assert "set_property board_part xilinx.com:zc706:part0:1.4 [current_project]" in zc
    assert 'apply_board_preset "1"' in zc


def test_write_project(tmp_path):
    paths = write_project(tmp_path, "zc706", preset("zc706"), DESIGN)
    assert [p.name for p in paths] == ["build.tcl", "build_vivado.sh"]
    assert "vivado -mode batch" in (tmp_path / "build_vivado.sh").read_text()


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

TIMING = """
------------------------------------------------------------------------------------------------
| Design Timing Summary
| ---------------------
------------------------------------------------------------------------------------------------

    WNS(ns)      TNS(ns)  TNS Failing Endpoints  TNS Total Endpoints      WHS(ns)
    -------      -------  ---------------------  -------------------      -------
     -0.213       -4.102                     31                98765        0.041
"""


def test_parse_utilization():
    assert parse_utilization(UTIL_2022) == {
        "lut": {"used": 21345, "available": 53200}, "ff": {"used": 30211, "available": 106400},
        "bram36": {"used": 60.5, "available": 140}, "dsp": {"used": 150, "available": 220}}
    assert parse_utilization(UTIL_2019)["lut"] == {"used": 1200, "available": 218600}
    with pytest.raises(ValueError, match=r"^no utilization table found"):
        parse_utilization("nothing here")


def test_parse_timing():
    assert parse_timing(TIMING) == {"wns_ns": -0.213, "tns_ns": -4.102}
    with pytest.raises(ValueError, match=r"^no 'Design Timing Summary' found"):
        parse_timing("")
