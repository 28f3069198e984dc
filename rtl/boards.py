"""The supported Zynq-7000 boards: Amaranth platforms (fabric pins) and processing-system facts."""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth.build import Attrs, Clock, DiffPairs, Pins, Resource
from amaranth.vendor import XilinxPlatform
from amaranth_boards.resources import ButtonResources, LEDResources, SwitchResources

__all__ = ["BOARDS", "PS_BOARDS", "PynqZ2Platform", "ZC706Platform", "ZynqPS", "board_platform",
           "board_ps", "part_of"]


class ZC706Platform(XilinxPlatform):
    """Xilinx ZC706 evaluation board (XC7Z045-2FFG900).

    Pins from the ZC706 Evaluation Board User Guide (UG954): 200 MHz LVDS system clock
    SYSCLK_P/N on H9/G9 (bank 34, 1.5 V); user LEDs GPIO_LED_LEFT Y21, GPIO_LED_CENTER G2,
    GPIO_LED_RIGHT W21, GPIO_LED_0 A17; push buttons GPIO_SW_LEFT AK25, GPIO_SW_CENTER K15,
    GPIO_SW_RIGHT R27; DIP switches GPIO_DIP_SW0..3 AB17 AC16 AC17 AJ13. Banks with 2.5 V
    I/O use LVCMOS25, the 1.5 V banks LVCMOS15. The accelerator itself is clocked and reset
    by the processing system; the LEDs show its status.
    """

    device = "xc7z045"
    package = "ffg900"
    speed = "2"
    default_clk = "sysclk"
    resources = [
        Resource("sysclk", 0, DiffPairs("H9", "G9", dir="i"), Clock(200e6),
                 Attrs(IOSTANDARD="LVDS")),
        *LEDResources(pins={0: "Y21", 1: "W21"}, attrs=Attrs(IOSTANDARD="LVCMOS25")),
        *LEDResources(pins={2: "G2", 3: "A17"}, attrs=Attrs(IOSTANDARD="LVCMOS15")),
        *ButtonResources(pins={0: "AK25", 1: "R27"}, attrs=Attrs(IOSTANDARD="LVCMOS25")),
        *ButtonResources(pins={2: "K15"}, attrs=Attrs(IOSTANDARD="LVCMOS15")),
        *SwitchResources(pins="AB17 AC16 AC17 AJ13", attrs=Attrs(IOSTANDARD="LVCMOS25")),
    ]
    connectors = []


class PynqZ2Platform(XilinxPlatform):
    """TUL PYNQ-Z2 (XC7Z020-1CLG400).

    Pins from the PYNQ-Z2 reference manual and master constraints file (TUL, rev. 1.0):
    125 MHz clock on H16; LEDs LD0..LD3 R14 P14 N16 M14; buttons BTN0..BTN3 D19 D20 L20 L19;
    switches SW0/SW1 M20 M19; all 3.3 V LVCMOS33.
    """

    device = "xc7z020"
    package = "clg400"
    speed = "1"
    default_clk = "clk125"
    resources = [
        Resource("clk125", 0, Pins("H16", dir="i"), Clock(125e6), Attrs(IOSTANDARD="LVCMOS33")),
        *LEDResources(pins="R14 P14 N16 M14", attrs=Attrs(IOSTANDARD="LVCMOS33")),
        *ButtonResources(pins="D19 D20 L20 L19", attrs=Attrs(IOSTANDARD="LVCMOS33")),
        *SwitchResources(pins="M20 M19", attrs=Attrs(IOSTANDARD="LVCMOS33")),
    ]
    connectors = []


#: Board name -> platform class. Board names equal the HwConfig preset names.
BOARDS: dict[str, type[XilinxPlatform]] = {"zc706": ZC706Platform, "pynq-z2": PynqZ2Platform}


def part_of(platform: type[XilinxPlatform]) -> str:
    """The Vivado part string of a platform, as HwConfig.part spells it."""
    return f"{platform.device}{platform.package}-{platform.speed}"


def board_platform(name: str) -> type[XilinxPlatform]:
    """The platform class of a board; an unknown name lists the valid ones."""
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(
            f"unknown board {name!r}; valid boards: {', '.join(sorted(BOARDS))}") from None


# ---- the processing system -----------------------------------------------------------------------


