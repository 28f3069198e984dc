"""pytest entry for the DMA bench: both board presets' bus widths."""

from __future__ import annotations

import pytest

from rtl.config import preset
from rtl.dma import Dma
from rtl.flatten import FlatTop
from sim.runner import run_bench


#: DDR read latency of the bench's RAM (``sim.ddr``) per case: cocotbext-axi's own, and an
#: HP port's.
@pytest.mark.parametrize(("board", "read_latency"), [("pynq-z2", 2), ("zc706", 40)])
def test_dma_bench(board: str, read_latency: int) -> None:
    cfg = preset(board)
    run_bench(FlatTop(Dma(cfg=cfg), {"bus": "m_axi"}), toplevel="dma_top",
              test_module="sim.dma_bench", case=f"dma-{board}",
              params={"data_width": cfg.axi_data_width, "addr_width": cfg.axi_addr_width,
                      "seed": 5, "ram_size": 1 << 16, "window_base": 0x1000,
                      "window_size": 0xC000, "n_transfers": 40,
                      "read_latency": read_latency})
