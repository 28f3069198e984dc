"""Row tiling on the host: tile geometry, cover of the output, buffer fit, descriptors, and
the golden model run tile by tile equal to the whole layer."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quant import golden
from quant.random_model import random_conv_layer
from rtl.config import HwConfig
from rtl.interface.ddr import words_per_vector
from rtl.interface.descriptor import Op, unpack_descriptor
from rtl.interface.tiling import RowTile, TilingError, layer_descriptors, plan_row_tiles, row_tile

CFG = HwConfig(name="tile-test", part="xc7z020clg400-1", clock_mhz=100.0, pot_rows=4,
               pot_cols=8, dsp_rows=4, dsp_cols=8, max_reduction=7 * 7 * 8, max_channels=64,
               max_spatial=64, act_buf_depth=256, weight_buf_depth=64, out_buf_depth=64)


@pytest.mark.parametrize(("args", "tile"), [
    # 3x3/1 pad 1 on 7 rows: the top band pads above, a middle band not at all, the bottom
    # band below.
    ((0, 2, 7, 3, 1, 1), RowTile(0, 2, 0, 3, 1, 0)),
    ((2, 2, 7, 3, 1, 1), RowTile(2, 2, 1, 4, 0, 0)),
    ((5, 2, 7, 3, 1, 1), RowTile(5, 2, 4, 3, 0, 1)),
    # The stem, 7x7/2 pad 3 on 11 rows (6 output rows): two bands.
    ((0, 3, 11, 7, 2, 3), RowTile(0, 3, 0, 8, 3, 0)),
    ((3, 3, 11, 7, 2, 3), RowTile(3, 3, 3, 8, 0, 3)),
    # 3x3/2 pad 1 on an even map: the last input row is never read.
    ((3, 1, 8, 3, 2, 1), RowTile(3, 1, 5, 3, 0, 0)),
])
def test_row_tile_by_hand(args, tile):
    out_row0, out_rows, in_h, k, s, p = args
    assert row_tile(out_row0, out_rows, in_h=in_h, kernel=k, stride=s, pad=p) == tile


@settings(max_examples=300, deadline=None)
@given(k=st.sampled_from([1, 2, 3, 5, 7]), s=st.sampled_from([1, 2]), data=st.data(),
       h=st.integers(1, 40), width=st.integers(1, 40), cin=st.integers(1, 40),
       cout=st.integers(1, 40))
def test_tiles_cover_the_output_and_fit(k, s, data, h, width, cin, cout):
    p = data.draw(st.integers(0, k // 2))
    if h + 2 * p < k or width + 2 * p < k:
        return
    out_h = (h + 2 * p - k) // s + 1
    out_w = (width + 2 * p - k) // s + 1
    in_row, out_row = width * -(-cin // CFG.vec_len), out_w * -(-cout // CFG.vec_len)
    try:
        tiles = plan_row_tiles(in_h=h, in_row_vectors=in_row, out_h=out_h,
                               out_row_vectors=out_row, kernel=k, stride=s, pad=p, cfg=CFG)
    except TilingError:
        assert out_row > CFG.out_buf_depth or min(k, h) * in_row > CFG.act_buf_depth
        return
    assert [r for t in tiles for r in range(t.out_row0, t.out_row0 + t.out_rows)] == \
        list(range(out_h))
    for t in tiles:
        assert t.out_rows * out_row <= CFG.out_buf_depth
        assert t.in_rows * in_row <= CFG.act_buf_depth
        assert 0 <= t.in_row0 and t.in_row0 + t.in_rows <= h
        assert 0 <= t.pad_top <= p and 0 <= t.pad_bottom <= p
        # The band with its padding is exactly what its output rows read.
        assert t.pad_top + t.in_rows + t.pad_bottom == (t.out_rows - 1) * s + k


@pytest.mark.parametrize(("k", "s", "p", "h", "rows"), [
    (3, 1, 1, 9, 2), (7, 2, 3, 13, 2), (3, 2, 1, 8, 3), (1, 2, 0, 7, 1), (5, 1, 2, 6, 4)])
def test_golden_by_tiles_equals_whole_layer(k, s, p, h, rows):
    """Each tile computed from its band alone, with zeros only at the map's own edges."""
    rng = np.random.default_rng(h * 10 + k)
    x, _, params, node = random_conv_layer(rng, cin=5, cout=6, kernel=k, stride=s, pad=p,
                                           size=h, ratio=(60, 35, 5), relu=True, in_bits=4,
                                           act_bits=4)
    whole = golden.conv(x, node, params, 4)
    out_h = whole.shape[2]
    parts = []
    for row0 in range(0, out_h, rows):
        t = row_tile(row0, min(rows, out_h - row0), in_h=h, kernel=k, stride=s, pad=p)
        band = np.pad(x[:, :, t.in_row0:t.in_row0 + t.in_rows],
                      ((0, 0), (0, 0), (t.pad_top, t.pad_bottom), (p, p)))
        parts.append(golden.conv(band, {**node, "padding": 0}, params, 4))
    np.testing.assert_array_equal(np.concatenate(parts, axis=2), whole)


