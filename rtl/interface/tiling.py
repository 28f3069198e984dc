"""Row tiling: a layer whose maps do not fit the engine's on-chip buffers runs as several
descriptors, each computing a band of output rows from the input rows it needs.

Feature maps are stored ``[h][w][chunk]`` in DDR (:mod:`.ddr`), so a band of rows is
one contiguous run of words: a tile's descriptor is the layer's with the input and output
addresses moved to the band, the heights cut to it, and zero padding only at the sides where
the whole map really ends (``pad_top``/``pad_bottom``). Only numpy-free integer arithmetic
and the hardware config are needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..config import HwConfig
from .ddr import stored_input_words, vector_words
from .descriptor import POOL_LEAD, POOL_TOP, Op, pack_descriptor

__all__ = ["RowTile", "TilingError", "layer_descriptors", "plan_pooled_tiles",
           "plan_row_tiles", "pool_fusion_pays", "pooled_span", "row_tile"]


class TilingError(ValueError):
    """A layer cannot be cut into tiles that fit the build's buffers."""


@dataclass(frozen=True)
class RowTile:
    """Output rows ``[out_row0, out_row0 + out_rows)`` computed from input rows
    ``[in_row0, in_row0 + in_rows)`` with ``pad_top`` / ``pad_bottom`` zero rows around."""

    out_row0: int
    out_rows: int
    in_row0: int
    in_rows: int
    pad_top: int
    pad_bottom: int


def row_tile(out_row0: int, out_rows: int, *, in_h: int, kernel: int, stride: int,
             pad: int) -> RowTile:
    """The input band and the padding of output rows ``[out_row0, out_row0 + out_rows)`` of a
    window layer (conv or max-pool) with ``pad`` zero rows around an ``in_h``-row map;
    ``kernel``: the window's height."""
    first = out_row0 * stride - pad                      # first input row, may be < 0
    end = (out_row0 + out_rows - 1) * stride - pad + kernel
    lo, hi = max(first, 0), min(end, in_h)
    return RowTile(out_row0, out_rows, lo, hi - lo, lo - first, end - hi)


def _too_large(name: str, what: str, need_in: int, need_out: int, cfg: HwConfig
               ) -> TilingError:
    return TilingError(
        f"{name}: {what} needs {need_in} act-buffer and {need_out} out-buffer "
        f"words, the build has {cfg.act_buf_depth} and {cfg.out_buf_depth}; use a "
        f"hardware config with deeper buffers (HwConfig.act_buf_depth, out_buf_depth)")


def _cut_bands(*, units: int, cap: int, span: Callable[[int, int], tuple[int, int]],
               in_h: int, in_row_vectors: int, out_row_vectors: int, kernel: int,
               stride: int, pad: int, cfg: HwConfig, need_in: int, ping_pong: bool
               ) -> list[tuple[int, int, RowTile]]:
    """Bands ``(unit0, units, tile)`` of ``units`` output units (rows, or pooled rows), top to
    bottom, as many units each (at most ``cap``) as the buffers hold: ``span(unit0, n)`` is
    the ``(row0, rows)`` of output rows that ``n`` units from ``unit0`` compute, ``tile``
    their input band. The caller has checked that one unit fits (``need_in``: the most
    act-buffer words one unit reads); the ping-pong rule is :func:`plan_row_tiles`'s."""
    def tile(unit0: int, n: int) -> RowTile:
        row0, rows = span(unit0, n)
        return row_tile(row0, rows, in_h=in_h, kernel=kernel, stride=stride, pad=pad)

    def cut(act_words: int) -> list[tuple[int, int, RowTile]]:
        bands: list[tuple[int, int, RowTile]] = []
        unit = 0
        while unit < units:
            n = min(cap, units - unit)
            while True:
                t = tile(unit, n)
                if n == 1 or (t.in_rows * in_row_vectors <= act_words
                              and t.out_rows * out_row_vectors <= cfg.out_buf_depth):
                    break
                n -= 1
            bands.append((unit, n, t))
            unit += n
        return bands

    bands = cut(cfg.act_buf_depth)
    half = cfg.act_buf_depth // 2
    if ping_pong and len(bands) > 1 and need_in <= half:
        bands = cut(half)
    return bands