@dataclass(frozen=True)
class ZynqPS:
    """What the Vivado block design needs to know of a board's Zynq-7000 processing system.

    The fabric clock, the register window and the DDR window of the generated project are
    computed from these facts (``rtl/vivado.py``) and recorded in the build package for the
    firmware, so none of them is written anywhere else.
    """

    #: PS reference clock (PS_CLK) in MHz. Example: ``50.0`` (PYNQ-Z2).
    crystal_mhz: float
    #: IO PLL frequency in MHz; the fabric clocks FCLK0..3 are it divided by two 6-bit
    #: divisors (UG585, ``FPGA0_CLK_CTRL``). Example: ``1000.0``.
    io_pll_mhz: float
    #: PS DDR size in bytes, the window the accelerator's masters see through the HP ports.
    ddr_bytes: int
    #: Vivado board part to look up at run time (``get_board_parts``), newest file version
    #: first; None for a board whose board files do not ship with Vivado.
    #: Example: ``"xilinx.com:zc706:part0:*"``.
    board_part: str | None
    #: ``processing_system7`` settings written into the script (board files not needed); the
    #: PS clock is added from ``crystal_mhz``.
    ps7: dict[str, str] = field(default_factory=dict)
    #: FCLK0 in MHz when an MMCM makes the fabric clock (a value the IO PLL divides exactly).
    mmcm_input_mhz: float = 100.0
    #: Fixed base address of the accelerator's AXI4-Lite registers: the first address of the
    #: M_AXI_GP0 window (0x4000_0000..0x7FFF_FFFF, UG585) that Xilinx tools hand out.
    regs_base: int = 0x43C0_0000
    #: High-performance slave ports of the PS (S_AXI_HP0..3), 64 bits each.
    hp_ports: int = 4
    #: Peak bandwidth of the PS DDR in GB/s (bus width x transfer rate). Example: ``2.1``
    #: (PYNQ-Z2: DDR3 x16 at 1050 MT/s).
    ddr_peak_gbs: float = 0.0


