"""The boards we build for: every fact about a board, its Zynq-7000 part and its processing
system, written once in :data:`BOARDS`.

Plain Python (no Amaranth): the hardware configuration (``rtl/config.py``: the part's
resources for the fit check), the build (``rtl/build/``: the Vivado block design, the report),
the design-space search and the cycle model's report (the paper's figures) all read this
table. A new board is one :class:`Board` entry here plus its preset in ``rtl/config.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quant.schemes import parse_ratio

__all__ = ["BOARDS", "PARTS", "Board", "PaperResult", "Part", "ZynqPS", "board", "board_names"]


@dataclass(frozen=True)
class Part:
    """A Zynq-7000 part: its resources and its speed grade's data-sheet figures."""

    #: The part as Vivado spells it. Example: ``"xc7z045ffg900-2"``.
    name: str
    #: Programmable-logic resources from the Zynq-7000 product table (DS190): 6-input LUTs,
    #: flip-flops, DSP48E1 slices, 36 Kb block RAMs.
    lut: int
    ff: int
    dsp: int
    bram36: int
    #: Speed grade. Example: ``"-2"``.
    grade: str
    #: DSP48E1 F_MAX in MHz with all pipeline registers used, and the data sheet it comes from
    #: (DS187 for the XC7Z010/020, DS191 for the XC7Z030/045).
    dsp_fmax_mhz: float
    datasheet: str

    @property
    def device(self) -> str:
        """The device without package and grade. Example: ``"xc7z045"``."""
        return self.name[:7]

    def resources(self) -> dict[str, int]:
        """``{"lut", "ff", "dsp", "bram36"}`` of the part."""
        return {"lut": self.lut, "ff": self.ff, "dsp": self.dsp, "bram36": self.bram36}


@dataclass(frozen=True)
class ZynqPS:
    """What the Vivado block design needs to know of a board's Zynq-7000 processing system.

    The fabric clock, the register window and the DDR window of the generated project are
    computed from these facts (``rtl/build/vivado.py``) and recorded in the build package for the
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


@dataclass(frozen=True)
class PaperResult:
    """The ILMPQ paper's Table I result on a part: its method (a named ratio of
    ``quant.schemes.RATIO_PRESETS``), throughput and ResNet-18 latency."""

    method: str
    gops: float
    latency_ms: float

    @property
    def ratio(self) -> tuple[int, int, int]:
        return parse_ratio(self.method)


@dataclass(frozen=True)
class Board:
    """One board: name (as ``build.py --board`` takes it), title, part, processing system and
    the paper's result on its part. Its default PoT-4:Fixed-4:Fixed-8 ratio is the paper's."""

    name: str
    title: str
    part: Part
    ps: ZynqPS
    paper: PaperResult

    @property
    def ratio(self) -> tuple[int, int, int]:
        """The default ratio: the paper's optimum on this part."""
        return self.paper.ratio


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

#: The boards. ZC706 (UG954): XC7Z045-2FFG900, 33.333 MHz PS clock, IO PLL 1000 MHz, 1 GB
#: DDR3 x32 at 1066 MT/s; its board files ship with Vivado, so the board preset sets the PS.
#: PYNQ-Z2 (TUL): XC7Z020-1CLG400, 50 MHz PS clock, IO PLL 1000 MHz, 512 MB DDR3 x16 at
#: 1050 MT/s; its PS settings are written out above. DSP48E1 F_MAX with every pipeline
#: register: DS187 (-1): 464 MHz; DS191 (-2): 650 MHz.
BOARDS: dict[str, Board] = {
    "zc706": Board(
        name="zc706", title="Xilinx ZC706",
        part=Part(name="xc7z045ffg900-2", lut=218_600, ff=437_200, dsp=900, bram36=545,
                  grade="-2", dsp_fmax_mhz=650.0, datasheet="DS191"),
        ps=ZynqPS(crystal_mhz=33.333333, io_pll_mhz=1000.0, ddr_bytes=1 << 30,
                  board_part="xilinx.com:zc706:part0:*", ddr_peak_gbs=4.26),
        paper=PaperResult(method="ilmpq-2", gops=421.1, latency_ms=8.6)),
    "pynq-z2": Board(
        name="pynq-z2", title="TUL PYNQ-Z2",
        part=Part(name="xc7z020clg400-1", lut=53_200, ff=106_400, dsp=220, bram36=140,
                  grade="-1", dsp_fmax_mhz=464.0, datasheet="DS187"),
        ps=ZynqPS(crystal_mhz=50.0, io_pll_mhz=1000.0, ddr_bytes=512 << 20, board_part=None,
                  ps7=_PYNQ_Z2_PS7, ddr_peak_gbs=2.1),
        paper=PaperResult(method="ilmpq-1", gops=89.0, latency_ms=40.7)),
}

#: Part name -> :class:`Part`, of the boards above.
PARTS: dict[str, Part] = {b.part.name: b.part for b in BOARDS.values()}


def board_names() -> list[str]:
    return sorted(BOARDS)


def board(name: str) -> Board:
    """The board called ``name``; an unknown name lists the valid ones."""
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown board {name!r}; valid boards: "
                         f"{', '.join(board_names())}") from None