def plan_row_tiles(*, in_h: int, in_row_vectors: int, out_h: int, out_row_vectors: int,
                   kernel: int, stride: int, pad: int, cfg: HwConfig,
                   name: str = "layer", ping_pong: bool = False) -> list[RowTile]:
    """Bands of output rows, as many rows each as the buffers hold, top to bottom.

    ``in_row_vectors`` / ``out_row_vectors``: act-buffer / out-buffer words of one input /
    output row (``width * ceil(C / V)``). With ``ping_pong``, a layer that runs as several
    tiles gets bands of at most half the act buffer where one output row allows it, so that
    the engine loads each band while the tile before computes (docs/engine.md). Raises
    :class:`TilingError` if even one output row does not fit, naming the layer, what it
    needs and what the build has.
    """
    need_out = out_row_vectors
    need_in = min(kernel, in_h) * in_row_vectors
    if need_out > cfg.out_buf_depth or need_in > cfg.act_buf_depth:
        raise _too_large(name, "one output row", need_in, need_out, cfg)
    bands = _cut_bands(units=out_h, cap=cfg.out_buf_depth // out_row_vectors,
                       span=lambda row0, rows: (row0, rows), in_h=in_h,
                       in_row_vectors=in_row_vectors, out_row_vectors=out_row_vectors,
                       kernel=kernel, stride=stride, pad=pad, cfg=cfg, need_in=need_in,
                       ping_pong=ping_pong)
    return [t for _, _, t in bands]


def pooled_span(row0: int, rows: int, out_h: int) -> tuple[int, int]:
    """``(first, count)`` of the conv rows (of ``out_h``) whose max-pool (3 x 3, stride 2,
    padding 1) gives pooled rows ``[row0, row0 + rows)``: from the last conv row of the band
    above (a lead row, recomputed) unless ``row0`` is 0, to the last row the band's windows
    read. Its ``pool`` field is POOL_TOP where ``row0`` is 0, else POOL_LEAD."""
    first = 0 if row0 == 0 else 2 * row0 - 1
    return first, min(out_h, 2 * (row0 + rows)) - first


