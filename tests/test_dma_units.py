"""The DMA's burst arithmetic alone in the Amaranth simulator (``rtl.dma``), against the AXI
rule it implements: a burst is at most ``MAX_BURST`` beats, no more than the words left, and
never crosses a 4 KiB boundary."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from rtl.config import preset
from rtl.dma import MAX_BURST, _burst_len

CFG = preset("pynq-z2")
WORD = CFG.axi_data_width // 8
PAGE_WORDS = 4096 // WORD


def test_burst_length_is_the_largest_the_axi_rules_allow() -> None:
    """Every word position in a page (in two pages, one of them the address space's last),
    with every count of words left up to past a burst and some large ones."""
    m = Module()
    addr, remaining = Signal(CFG.axi_addr_width), Signal(CFG.axi_addr_width)
    # The transfer keeps rem_big beside remaining (the DMA benches run that); here it is
    # what it stands for.
    rem_big = Signal()
    m.d.comb += rem_big.eq(remaining >= MAX_BURST)
    beats = _burst_len(m, CFG, addr, remaining, rem_big)
    lefts = [*range(MAX_BURST + 3), 31, 32, 1000, (1 << CFG.axi_addr_width) - 1]
    pages = [0x1234_5000, (1 << CFG.axi_addr_width) - 4096]
    seen = set()

    async def bench(ctx) -> None:
        for page in pages:
            for index in range(PAGE_WORDS):
                for left in lefts:
                    ctx.set(addr, page + index * WORD)
                    ctx.set(remaining, left)
                    await ctx.tick()
                    want = min(MAX_BURST, left, PAGE_WORDS - index)
                    got = ctx.get(beats)
                    assert got == want, f"index {index} left {left}: {got} beats, not {want}"
                    seen.add(got)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == set(range(MAX_BURST + 1))
