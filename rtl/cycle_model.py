"""Cycle model of the engine as built: what ``CYCLES_LO`` will read for a chain of
descriptors, phase by phase (docs/engine.md), so that layers too large to simulate in RTL
(ResNet-18 at 224 x 224) get a latency figure that follows the hardware rather than the
MAC-bound ideal.

Per descriptor: fetch it, load the input band, then for a conv the passes (the loader
streams pass 0 over the weight ports while the band loads, and pass ``p + 1`` into the free
weight bank while the core computes pass ``p``, each port its share, or after it where either
spans both banks (a long pass); a pass issues one
activation vector per cycle, and each output pixel's ``pot_rows + dsp_rows`` results leave
in groups of ``result_lanes``, a group a beat, or one slot a beat for a group whose slots
share an out-buffer lane and for every group of a logits layer (counted from the pass blocks'
slots when the model is given the DDR image), so a pixel costs ``max(steps, beats)``
cycles), for an add the second input (over a weight port, beside the first), for a pool the
scan; then hand the output band to the write-back. A chain overlaps its descriptors as the
engine does: the write-back drains while the next descriptor runs, and while a conv or
max-pool computes, the next row tile's descriptor, band and (same weights) first passes are
loaded. DDR is a port that moves one bus word per cycle after ``read_latency`` /
``write_latency`` cycles, with up to ``rtl.dma.MAX_OUTSTANDING`` bursts in flight.

The model is checked against the cycles the RTL reports for every layer of the
whole-network bench (``sim/test_network.py``); the tolerance there is what it is worth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from quant import contract as C
from quant.resnet_graph import layer_shapes, resnet18_nodes
from quant.schemes import parse_ratio, scheme_counts

from .boards import BOARDS, PARTS
from .config import NIBBLE_BITS, WEIGHT_FORMATS, HwConfig
from .dma import MAX_BURST, MAX_OUTSTANDING
from .dsp_array import dsp_latency
from .engine import AHEAD_CYCLES, CHECK_CYCLES, ELIG_CYCLES
from .interface.ddr import (
    PASS_HEADER_WORDS,
    SLOT_WORDS,
    pass_block_words,
    port_span,
    stored_input_words,
    unpack_slot,
    words_per_vector,
)
from .interface.descriptor import (
    POOL_TOP,
    Op,
    PostMode,
    descriptor_bytes,
    fusable_adds,
    fusable_pools,
    pooled_size,
    run_order,
    unpack_descriptor,
)
from .interface.passes import pass_count
from .interface.stem import fold_plan, split_channels
from .interface.tiling import TilingError, layer_descriptors, pool_fusion_pays
from .postproc import PostProc
from .pot_array import pot_latency
from .vector_units import AddUnit

__all__ = ["PHASES", "DdrTiming", "LayerCycles", "chain_cycles", "chain_phases",
           "descriptor_cycles", "descriptor_phases", "main", "markdown", "phase_markdown",
           "phase_totals", "resnet18_cycles", "result_beats"]


@dataclass(frozen=True)
class DdrTiming:
    """Latency of the DDR port in fabric cycles: from a burst's address to its first data
    beat (reads) or from its last beat to its response (writes)."""

    read_latency: int = 2
    write_latency: int = 2

    @classmethod
    def zynq_hp(cls) -> DdrTiming:
        """An assumed Zynq-7000 HP port to DDR3: about 40 fabric cycles per read burst
        (a figure to replace by a board measurement)."""
        return cls(read_latency=40, write_latency=20)


def _read(words: int, t: DdrTiming) -> int:
    """Cycles of a DMA read of ``words`` words: the command (taken in two cycles), its
    window check (a cycle, from the registers it was taken into), the first latency, one
    word per cycle, the latency that the bursts in flight cannot cover, and the last word's
    way out of the reader's two-entry buffer (two cycles)."""
    bursts = math.ceil(words / MAX_BURST)
    per_burst = max(MAX_BURST, math.ceil((t.read_latency + MAX_BURST) / MAX_OUTSTANDING))
    return 6 + t.read_latency + words + max(0, per_burst - MAX_BURST) * (bursts - 1)