def plan_pooled_tiles(*, in_h: int, in_row_vectors: int, out_h: int, out_row_vectors: int,
                      kernel: int, stride: int, pad: int, cfg: HwConfig,
                      name: str = "layer", ping_pong: bool = False
                      ) -> list[tuple[int, int, RowTile]]:
    """Bands ``(pooled_row0, pooled_rows, tile)`` of a conv whose ``out_h`` output rows are
    max-pooled (3 x 3, stride 2, padding 1) in its write-back (``pool``), top to bottom:
    ``tile`` is the band's conv rows (:func:`pooled_span`) and their input band. As
    :func:`plan_row_tiles`, in pooled rows: as many each as the out buffer holds their conv
    rows and the act buffer their input band; :class:`TilingError` if one pooled row does
    not fit."""
    units = (out_h + 1) // 2

    def span(row0: int, rows: int) -> tuple[int, int]:
        return pooled_span(row0, rows, out_h)

    singles = [row_tile(*span(r, 1), in_h=in_h, kernel=kernel, stride=stride, pad=pad)
               for r in range(units)]
    need_in = max(t.in_rows for t in singles) * in_row_vectors
    need_out = max(t.out_rows for t in singles) * out_row_vectors
    if need_out > cfg.out_buf_depth or need_in > cfg.act_buf_depth:
        raise _too_large(name, "one pooled output row", need_in, need_out, cfg)
    return _cut_bands(units=units, cap=max(1, (cfg.out_buf_depth // out_row_vectors + 1) // 2),
                      span=span, in_h=in_h, in_row_vectors=in_row_vectors,
                      out_row_vectors=out_row_vectors, kernel=kernel, stride=stride, pad=pad,
                      cfg=cfg, need_in=need_in, ping_pong=ping_pong)


def layer_descriptors(cfg: HwConfig, *, pad: int = 0, name: str = "layer",
                      **fields: int) -> list[bytes]:
    """The descriptors of one layer: one per row tile, to run as one chain.

    ``fields`` are the whole layer's descriptor fields (:data:`.descriptor.FIELDS`) except
    the per-side padding, which comes from the layer's symmetric ``pad``. A layer that fits
    the buffers gives one descriptor. A global average pool is never tiled; one that does not
    fit raises :class:`TilingError`, as does a layer whose single output row does not fit.

    A conv with ``pool=POOL_TOP`` among the fields (``out_h``/``out_w``: the conv's whole
    output, ``out_addr``: its max-pool's map) is tiled in pooled rows
    (:func:`plan_pooled_tiles`): each tile's ``pool`` is POOL_TOP at the map's top, else
    POOL_LEAD, its ``out_h`` its conv rows, its ``out_addr`` its first pooled row's.
    """
    op = fields["op"]
    in_h, in_w, out_h, out_w = fields["in_h"], fields["in_w"], fields["out_h"], fields["out_w"]
    in_c, out_c = fields["in_c"], fields["out_c"]
    in_row = in_w * cfg.chunks(in_c)
    out_row = out_w * cfg.chunks(out_c)
    base = {**fields, "pad_top": pad, "pad_bottom": pad, "pad_left": pad, "pad_right": pad}
    if op == Op.AVGPOOL:
        if in_h * in_row > cfg.act_buf_depth:
            raise TilingError(f"{name}: a global average pool over {in_h * in_row} act-buffer "
                              f"words does not fit the build's {cfg.act_buf_depth}; use a "
                              f"hardware config with a deeper act buffer "
                              f"(HwConfig.act_buf_depth)")
        return [pack_descriptor(**base)]
    window = (1, 1, 0) if op == Op.ADD else (fields["kernel_h"], fields["stride"], pad)
    geometry = dict(in_h=in_h, in_row_vectors=in_row, out_h=out_h, out_row_vectors=out_row,
                    kernel=window[0], stride=window[1], pad=window[2], cfg=cfg, name=name,
                    ping_pong=op in (Op.CONV, Op.CONV_ADD, Op.MAXPOOL))

    def row_bytes(width: int, channels: int, bits: int) -> int:
        return 8 * width * cfg.chunks(channels) * vector_words(cfg, bits, channels)

    in_step = 8 * stored_input_words(cfg, {**fields, "in_h": 1})
    if fields.get("pool"):           # out_addr is the pooled map's, out_h/out_w the conv's
        if op != Op.CONV or fields["pool"] != POOL_TOP:
            raise ValueError(f"{name}: a pooled layer is an Op.CONV with pool=POOL_TOP, not "
                             f"op {op} pool {fields['pool']}")
        out_step = row_bytes((out_w + 1) // 2, out_c, fields["out_bits"])
        return [pack_descriptor(**{
            **base, "pool": POOL_TOP if row0 == 0 else POOL_LEAD, "in_h": t.in_rows,
            "out_h": t.out_rows, "pad_top": t.pad_top, "pad_bottom": t.pad_bottom,
            "in_addr": fields["in_addr"] + t.in_row0 * in_step,
            "out_addr": fields["out_addr"] + row0 * out_step})
            for row0, _, t in plan_pooled_tiles(**geometry)]
    tiles = plan_row_tiles(**geometry)
    out_step = row_bytes(out_w, out_c, fields["out_bits"])
    out = []
    for t in tiles:
        tile = {**base, "in_h": t.in_rows, "out_h": t.out_rows, "pad_top": t.pad_top,
                "pad_bottom": t.pad_bottom, "in_addr": fields["in_addr"] + t.in_row0 * in_step,
                "out_addr": fields["out_addr"] + t.out_row0 * out_step}
        if op == Op.ADD:
            in2_step = row_bytes(in_w, in_c, fields["in2_bits"])
            tile["in2_addr"] = fields["in2_addr"] + t.in_row0 * in2_step
        elif op == Op.CONV_ADD:          # the second input has the output's shape
            in2_step = row_bytes(out_w, out_c, fields["in2_bits"])
            tile["in2_addr"] = fields["in2_addr"] + t.out_row0 * in2_step
        out.append(pack_descriptor(**tile))
    return out


def pool_fusion_pays(cfg: HwConfig, *, name: str = "layer", always: bool = False,
                     **fields: int) -> bool:
    """Whether a conv (the whole layer's fields, as for :func:`layer_descriptors`) runs
    faster with its 3 x 3/2 max-pool in the write-back (``pool``) than with the pool as a
    layer of its own: its pooled tiles fit the buffers, and the conv rows that they recompute
    (a lead row each but the first, every pass) take fewer cycles than the traffic the fusion
    saves (the conv's output written to DDR and read back). ``always``: only whether the
    tiles fit (the benches run the fused path on builds too small for it to pay). On zc706
    the stem's 8 tiles recompute about 3,000 cycles against 100,000 words saved; pynq-z2's
    out buffer holds four conv rows, so a tile pools one row of three and recomputes a third
    of the conv."""
    try:
        tiles = layer_descriptors(cfg, name=name, **{**fields, "pool": POOL_TOP})
    except TilingError:
        return False
    if always:
        return True
    pixel = max(fields["steps"], cfg.result_groups)
    recompute = (len(tiles) - 1) * fields["out_w"] * pixel * fields["passes"]
    saved = 2 * (fields["out_h"] * fields["out_w"] * cfg.chunks(fields["out_c"])
                 * vector_words(cfg, fields["out_bits"], fields["out_c"]))
    return recompute < saved
