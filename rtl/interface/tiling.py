"""Row tiling: a layer whose maps do not fit the engine's on-chip buffers runs as several
descriptors, each computing a band of output rows from the input rows it needs.

Feature maps are stored ``[h][w][chunk]`` in DDR (:mod:`.ddr`), so a band of rows is
one contiguous run of words: a tile's descriptor is the layer's with the input and output
addresses moved to the band, the heights cut to it, and zero padding only at the sides where
the whole map really ends (``pad_top``/``pad_bottom``). Only numpy-free integer arithmetic
and the hardware config are needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import HwConfig
from .ddr import words_per_vector
from .descriptor import Op, pack_descriptor

__all__ = ["RowTile", "TilingError", "layer_descriptors", "plan_row_tiles", "row_tile"]


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
        raise TilingError(
            f"{name}: one output row needs {need_in} act-buffer and {need_out} out-buffer "
            f"words, the build has {cfg.act_buf_depth} and {cfg.out_buf_depth}; use a "
            f"hardware config with deeper buffers (HwConfig.act_buf_depth, out_buf_depth)")
    rows_out = cfg.out_buf_depth // out_row_vectors

    def cut(act_words: int) -> list[RowTile]:
        tiles: list[RowTile] = []
        row = 0
        while row < out_h:
            rows = min(rows_out, out_h - row)
            while True:
                tile = row_tile(row, rows, in_h=in_h, kernel=kernel, stride=stride, pad=pad)
                if tile.in_rows * in_row_vectors <= act_words or rows == 1:
                    break
                rows -= 1
            tiles.append(tile)
            row += rows
        return tiles

    tiles = cut(cfg.act_buf_depth)
    half = cfg.act_buf_depth // 2
    if ping_pong and len(tiles) > 1 and need_in <= half:
        tiles = cut(half)
    return tiles


def layer_descriptors(cfg: HwConfig, *, pad: int = 0, name: str = "layer",
                      **fields: int) -> list[bytes]:
    """The descriptors of one layer: one per row tile, to run as one chain.

    ``fields`` are the whole layer's descriptor fields (:data:`.descriptor.FIELDS`) except
    the per-side padding, which comes from the layer's symmetric ``pad``. A layer that fits
    the buffers gives one descriptor. A global average pool is never tiled; one that does not
    fit raises :class:`TilingError`, as does a layer whose single output row does not fit.
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
    tiles = plan_row_tiles(in_h=in_h, in_row_vectors=in_row, out_h=out_h,
                           out_row_vectors=out_row, kernel=window[0], stride=window[1],
                           pad=window[2], cfg=cfg, name=name,
                           ping_pong=op in (Op.CONV, Op.CONV_ADD, Op.MAXPOOL))

    def row_bytes(width: int, channels: int, bits: int) -> int:
        return 8 * width * cfg.chunks(channels) * words_per_vector(cfg, bits)

    in_step = row_bytes(in_w, in_c, fields["in_bits"])
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