def _bursts(addr: int, words: int) -> int:
    """Bursts the DMA cuts ``words`` words from byte address ``addr`` into: at most
    ``MAX_BURST`` beats, never across a 4 KiB boundary."""
    n = 0
    while words > 0:
        beats = min(words, MAX_BURST, (4096 - addr % 4096) // 8)
        addr, words, n = addr + 8 * beats, words - beats, n + 1
    return n


def _write(addr: int, words: int, t: DdrTiming) -> int:
    """Cycles of a DMA write: the command, each burst's address then its beats (the writer
    spends a cycle choosing the next burst and one on its address), the last response."""
    return 3 + words + 2 * (_bursts(addr, words) - 1) + t.write_latency


def result_beats(cfg: HwConfig, channels: Sequence[int | None], *,
                 logits: bool = False) -> int:
    """Cycles the conv core (``rtl.conv_core``) takes to send one output pixel's results of a
    pass, ``channels`` the original channel of each of its ``slots`` result slots (None: no
    result there). The slots go in groups of ``result_lanes``, one group a beat; a group
    whose valid slots share an out-buffer lane (``channel % vec_len``), and every group of
    a logits layer (``logits``: mode LOGITS), goes one slot a beat, ``result_lanes`` beats,
    its empty slots included. A pass without such a group takes ``result_groups`` beats."""
    lanes, v = cfg.result_lanes, cfg.vec_len
    beats = 0
    for g in range(0, cfg.slots, lanes):
        used = [c % v for c in channels[g:g + lanes] if c is not None]
        beats += lanes if logits or len(set(used)) < len(used) else 1
    return beats


#: Reads ``n`` bytes of DDR from an address (:func:`_memory_reader`).
Reader = Callable[[int, int], bytes]


def _memory_reader(memory: Iterable[tuple[int, Any]]) -> Reader:
    """A reader of the DDR image given as (address, bytes) pieces (``plan.memory`` of
    ``firmware.network``; a bytes-like piece may be a numpy ``uint8`` array)."""
    pieces = [(addr, memoryview(blob).cast("B")) for addr, blob in memory]

    def read(addr: int, n: int) -> bytes:
        for base, view in pieces:
            if base <= addr and addr + n <= base + len(view):
                return bytes(view[addr - base:addr - base + n])
        raise ValueError(f"the memory given to the cycle model does not hold bytes "
                         f"{addr:#x}..{addr + n:#x}")
    return read


def _pass_beats(cfg: HwConfig, d: dict[str, int], read: Reader | None) -> list[int]:
    """Result beats of each pass of a conv descriptor (:func:`result_beats`), from the slots of
    its pass blocks in DDR (``read``); without them, ``result_groups`` each (a logits
    layer's: ``result_lanes`` times as many)."""
    logits = d.get("mode", 0) == PostMode.LOGITS
    if read is None:
        return [cfg.result_groups * (cfg.result_lanes if logits else 1)] * d["passes"]
    block = 8 * pass_block_words(cfg, d["steps"])
    beats = []
    for p in range(d["passes"]):
        at = d["weight_addr"] + p * block + 8 * PASS_HEADER_WORDS
        words = np.frombuffer(read(at, 8 * SLOT_WORDS * cfg.slots), "<u8")
        slots = [unpack_slot(words[SLOT_WORDS * j:SLOT_WORDS * (j + 1)])
                 for j in range(cfg.slots)]
        beats.append(result_beats(cfg, [None if s is None else s["channel"] for s in slots],
                                  logits=logits))
    return beats


def _pass_cycles(cfg: HwConfig, pixels: int, steps: int, beats: int | None = None) -> int:
    """One conv pass from start to done: one vector per cycle unless the result path
    (``beats`` cycles a pixel, :func:`result_beats`; ``result_groups`` unless given) is
    slower; then the array, requantization and completion latency."""
    beats = cfg.result_groups if beats is None else beats
    return pixels * max(steps, beats) + _array_latency(cfg) + PostProc.LATENCY + 4


def _array_latency(cfg: HwConfig) -> int:
    """Cycles from a vector's act-buffer data to its results: the register that the conv
    core puts it in (stage 2), then the slower array."""
    return 1 + max(pot_latency(cfg), dsp_latency(cfg))


#: Where a descriptor's cycles go (:func:`descriptor_phases`).
PHASES = ("descriptor", "maps in", "compute", "weights", "vector units", "write-back")


def _overlap(lo: int, hi: int, lo2: int, hi2: int) -> bool:
    return lo < hi2 and lo2 < hi


#: Cycles from an add's last vector in to its write-back, and from the write-back under way
#: to the add's last vector when that write-back is the slower (an adder that takes a vector
#: in one cycle; :func:`_add_tail` adds the groups of one that takes it in several).
ADD_TAIL, ADD_WAIT = 2, 0


def _add_tail(cfg: HwConfig) -> int:
    """:data:`ADD_TAIL` of ``cfg``'s adder: its last vector, complete, takes the adder a cycle
    per lane group (``AddUnit.groups``) and its pipeline ``AddUnit.latency``. The groups cost
    nothing before: the second input comes no faster than a vector in that many cycles."""
    return ADD_TAIL + AddUnit.groups(cfg) - 1 + AddUnit.latency(cfg) - AddUnit.LATENCY
#: Cycles from a conv-add's last pass start to its second input's read (the add starts while
#: that pass runs, once the write-back before has drained); from the last pass's end to the
#: adder taking the last vector when the pass is the slower (its last pixel marked final, the
#: partner read); from the adder's last sum to its write-back's last vector leaving the
#: writer's buffer (the write-back, a stream job taken as the second input starts, writes the
#: sums as they come).
FUSE_GAP, FUSE_LAST, FUSE_TAIL = 4, 6, 2


def _in_words(cfg: HwConfig, d: dict[str, int]) -> int:
    return stored_input_words(cfg, d)


def _out_words(cfg: HwConfig, d: dict[str, int]) -> int:
    """Bus words the write-back writes: the output band, or its max-pool (``pool``)."""
    h, w = (pooled_size(d["out_h"], d["out_w"], d["pool"]) if d.get("pool")
            else (d["out_h"], d["out_w"]))
    return h * w * cfg.chunks(d["out_c"]) * words_per_vector(cfg, d["out_bits"])


#: Cycles from a pooled write-back's job to its max-pool's first read, and from a pooled
#: vector's last read to its last word leaving; from a pooled row's last read to the rows
#: it frees (the row's end, then the free, registers).
POOL_START, POOL_TAIL, POOL_ROW = 2, 3, 3


def _pool_write(cfg: HwConfig, d: dict[str, int], t: DdrTiming) -> int:
    """Cycles of a pooled write-back (``pool``): the max-pool walks the band in the out
    buffer, 9 reads a pooled vector, and each pooled vector leaves as its words; the DMA
    writes them as they come, unless the words themselves take longer."""
    ph, pw = pooled_size(d["out_h"], d["out_w"], d["pool"])
    vecs = ph * pw * cfg.chunks(d["out_c"])
    wpv = words_per_vector(cfg, d["out_bits"])
    walk = POOL_START + vecs * max(9, wpv) + wpv + POOL_TAIL + t.write_latency
    return max(walk, _write(d.get("out_addr", 0), vecs * wpv, t))


#: Cycles from a conv band's read command to its first pass's earliest start (the engine goes
#: to CONV as the command is taken), and from an input row's last vector to the window
#: generator presenting an output row that reaches it (the row count, then its check).
STREAM_START, ROW_GAP = 1, 0
#: Cycles from a conv's last pass start to its first pixel's results being marked final for
#: its own write-back (beyond the pixel's issue and the arrays' and requantization's latency),
#: and from the last pass's end to the write-back's end beyond its last pixel's words and
#: the write response.
EARLY_WB, EARLY_TAIL = 4, 6


def _pass_load(cfg: HwConfig, steps: int, t: DdrTiming) -> int:
    """Cycles the loader takes for a pass of ``steps`` weight rows: the weight ports read
    their shares at once, and the slowest sets the pace (its done is registered: a cycle)."""
    return 2 + _read(max(port_span(cfg, steps, j)[1] for j in range(cfg.weight_ports)), t)


def _row_waits(cfg: HwConfig, d: dict[str, int], start: int, band: int, t: DdrTiming,
               per_pixel: int) -> int:
    """Cycles a conv's first pass, started at ``start`` while its band streams in (read from
    ``band`` on), waits for input rows: each output row is issued once the rows its windows
    reach (``oy * stride - pad_top + kernel_h``) are in, and the issue stalls meanwhile."""
    row_words = stored_input_words(cfg, {**d, "in_h": 1})
    row_cycles = d["out_w"] * per_pixel
    wait = 0
    for r in range(d["out_h"]):
        need = min(d["in_h"], r * d["stride"] - d.get("pad_top", 0) + d["kernel_h"])
        if need <= 0:
            continue
        avail = band + 1 + _read(need * row_words, t) + ROW_GAP
        wait += max(0, avail - (start + r * row_cycles + wait))
    return wait


def _schedule(cfg: HwConfig, descs: list[dict[str, int]], t: DdrTiming,
              read: Reader | None = None) -> tuple[int, dict[str, int]]:
    """Cycles of a chain and where they go. Each descriptor: fetch and check it, load its
    input band (the loader streams a conv's pass 0 meanwhile), then its compute; then its
    write-back drains while the next descriptor goes on (a band that the write-back still
    writes waits for it; a conv's results wait until it has read their pixel, an add or a
    pool waits until it is done). While a conv computes, the next descriptor is fetched, and
    when it is the next row tile of the same layer and both bands fit the act buffer, its
    band is loaded too (only its rows past this band's where the two share rows); a conv
    whose band is the first rows of this one's reads nothing. The run ends when the last
    write-back is done. Phases: each descriptor's own cycles; "descriptor" and "maps in" what
    the prefetch leaves exposed; "write-back" what the overlap leaves exposed (the last one,
    and the waits for one).
    ``read``: the DDR image, for the conv passes' result slots (:func:`_pass_beats`)."""
    v = cfg.vec_len
    desc_read = _read(descriptor_bytes() * 8 // cfg.axi_data_width, t)
    phases = dict.fromkeys(PHASES, 0)
    now = 0                 # the cycle the descriptor's fetch starts
    free = 0                # the first cycle the last write-back is done
    first_free = 0          # the cycle it frees its first out-buffer vectors (a pooled one
                            # only once its first pooled row is out)
    written = (0, 0)        # the bytes it writes
    prefetched = None       # (the cycle the prefetch is ready, with the band; the cycle it
                            # has looked at the descriptor)
    carried = False         # the loader carried on with this descriptor's passes
    hold = (0, 0)           # cycles in which a conv-add holds the loader off weight port 0
    is_conv = (Op.CONV, Op.CONV_ADD)
    loaded: list[int] = []
    done: list[int] = []
    for i, d in enumerate(descs):
        chunks_in, chunks_out = cfg.chunks(d["in_c"]), cfg.chunks(d["out_c"])
        in_vecs = d["in_h"] * d["in_w"] * chunks_in
        out_pixels = d["out_h"] * d["out_w"]
        out_vecs = out_pixels * chunks_out
        own = dict.fromkeys(PHASES, 0)
        in_words = _in_words(cfg, d)
        in_addr = d.get("in_addr", 0)
        stream = None           # the cycle a conv's band starts loading beside its first pass
        if prefetched is not None and prefetched[1]:
            # Taken, checked, then straight to the passes (the weights start loading).
            act = 1
            end = max(now, prefetched[0]) + 2 + CHECK_CYCLES
            own["descriptor"] = 1 + CHECK_CYCLES
            own["maps in"] = end - now - own["descriptor"]
        else:
            if prefetched is None:
                own["descriptor"] = 1 + desc_read + CHECK_CYCLES
                band = now + own["descriptor"]
            else:                 # fetched, its band not: taken, checked, then loaded
                band = max(now, prefetched[0]) + 1 + CHECK_CYCLES
                own["descriptor"] = band - now
            act = 1 + _read(in_words, t)
            own["maps in"] = act
            if _overlap(in_addr, in_addr + 8 * in_words, *written):
                band = max(band, free)
            band += 1           # the read is asked a state after the waits (ACT_GO)
            own["maps in"] += 1
            end = band + act    # the input band is in
            if d["op"] in is_conv:
                stream = band
        prefetched = None
        if d["op"] in (Op.CONV, Op.CONV_ADD, Op.MAXPOOL) and i + 1 < len(descs):
            n = descs[i + 1]
            ready = end + 1 + 1 + desc_read + ELIG_CYCLES    # fetched and looked at
            out_addr = d.get("out_addr", 0)
            n_words, n_addr = _in_words(cfg, n), n.get("in_addr", 0)
            n_end = n_addr + 8 * n_words
            rows = (n["in_w"] == d["in_w"] and n["in_c"] == d["in_c"] and n["in_h"] > 0
                    and n["in_bits"] == d["in_bits"]
                    and not _overlap(n_addr, n_end, out_addr, out_addr + 8 * _out_words(cfg, d))
                    and not (free > ready and _overlap(n_addr, n_end, *written)))
            n_vecs = n["in_h"] * n["in_w"] * chunks_in
            d_end = in_addr + 8 * in_words
            if rows and d["op"] in is_conv and n["op"] in is_conv and n_addr == in_addr \
                    and n.get("split", 0) == d.get("split", 0) and n["in_h"] <= d["in_h"]:
                # The band in the act buffer is the next's (its first rows: a 1 x 1 stride-2
                # conv leaves the last row of its block's map unread): nothing is read.
                prefetched = (ready, True, ready)
            elif rows and n["op"] == d["op"] and in_vecs + n_vecs <= cfg.act_buf_depth \
                    and in_addr <= n_addr <= d_end <= n_end:
                # The shared rows stay; the rest is read from where this band ends (nothing
                # where the next band ends where this one does), then placed (a cycle), and
                # used if it is whole vectors.
                fresh = (n_end - d_end) // 8
                whole = fresh % (in_words // in_vecs) == 0
                prefetched = (ready + (2 + _read(fresh, t) if fresh else 0), whole, ready)
            elif rows and n["op"] == d["op"] and in_vecs + n_vecs <= cfg.act_buf_depth:
                prefetched = (ready + 1 + _read(n_words, t), True, ready)
            else:
                prefetched = (ready, False, ready)
        gate = free - end       # the out buffer is free from then on (relative to ``end``)
        op = d["op"]
        if op in is_conv:
            load = _pass_load(cfg, d["steps"], t)
            pass_beats = _pass_beats(cfg, d, read)
            computes = [1 + _pass_cycles(cfg, out_pixels, d["steps"], beats)
                        for beats in pass_beats]
            # Absolute times at which each pass is in its bank and done, numbered on while the
            # loader carries on from one row tile to the next. Two banks: pass g loads once
            # pass g - 2 is done, and once pass g - 1 is where either spans both banks (a long
            # pass). A fresh loader starts a cycle after the input band's read command (its
            # start is a register).
            long = cfg.long_pass(d["steps"])
            if not carried:
                loaded, done = [end + 2 - act + load], []
            first = len(done)
            # The passes start as the band's read does (it streams in beside the first), or
            # once a prefetched band is taken.
            begin = end if stream is None else stream + STREAM_START
            ungated = begin
            waits = 0
            for p in range(d["passes"]):
                g = first + p
                if g == len(loaded):
                    issue = max(loaded[g - 1], done[g - 2] if g >= 2 else 0,
                                done[g - 1] if long else 0)
                    if hold[0] <= issue < hold[1]:      # weight port 0 carried a second input
                        issue = hold[1]
                    loaded.append(issue + load)
                start = max(loaded[g], done[g - 1] if p else begin)
                last_start = start
                finish = start + computes[p]
                if p == 0 and stream is not None:
                    waits = _row_waits(cfg, d, start, stream, t, max(d["steps"], pass_beats[0]))
                    finish += waits
                if p == 0:
                    # Results wait for the previous write-back to have read their vectors:
                    # the first stalls the pass until the first are free (a pooled
                    # write-back frees none before its first pooled row is out), and a pass
                    # that outruns it ends as it ends.
                    lead = (max(d["steps"], pass_beats[0])
                            + _array_latency(cfg) + PostProc.LATENCY)
                    finish += max(0, first_free - (start + lead))
                    finish = max(finish, free - t.write_latency)
                done.append(finish)
                ungated = max(loaded[g], ungated) + computes[p] + (waits if p == 0 else 0)
            own["compute"] = sum(computes)
            own["weights"] = ungated - begin - own["compute"] - waits
            if stream is not None:       # only what the first pass waited for rows is exposed
                own["maps in"] = begin - stream + waits
            # The conv ends once its last pass has and its band is in (a stride may leave the
            # last rows unread).
            body = max(done[-1], end) + 1 - end
            carried = False
            fuse = None
            if op == Op.CONV_ADD:
                # Once its last pass runs and the write-back before has drained, the second
                # input streams in over weight port 0 (the loader held off meanwhile), each
                # vector is added to the result once the pass has marked it final, and the sums
                # go to the write-back as they come.
                second = 1 + _read(out_vecs * words_per_vector(cfg, d["in2_bits"]), t)
                start = max(last_start + FUSE_GAP, free)
                fuse = (start, max(start + second, done[-1] + FUSE_LAST))
            n = descs[i + 1] if prefetched is not None else None
            if n is not None and n["op"] in is_conv and \
                    0 < n["steps"] <= cfg.max_pass_rows and n["passes"] > 0:
                # The loader carries on with the next conv's passes once this one's are
                # loaded and that one is fetched: at once when they are the same weights (the
                # next row tile), else once it has taken the next one's fields; while this
                # conv runs, and not while its second input holds weight port 0.
                resume = max(loaded[-1], prefetched[2])
                if (n["weight_addr"], n["passes"], n["steps"]) != \
                        (d["weight_addr"], d["passes"], d["steps"]):
                    resume += 1 + AHEAD_CYCLES
                if fuse is not None and resume + 1 >= fuse[0]:
                    resume = max(resume, fuse[1] + 1)
                if resume < done[-1]:
                    g = len(loaded)
                    after = done[g - 1] if long or cfg.long_pass(n["steps"]) else 0
                    loaded.append(max(resume + 1, done[g - 2] if g >= 2 else 0, after)
                                  + _pass_load(cfg, n["steps"], t))
                    carried = True
                    if fuse is not None and fuse[0] > resume:   # the carried load goes first
                        start = max(fuse[0], loaded[-1])
                        fuse = (start, max(start + second, done[-1] + FUSE_LAST))
            if fuse is not None:        # only what the adds outlast the conv is exposed
                own["maps in"] += max(0, fuse[1] - max(done[-1] + 1, end))
                own["vector units"] = _add_tail(cfg)
                body = max(fuse[1], done[-1] + 1, end) - end + _add_tail(cfg)
                hold = fuse
                streamed = fuse[0]
        elif op == Op.ADD:
            # The second input comes over a weight port while the first loads; the adder
            # takes a vector a cycle as both come (and as the write-back under way frees the
            # out buffer), then drains.
            second = 1 + _read(in_vecs * words_per_vector(cfg, d["in2_bits"]), t)
            own["maps in"] += max(0, second - act)
            own["vector units"] = _add_tail(cfg)
            body = max(second - act, 0, gate - t.write_latency + ADD_WAIT) + _add_tail(cfg)
        elif op == Op.MAXPOOL:
            # Its results wait until the write-back under way has read their vectors.
            own["vector units"] = 2 + out_vecs * d["kernel_h"] * d["kernel_w"] + 3
            body = max(own["vector units"], gate - t.write_latency)
        else:
            # The average pool reads a chunk's pixels a cycle each; a chunk's sums go
            # through its one requantizer a lane a cycle, and its collector takes a cycle to
            # hand on each vector: after the first chunk, each takes the longer of the two;
            # the last chunk's lanes, then the requantizer's pipeline.
            pixels = d["in_h"] * d["in_w"]
            own["vector units"] = (2 + pixels + (chunks_in - 1) * max(pixels, v + 1) + v
                                   + PostProc.LATENCY - 1)
            body = max(gate, 0) + own["vector units"]
        handoff = end + body
        # One output word a cycle: the out buffer reads the next vector as the last word of
        # a vector leaves.
        out_words = _out_words(cfg, d)
        out_addr = d.get("out_addr", 0)
        wb = _pool_write(cfg, d, t) if d.get("pool") else _write(out_addr, out_words, t)
        wpv_out = words_per_vector(cfg, d["out_bits"])
        early = None
        if op == Op.CONV and not d.get("pool") and out_pixels > 1:
            # A plain conv's write-back starts while its last pass runs, once the write-back
            # before has drained, the band is in and the first pixel's results are final,
            # and follows the pass pixel by pixel.
            first = (max(d["steps"], pass_beats[-1]) + _array_latency(cfg)
                     + PostProc.LATENCY + EARLY_WB)
            early = max(last_start + first, free, end)
            if early >= handoff:
                early = None
        first_free = 0
        if op == Op.CONV_ADD:
            free = max(streamed + 1 + wb + 1, handoff + FUSE_TAIL + wpv_out + t.write_latency)
        elif early is None:
            free = handoff + 1 + 1 + wb + 1
            if d.get("pool"):
                _, pw = pooled_size(d["out_h"], d["out_w"], d["pool"])
                first_free = (handoff + 2 + POOL_START + pw * cfg.chunks(d["out_c"])
                              * max(9, wpv_out) + POOL_ROW)
        else:
            free = max(early + 1 + wb + 1,
                       handoff + EARLY_TAIL + t.write_latency + chunks_out * wpv_out)
        now = handoff + 1
        written = (out_addr, out_addr + 8 * out_words)
        for name in PHASES:
            phases[name] += own[name]
    phases["write-back"] = free - sum(phases.values())
    return free, phases


def descriptor_phases(cfg: HwConfig, d: dict[str, int], timing: DdrTiming | None = None
                      ) -> dict[str, int]:
    """Modelled cycles of one descriptor run alone (fields as
    ``rtl.interface.descriptor.unpack_descriptor``), by phase: fetching and checking it,
    loading its input band (and an add's second input), the conv passes' compute, waiting
    for weights beyond that, the pools' and the adder's scans, and the write-back."""
    return _schedule(cfg, [d], timing or DdrTiming())[1]


def descriptor_cycles(cfg: HwConfig, d: dict[str, int], timing: DdrTiming | None = None
                      ) -> int:
    """Modelled cycles of one descriptor run alone (fields as
    ``rtl.interface.descriptor.unpack_descriptor``)."""
    return _schedule(cfg, [d], timing or DdrTiming())[0]


#: The DDR image a chain runs on, as (address, bytes) pieces (``plan.memory`` of
#: ``firmware.network``; a piece may be a numpy ``uint8`` array): with it the model reads
#: each conv pass's result slots and counts the beats of groups whose slots share an
#: out-buffer lane (:func:`result_beats`); without it it counts none.
Memory = Iterable[tuple[int, Any]]


def chain_cycles(cfg: HwConfig, descriptors: Iterable[bytes],
                 timing: DdrTiming | None = None, *, memory: Memory | None = None) -> int:
    """Modelled cycles of a chain (what ``CYCLES_LO`` reads after its run); ``memory``: the
    DDR image it runs on (:data:`Memory`)."""
    return _schedule(cfg, [unpack_descriptor(raw) for raw in descriptors],
                     timing or DdrTiming(),
                     None if memory is None else _memory_reader(memory))[0]


def chain_phases(cfg: HwConfig, descriptors: Iterable[bytes],
                 timing: DdrTiming | None = None, *, memory: Memory | None = None
                 ) -> dict[str, int]:
    """Where a chain's cycles go (:data:`PHASES`); they add up to :func:`chain_cycles`."""
    return _schedule(cfg, [unpack_descriptor(raw) for raw in descriptors],
                     timing or DdrTiming(),
                     None if memory is None else _memory_reader(memory))[1]


@dataclass(frozen=True)
class LayerCycles:
    name: str
    op: str
    tiles: int
    cycles: int
    #: MACs over the MACs both arrays do per cycle (conv, fc); 0 for the vector layers.
    mac_cycles: int
    #: ``cycles`` by phase (:data:`PHASES`), as (phase, cycles) pairs.
    phases: tuple[tuple[str, int], ...] = ()
    #: Multiply-accumulates of the layer (conv, fc), and bytes of its packed weights.
    macs: int = 0
    weight_bytes: int = 0


def _passes(cfg: HwConfig, filters: int, ratio: tuple[int, int, int]) -> int:
    counts = scheme_counts(filters, ratio)
    return pass_count(*(counts[C.SCHEME_CODE[s]] for s in C.SCHEMES), cfg.pot_rows,
                      cfg.dsp_rows)


def resnet18_cycles(cfg: HwConfig, ratio: str | tuple[int, int, int], *, image: int = 224,
                    timing: DdrTiming | None = None,
                    descriptors: list[bytes] | None = None) -> list[LayerCycles]:
    """Every layer of ResNet-18 (standard stem, 1000 classes) at ``image`` x ``image`` as the
    firmware would run it on ``cfg`` layer by layer (``--per-layer``: each layer its own
    chain): row tiles, passes, DDR traffic. Every layer's descriptors are appended to
    ``descriptors`` when given. Raises ``rtl.interface.tiling.TilingError`` if a layer cannot
    be tiled into the buffers."""
    ratio = parse_ratio(ratio)
    check_formats(cfg, ratio)
    nodes = run_order(resnet18_nodes(width=1.0, num_classes=1000, in_channels=3))
    shapes = layer_shapes(nodes, image, 3)
    v, act, sgn = cfg.vec_len, cfg.act_bits, cfg.act_bits + 1
    out: list[LayerCycles] = []
    # Storage bits of every tensor: the pixels, or on a split_input build their nibbles.
    bits = {"input": NIBBLE_BITS if cfg.split_input else cfg.input_bits}
    addr = {"input": 0}                     # a DDR region of its own for every tensor

    fused = fusable_adds(nodes)
    pools = fusable_pools(nodes)            # where it pays (pool_fusion_pays), as the firmware
    held: dict[str, tuple] = {}             # a fused conv, until its add or max-pool
    for node in nodes:
        name, op = node["name"], node["op"]
        if op in ("add", "maxpool") and any(i in held for i in node["inputs"]):
            conv = next(i for i in node["inputs"] if i in held)
            bits[name] = act if op == "maxpool" or node["relu"] else sgn
            addr[name] = len(addr) << 24
            fields, pad, mac_cycles, macs, weight_bytes = held.pop(conv)
            fields.update(out_addr=addr[name], out_bits=bits[name])
            if op == "add":
                other = next(i for i in node["inputs"] if i != conv)
                fields.update(op=Op.CONV_ADD, in2_addr=addr[other], in2_bits=bits[other])
            else:
                fields.update(pool=POOL_TOP)      # the max-pool in the conv's write-back
            descs = layer_descriptors(cfg, pad=pad, name=conv, **fields)
            if descriptors is not None:
                descriptors.extend(descs)
            out.append(LayerCycles(conv, "conv", len(descs), chain_cycles(cfg, descs, timing),
                                   mac_cycles, tuple(chain_phases(cfg, descs, timing).items()),
                                   macs, weight_bytes))
            # The add or pool runs inside the conv: no tile of its own.
            out.append(LayerCycles(name, op, 0, 0, 0, tuple(dict.fromkeys(PHASES, 0).items())))
            continue
        src = node["inputs"][0]
        (ci, hi, wi), (co, ho, wo) = shapes[src], shapes[name]
        bits[name] = (32 if op == "fc" else
                      sgn if op in ("conv", "add") and not node["relu"] else act)
        addr[name] = len(addr) << 24
        fields: dict[str, Any] = dict(in_addr=addr[src], out_addr=addr[name], in_c=ci,
                                      in_h=hi, in_w=wi,
                                      out_c=co, out_h=ho, out_w=wo, in_bits=bits[src],
                                      out_bits=bits[name])
        pad, mac_cycles, macs, weight_bytes = 0, 0, 0, 0
        if op in ("conv", "fc"):
            k = node["kernel"] if op == "conv" else 1
            macs = co * ci * k * k * ho * wo
            mac_cycles = math.ceil(macs / (v * cfg.slots))
            counts = scheme_counts(co, ratio)
            weight_bytes = math.ceil(ci * k * k * sum(
                counts[C.SCHEME_CODE[s]] * WEIGHT_FORMATS[s] for s in C.SCHEMES) / 8)
            stride, pad = node.get("stride", 1), node.get("padding", 0)
            fold = fold_plan(node, (ci, hi, wi), cfg) if src == "input" else None
            kernel = (k, k)
            if fold:                     # as firmware.network runs it: space-to-depth
                (ci, hi, wi), kernel, stride, pad = (fold.folded_shape, fold.folded_kernel,
                                                     1, 0)
                fields.update(fold.input_fields)
            if src == "input" and cfg.split_input:      # low and high nibbles in turn
                ci = split_channels(ci, cfg)
                fields.update(in_c=ci, split=1)
            steps = cfg.steps(kernel, ci)
            problem = cfg.pass_rows_problem(steps)
            if problem:
                raise TilingError(f"{name}: {problem}")
            fields.update(op=Op.CONV, kernel_h=kernel[0], kernel_w=kernel[1], stride=stride,
                          passes=_passes(cfg, co, ratio), steps=steps)
        elif op == "add":
            fields.update(op=Op.ADD, in2_addr=addr[node["inputs"][1]],
                          in2_bits=bits[node["inputs"][1]])
        elif op == "maxpool":
            fields.update(op=Op.MAXPOOL, kernel_h=node["kernel"], kernel_w=node["kernel"],
                          stride=node["stride"])
            pad = node["padding"]
        else:
            fields.update(op=Op.AVGPOOL)
        if name in fused or (name in pools and pool_fusion_pays(cfg, name=name, pad=pad,
                                                                **fields)):
            held[name] = (fields, pad, mac_cycles, macs, weight_bytes)
            continue
        descs = layer_descriptors(cfg, pad=pad, name=name, **fields)
        if descriptors is not None:
            descriptors.extend(descs)
        out.append(LayerCycles(name, op, len(descs), chain_cycles(cfg, descs, timing),
                               mac_cycles, tuple(chain_phases(cfg, descs, timing).items()),
                               macs, weight_bytes))
    return out


def resnet18_latency(cfg: HwConfig, ratio: str | tuple[int, int, int], *, image: int = 224,
                     timing: DdrTiming | None = None) -> tuple[list[LayerCycles], int]:
    """The layers of :func:`resnet18_cycles` and the cycles of the whole network as one chain
    of descriptors, as the firmware runs an image (``firmware.driver``): there a layer's
    last tile overlaps the next layer's descriptor, its band where the maps allow it (the
    prefetch, docs/engine.md) and its first weights, so the chain takes fewer cycles than
    the layers one by one. This is the modelled latency of an image."""
    descs: list[bytes] = []
    layers = resnet18_cycles(cfg, ratio, image=image, timing=timing, descriptors=descs)
    return layers, chain_cycles(cfg, descs, timing)


def phase_totals(layers: list[LayerCycles]) -> dict[str, int]:
    """Cycles of every phase (:data:`PHASES`) over ``layers``."""
    total = dict.fromkeys(PHASES, 0)
    for layer in layers:
        for name, n in layer.phases:
            total[name] += n
    return total


def phase_markdown(layers: list[LayerCycles], mhz: float) -> str:
    """Where the time goes: each phase's cycles, milliseconds and share, with a bar."""
    totals = phase_totals(layers)
    whole = sum(totals.values())
    out = ["| phase | cycles | ms | share | |", "|---|---:|---:|---:|---|"]
    for name, n in totals.items():
        out.append(f"| {name} | {n:,} | {n / (mhz * 1e3):.2f} | {100 * n / whole:.1f} % | "
                   f"`{'#' * round(40 * n / whole)}` |")
    return "\n".join(out) + "\n"


def paper_lines(cfg: HwConfig, ratio: str | tuple[int, int, int], ms: float) -> list[str]:
    """The ILMPQ paper's Table I result on ``cfg``'s part beside the modelled ``ms``."""
    part = PARTS[cfg.part]
    paper = next((b.paper for b in BOARDS.values() if b.part is part), None)
    if paper is None:
        return []
    ratio = parse_ratio(ratio)
    same = ("the same ratio" if paper.ratio == ratio else
            f"ratio {':'.join(map(str, paper.ratio))}, not {':'.join(map(str, ratio))}")
    return ["", f"The paper (ILMPQ, Table I, {paper.method.upper()} on "
                f"{part.device.upper()}, {same}): {paper.gops} GOP/s, {paper.latency_ms} ms "
                f"measured on its design; modelled here: {paper.latency_ms / ms:.2f}x its "
                f"speed."]


def check_formats(cfg: HwConfig, ratio: tuple[int, int, int]) -> None:
    """Refuse a ratio that gives filters to a weight format ``cfg`` does not build."""
    for scheme, share in zip(C.SCHEMES, ratio, strict=True):
        if share and scheme not in cfg.weight_formats:
            raise ValueError(
                f"ratio {':'.join(map(str, ratio))} assigns {scheme} filters but config "
                f"{cfg.name!r} implements only {', '.join(cfg.weight_formats)}; change the "
                f"ratio (--ratio) or the config's weight_formats")


def markdown(cfg: HwConfig, ratio: str | tuple[int, int, int], layers: list[LayerCycles],
             timing: DdrTiming, chain: int, *, image: int = 224) -> str:
    """The build report's section: latency of ResNet-18 on the engine as built, the layers
    one by one (the table) and the image as one chain (``chain`` cycles, the latency)."""
    mhz = cfg.clock_mhz
    total = sum(layer.cycles for layer in layers)
    ideal = sum(layer.mac_cycles for layer in layers)
    gops = 2 * sum(layer.macs for layer in layers) / (chain / (mhz * 1e6)) / 1e9
    r = ":".join(map(str, parse_ratio(ratio)))
    out = [
        f"Cycle model of the engine as built (`rtl/cycle_model.py`): ResNet-18, {image}x{image}, "
        f"ratio {r}, run as the firmware runs it (row tiles, passes, the stem folded by "
        f"space-to-depth), {mhz:g} MHz, DDR read latency {timing.read_latency} and write "
        f"latency {timing.write_latency} cycles (assumed for a Zynq HP port), one 64-bit word "
        f"per cycle. The model is checked against the cycles the RTL counts for every layer "
        f"and for the whole network as one chain in the whole-network bench "
        f"(`sim/test_network.py`). The table runs each layer as its own chain (the "
        f"firmware's `--per-layer`); an image runs as one chain, where a layer's last tile "
        f"overlaps the next layer's start.",
        "",
        "| layer | op | tiles | cycles | MAC-bound cycles | cycles / MAC-bound | ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for layer in layers:
        ratio_text = f"{layer.cycles / layer.mac_cycles:.1f}" if layer.mac_cycles else "-"
        out.append(f"| {layer.name} | {layer.op} | {layer.tiles} | {layer.cycles:,} | "
                   f"{layer.mac_cycles or '-'} | {ratio_text} | "
                   f"{layer.cycles / (mhz * 1e3):.3f} |")
    out += [f"| **layer by layer** | | | **{total:,}** | **{ideal:,}** | "
            f"**{total / ideal:.1f}** | **{total / (mhz * 1e3):.2f}** |",
            f"| **as one chain** | | | **{chain:,}** | | **{chain / ideal:.1f}** | "
            f"**{chain / (mhz * 1e3):.2f}** |", "",
            f"Modelled latency: **{chain / (mhz * 1e3):.2f} ms** per image at {mhz:g} MHz "
            f"(the network as one chain; {total / (mhz * 1e3):.2f} ms layer by layer), "
            f"{gops:.1f} GOP/s (MAC-bound, every multiplier busy every cycle: "
            f"{ideal / (mhz * 1e3):.2f} ms).", *paper_lines(cfg, ratio, chain / (mhz * 1e3)),
            "",
            "Where the time goes (compute: the conv passes as the core runs them, idle rows "
            "of a layer's last pass included; weights: waiting for a pass's weights beyond "
            "that; maps in: descriptors aside, input bands and an add's second input; layer by "
            "layer):", "",
            phase_markdown(layers, mhz)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """``python -m rtl.cycle_model --board NAME [--ratio R] [--json]``: the modelled ResNet-18
    latency per layer and in total on a board preset."""
    import argparse
    import json
    import sys

    from .config import preset, preset_names

    parser = argparse.ArgumentParser(
        prog="python -m rtl.cycle_model",
        description="Modelled latency of ResNet-18 (224 x 224, standard stem, 1000 classes) "
                    "on the engine as a board preset builds it, layer by layer.")
    parser.add_argument("--board", required=True, choices=preset_names(),
                        help="board preset (rtl/config.py)")
    parser.add_argument("--ratio", help="PoT-4:Fixed-4:Fixed-8 filter ratio, e.g. 60:35:5 "
                                        "(default: the board's)")
    parser.add_argument("--image", type=int, default=224, help="input size (default 224)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    cfg = preset(args.board)
    try:
        ratio = parse_ratio(args.ratio) if args.ratio else BOARDS[args.board].ratio
    except ValueError as exc:
        parser.error(str(exc))
    timing = DdrTiming.zynq_hp()
    try:
        layers, chain = resnet18_latency(cfg, ratio, image=args.image, timing=timing)
    except TilingError as exc:
        print(f"error: ResNet-18 at {args.image}x{args.image} cannot run on {cfg.name}: {exc}",
              file=sys.stderr)
        return 1
    mhz = cfg.clock_mhz
    total = sum(layer.cycles for layer in layers)
    if args.json:
        json.dump({"board": args.board, "config": cfg.name, "clock_mhz": mhz,
                   "ratio": list(ratio), "image": args.image,
                   "read_latency": timing.read_latency, "write_latency": timing.write_latency,
                   "layers": [{"name": layer.name, "op": layer.op, "tiles": layer.tiles,
                               "cycles": layer.cycles, "mac_cycles": layer.mac_cycles,
                               "macs": layer.macs, "weight_bytes": layer.weight_bytes,
                               "ms": layer.cycles / (mhz * 1e3),
                               "phases": dict(layer.phases)} for layer in layers],
                   "total_cycles": total, "total_ms": total / (mhz * 1e3),
                   "chain_cycles": chain, "chain_ms": chain / (mhz * 1e3),
                   "phases": phase_totals(layers)},
                  sys.stdout, indent=1)
        print()
    else:
        print(markdown(cfg, ratio, layers, timing, chain, image=args.image), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
