"""Amaranth platforms of the supported Zynq-7000 boards (the fabric pins the design uses)."""

from __future__ import annotations

from amaranth.build import Attrs, Clock, DiffPairs, Pins, Resource
from amaranth.vendor import XilinxPlatform
from amaranth_boards.resources import ButtonResources, LEDResources, SwitchResources

__all__ = ["BOARDS", "PynqZ2Platform", "ZC706Platform", "board_platform", "part_of"]


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