# PYNQ-Z2 processing system, from the board's published PS configuration (TUL board files and
# PYNQ's Pynq-Z2 hardware project): MT41J256M16 RE-125 DDR3 (16-bit, 525 MHz, trained), CPU
# 650 MHz from a 50 MHz PS clock, QSPI (MIO 1..6, feedback clock MIO 8), Ethernet 0 RGMII
# (MIO 16..27, MDIO 52..53, reset MIO 9), USB 0 (MIO 28..39, reset MIO 46), SD 0 (MIO 40..45,
# card detect MIO 47), UART 0 (MIO 14..15, 115200 baud), the other MIO pins GPIO.
_PYNQ_Z2_PS7 = {
    "PCW_APU_PERIPHERAL_FREQMHZ": "650",
    "PCW_PRESET_BANK0_VOLTAGE": "LVCMOS 3.3V",
    "PCW_PRESET_BANK1_VOLTAGE": "LVCMOS 1.8V",
    "PCW_UIPARAM_DDR_ENABLE": "1",
    "PCW_UIPARAM_DDR_MEMORY_TYPE": "DDR 3",
    "PCW_UIPARAM_DDR_PARTNO": "MT41J256M16 RE-125",
    "PCW_UIPARAM_DDR_BUS_WIDTH": "16 Bit",
    "PCW_UIPARAM_DDR_DRAM_WIDTH": "16 Bits",
    "PCW_UIPARAM_DDR_DEVICE_CAPACITY": "4096 MBits",
    "PCW_UIPARAM_DDR_SPEED_BIN": "DDR3_1066F",
    "PCW_UIPARAM_DDR_FREQ_MHZ": "525",
    "PCW_UIPARAM_DDR_ECC": "Disabled",
    "PCW_UIPARAM_DDR_HIGH_TEMP": "Normal (0-85)",
    "PCW_UIPARAM_DDR_USE_INTERNAL_VREF": "0",
    "PCW_UIPARAM_DDR_BANK_ADDR_COUNT": "3",
    "PCW_UIPARAM_DDR_ROW_ADDR_COUNT": "15",
    "PCW_UIPARAM_DDR_COL_ADDR_COUNT": "10",
    "PCW_UIPARAM_DDR_BL": "8",
    "PCW_UIPARAM_DDR_AL": "0",
    "PCW_UIPARAM_DDR_CL": "7",
    "PCW_UIPARAM_DDR_CWL": "6",
    "PCW_UIPARAM_DDR_T_RCD": "7",
    "PCW_UIPARAM_DDR_T_RP": "7",
    "PCW_UIPARAM_DDR_T_RC": "48.91",
    "PCW_UIPARAM_DDR_T_RAS_MIN": "35.0",
    "PCW_UIPARAM_DDR_T_FAW": "40.0",
    "PCW_UIPARAM_DDR_BOARD_DELAY0": "0.223",
    "PCW_UIPARAM_DDR_BOARD_DELAY1": "0.212",
    "PCW_UIPARAM_DDR_BOARD_DELAY2": "0.085",
    "PCW_UIPARAM_DDR_BOARD_DELAY3": "0.092",
    "PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_0": "0.040",
    "PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_1": "0.058",
    "PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_2": "-0.009",
    "PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_3": "-0.033",
    "PCW_UIPARAM_DDR_TRAIN_WRITE_LEVEL": "1",
    "PCW_UIPARAM_DDR_TRAIN_READ_GATE": "1",
    "PCW_UIPARAM_DDR_TRAIN_DATA_EYE": "1",
    "PCW_QSPI_PERIPHERAL_ENABLE": "1",
    "PCW_QSPI_GRP_SINGLE_SS_ENABLE": "1",
    "PCW_QSPI_GRP_SINGLE_SS_IO": "MIO 1 .. 6",
    "PCW_QSPI_GRP_FBCLK_ENABLE": "1",
    "PCW_QSPI_GRP_FBCLK_IO": "MIO 8",
    "PCW_SINGLE_QSPI_DATA_MODE": "x4",
    "PCW_QSPI_PERIPHERAL_FREQMHZ": "200",
    "PCW_ENET0_PERIPHERAL_ENABLE": "1",
    "PCW_ENET0_ENET0_IO": "MIO 16 .. 27",
    "PCW_ENET0_GRP_MDIO_ENABLE": "1",
    "PCW_ENET0_GRP_MDIO_IO": "MIO 52 .. 53",
    "PCW_ENET0_RESET_ENABLE": "1",
    "PCW_ENET0_RESET_IO": "MIO 9",
    "PCW_ENET0_PERIPHERAL_FREQMHZ": "1000 Mbps",
    "PCW_USB0_PERIPHERAL_ENABLE": "1",
    "PCW_USB0_USB0_IO": "MIO 28 .. 39",
    "PCW_USB0_RESET_ENABLE": "1",
    "PCW_USB0_RESET_IO": "MIO 46",
    "PCW_SD0_PERIPHERAL_ENABLE": "1",
    "PCW_SD0_SD0_IO": "MIO 40 .. 45",
    "PCW_SD0_GRP_CD_ENABLE": "1",
    "PCW_SD0_GRP_CD_IO": "MIO 47",
    "PCW_SDIO_PERIPHERAL_FREQMHZ": "50",
    "PCW_UART0_PERIPHERAL_ENABLE": "1",
    "PCW_UART0_UART0_IO": "MIO 14 .. 15",
    "PCW_UART0_BAUD_RATE": "115200",
    "PCW_UART_PERIPHERAL_FREQMHZ": "100",
    "PCW_GPIO_MIO_GPIO_ENABLE": "1",
    "PCW_GPIO_MIO_GPIO_IO": "MIO",
}

#: Board name -> processing-system facts. ZC706: 33.333 MHz PS clock, IO PLL 1000 MHz, 1 GB PS
#: DDR3 (UG954); its board files ship with Vivado, so the board preset sets the PS. PYNQ-Z2:
#: 50 MHz PS clock, IO PLL 1000 MHz, 512 MB DDR3; its settings are written out.
PS_BOARDS: dict[str, ZynqPS] = {
    # ZC706: DDR3 x32 at 1066 MT/s; PYNQ-Z2: DDR3 x16 at 1050 MT/s (525 MHz, above).
    "zc706": ZynqPS(crystal_mhz=33.333333, io_pll_mhz=1000.0, ddr_bytes=1 << 30,
                    board_part="xilinx.com:zc706:part0:*", ddr_peak_gbs=4.26),
    "pynq-z2": ZynqPS(crystal_mhz=50.0, io_pll_mhz=1000.0, ddr_bytes=512 << 20, board_part=None,
                      ps7=_PYNQ_Z2_PS7, ddr_peak_gbs=2.1),
}


def board_ps(name: str) -> ZynqPS:
    """The processing-system facts of a board; an unknown name lists the valid ones."""
    board_platform(name)
    return PS_BOARDS[name]