def _conv_fields(**over):
    fields = dict(op=Op.CONV, in_addr=0x10000, out_addr=0x80000, weight_addr=0x40000,
                  in_c=10, in_h=12, in_w=12, out_c=20, out_h=12, out_w=12, kernel_h=3, kernel_w=3,
                  stride=1, mode=0, in_bits=4, out_bits=4, passes=3, steps=18)
    return {**fields, **over}


def test_descriptors_point_at_the_bands():
    descs = [unpack_descriptor(d) for d in layer_descriptors(CFG, pad=1, **_conv_fields())]
    in_row = 8 * 12 * 2 * words_per_vector(CFG, 4)       # bytes of one input row
    out_row = 8 * 12 * 3 * words_per_vector(CFG, 4)
    assert len(descs) == 12                                # 36 out-buffer words per row
    for i, d in enumerate(descs):
        t = row_tile(i, 1, in_h=12, kernel=3, stride=1, pad=1)
        assert (d["in_h"], d["out_h"], d["pad_top"], d["pad_bottom"]) == (
            t.in_rows, 1, t.pad_top, t.pad_bottom)
        assert (d["pad_left"], d["pad_right"], d["in_w"], d["out_w"]) == (1, 1, 12, 12)
        assert d["in_addr"] == 0x10000 + t.in_row0 * in_row
        assert d["out_addr"] == 0x80000 + i * out_row
        assert (d["weight_addr"], d["passes"], d["steps"]) == (0x40000, 3, 18)


def test_a_layer_that_fits_is_one_descriptor():
    fields = _conv_fields(in_h=4, in_w=4, out_h=4, out_w=4)
    (raw,) = layer_descriptors(CFG, pad=1, **fields)
    d = unpack_descriptor(raw)
    assert (d["pad_top"], d["pad_bottom"], d["in_addr"]) == (1, 1, 0x10000)


def test_add_bands_move_both_inputs():
    fields = dict(op=Op.ADD, in_addr=0x1000, in2_addr=0x9000, out_addr=0x20000, in_c=20,
                  in_h=8, in_w=8, out_c=20, out_h=8, out_w=8, in_bits=5, in2_bits=4,
                  out_bits=4, mode=0)
    descs = [unpack_descriptor(d) for d in layer_descriptors(CFG, **fields)]
    assert len(descs) == 4                                 # 24 words per row, 2 rows a tile
    for i, d in enumerate(descs):
        assert d["in_addr"] == 0x1000 + 2 * i * 8 * 8 * 3 * words_per_vector(CFG, 5)
        assert d["in2_addr"] == 0x9000 + 2 * i * 8 * 8 * 3 * words_per_vector(CFG, 4)
        assert (d["in_h"], d["out_h"], d["pad_top"], d["pad_bottom"]) == (2, 2, 0, 0)


def test_untileable_layers_say_what_to_change():
    with pytest.raises(TilingError, match=r"^conv9: one output row needs 240 act-buffer and "
                                          r"320 out-buffer words, the build has 256 and 64; "
                                          r"use a hardware config with deeper buffers"):
        layer_descriptors(CFG, pad=1, name="conv9",
                          **_conv_fields(in_w=40, out_w=40, out_c=64, in_h=40, out_h=40))
    with pytest.raises(TilingError, match=r"^pool: a global average pool over 300 act-buffer "
                                          r"words does not fit the build's 256"):
        layer_descriptors(CFG, name="pool", op=Op.AVGPOOL, in_addr=0, out_addr=0x1000,
                          in_c=20, in_h=10, in_w=10, out_c=20, out_h=1, out_w=1, in_bits=4,
                          out_bits=4)


@pytest.mark.parametrize("ports", [1, 2, 3])
@pytest.mark.parametrize("steps", [1, 2, 3, 4, 7, 144])
def test_weight_ports_read_contiguous_shares_of_a_pass(ports, steps):
    """Every row of a pass block belongs to exactly one weight port, in one contiguous run
    per port, port 0's run first with the header and slots."""
    from rtl.interface.ddr import (
        PASS_HEADER_WORDS,
        SLOT_WORDS,
        pass_block_words,
        pass_row_order,
        port_rows,
        port_span,
        row_words,
    )

    cfg = CFG.replace(weight_ports=ports)
    order = pass_row_order(cfg, steps)
    assert sorted(order) == list(range(steps))
    head = PASS_HEADER_WORDS + SLOT_WORDS * (cfg.pot_rows + cfg.dsp_rows)
    wpr, at = row_words(cfg), 0
    for port in range(ports):
        first, words = port_span(cfg, steps, port)
        assert first == at and words == port_rows(cfg, steps, port) * wpr + (
            head if port == 0 else 0)
        rows = order[(first - (0 if port == 0 else head)) // wpr:][:port_rows(cfg, steps, port)]
        assert rows == list(range(port, steps, ports))
        at = first + words
    assert at == pass_block_words(cfg, steps)
