"""Row tiling on the host: tile geometry, cover of the output, buffer fit, descriptors, and
the golden model run tile by tile equal to the whole layer."""

import numpy as np
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from quant import golden
from quant.random_model import random_conv_layer
from rtl.config import HwConfig
from rtl.interface.ddr import (
    feature_map_words,
    pack_feature_map,
    unpack_feature_map,
    words_per_vector,
)
from rtl.interface.descriptor import (
    POOL_LEAD,
    POOL_TOP,
    Op,
    PostMode,
    pooled_size,
    unpack_descriptor,
)
from rtl.interface.tiling import (
    RowTile,
    TilingError,
    layer_descriptors,
    plan_pooled_tiles,
    plan_row_tiles,
    pooled_span,
    row_tile,
)

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
    """Every word of every row of a pass block belongs to exactly one weight port: each port
    the same contiguous segment of every row (sizes differing by at most one word, covering
    the row in port order), in one contiguous run per port, port 0's run first with the
    header and slots."""
    from rtl.interface.ddr import (
        PASS_HEADER_WORDS,
        SLOT_WORDS,
        pass_block_words,
        pass_word_order,
        port_row_words,
        port_span,
        row_words,
    )

    cfg = CFG.replace(weight_ports=ports)
    wpr = row_words(cfg)
    order = pass_word_order(cfg, steps)
    assert sorted(order) == list(range(steps * wpr))
    segments = [port_row_words(cfg, port) for port in range(ports)]
    assert [first for first, _ in segments] == [sum(w for _, w in segments[:j])
                                                for j in range(ports)]
    assert sum(w for _, w in segments) == wpr
    assert max(w for _, w in segments) - min(w for _, w in segments) <= 1
    head = PASS_HEADER_WORDS + SLOT_WORDS * (cfg.pot_rows + cfg.dsp_rows)
    at = 0
    for port, (seg_first, seg_words) in enumerate(segments):
        first, words = port_span(cfg, steps, port)
        assert first == at and words == steps * seg_words + (head if port == 0 else 0)
        start = first - (0 if port == 0 else head)
        run = order[start:start + steps * seg_words]
        assert list(run) == [r * wpr + seg_first + k for r in range(steps)
                             for k in range(seg_words)]
        at = first + words
    assert at == pass_block_words(cfg, steps)


# ---- a conv with its max-pool (3 x 3, stride 2, padding 1) in the write-back ---------------

@settings(max_examples=300, deadline=None)
@given(k=st.sampled_from([1, 3, 5, 7]), s=st.sampled_from([1, 2]), data=st.data(),
       h=st.integers(1, 40), width=st.integers(1, 40), cin=st.integers(1, 40),
       cout=st.integers(1, 40), out_buf=st.sampled_from([16, 32, 64, 128]),
       act_buf=st.sampled_from([64, 128, 256, 512]), ping_pong=st.booleans())
def test_pooled_tiles_cover_the_pooled_rows_and_fit(k, s, data, h, width, cin, cout, out_buf,
                                                    act_buf, ping_pong):
    p = data.draw(st.integers(0, k // 2))
    assume(h + 2 * p >= k and width + 2 * p >= k and out_buf <= act_buf)
    cfg = CFG.replace(out_buf_depth=out_buf, act_buf_depth=act_buf)
    out_h = (h + 2 * p - k) // s + 1
    out_w = (width + 2 * p - k) // s + 1
    in_row, out_row = width * cfg.chunks(cin), out_w * cfg.chunks(cout)
    geometry = dict(in_h=h, in_row_vectors=in_row, out_h=out_h, out_row_vectors=out_row,
                    kernel=k, stride=s, pad=p, cfg=cfg, name="stem", ping_pong=ping_pong)
    try:
        bands = plan_pooled_tiles(**geometry)
    except TilingError as exc:
        assert str(exc).startswith("stem: one pooled output row needs ")
        singles = [row_tile(*pooled_span(r, 1, out_h), in_h=h, kernel=k, stride=s, pad=p)
                   for r in range((out_h + 1) // 2)]
        assert any(t.out_rows * out_row > out_buf or t.in_rows * in_row > act_buf
                   for t in singles)
        return
    ph = pooled_size(out_h, out_w, POOL_TOP)[0]
    assert [r for r0, n, _ in bands for r in range(r0, r0 + n)] == list(range(ph))
    for r0, n, t in bands:
        pool = POOL_TOP if r0 == 0 else POOL_LEAD
        assert t.out_row0 == (0 if r0 == 0 else 2 * r0 - 1)
        assert t.out_row0 + t.out_rows == min(out_h, 2 * (r0 + n))
        assert pooled_size(t.out_rows, out_w, pool)[0] == n
        assert t.out_rows * out_row <= out_buf
        assert t == row_tile(t.out_row0, t.out_rows, in_h=h, kernel=k, stride=s, pad=p)
    # The ping-pong rule of plan_row_tiles: bands of at most half the act buffer when one
    # pooled row allows it; and each band as large as the buffers allow.
    singles = [row_tile(*pooled_span(r, 1, out_h), in_h=h, kernel=k, stride=s, pad=p)
               for r in range(ph)]
    half = act_buf // 2
    limit = (half if ping_pong and len(bands) > 1
             and max(t.in_rows for t in singles) * in_row <= half else act_buf)
    for r0, n, t in bands:
        assert t.in_rows * in_row <= limit
        if r0 + n < ph:
            more = row_tile(*pooled_span(r0, n + 1, out_h), in_h=h, kernel=k, stride=s, pad=p)
            assert more.out_rows * out_row > out_buf or more.in_rows * in_row > limit


def _pooled_on_emulator(cfg, x, params, node, *, in_bits):
    """The pooled conv tiled by ``layer_descriptors`` and run tile by tile on the emulator:
    (descriptors, each tile's pooled band as it wrote it, the whole pooled map in DDR)."""
    from firmware import emu
    from firmware.layer import prepare_conv

    layer = prepare_conv(params["weight"], params["scheme"], params["bias"], params["mult"],
                         params["shift"], cfg)
    (cin, h, w), cout = x.shape[1:], params["weight"].shape[0]
    k, s, p = node["kernel"], node["stride"], node["padding"]
    out_h, out_w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    pooled = (cout, *pooled_size(out_h, out_w, POOL_TOP))
    base, size = 0x1000_0000, 1 << 20
    in_addr, w_addr = base, base + 0x4_0000
    out_addr = w_addr + 8 * len(layer.weights) + 64
    descs = layer_descriptors(
        cfg, pad=p, name="stem", op=Op.CONV, in_addr=in_addr, out_addr=out_addr,
        weight_addr=w_addr, in_c=cin, in_h=h, in_w=w, out_c=cout, out_h=out_h, out_w=out_w,
        kernel_h=k, kernel_w=k, stride=s, mode=int(PostMode.RELU), in_bits=in_bits,
        out_bits=cfg.act_bits, passes=layer.passes, steps=layer.steps, pool=POOL_TOP)
    memory = emu.EmuMemory(size, base)
    memory.data[:] = b"\xa5" * size                   # what a tile fails to write shows up
    bus = emu._Bus(memory, base, size)
    bus.write(in_addr, pack_feature_map(x[0], in_bits, signed=False, cfg=cfg)
              .astype("<u8").tobytes())
    bus.write(w_addr, layer.weights.astype("<u8").tobytes())
    bands = []
    for raw in descs:
        emu.execute_descriptor(bus, raw, cfg)
        d = unpack_descriptor(raw)
        shape = (cout, *pooled_size(d["out_h"], d["out_w"], d["pool"]))
        words = bus.words(d["out_addr"], feature_map_words(cfg, shape, cfg.act_bits))
        bands.append(unpack_feature_map(words, shape, cfg.act_bits, signed=False, cfg=cfg))
    words = bus.words(out_addr, feature_map_words(cfg, pooled, cfg.act_bits))
    whole = unpack_feature_map(words, pooled, cfg.act_bits, signed=False, cfg=cfg)
    return [unpack_descriptor(raw) for raw in descs], bands, whole


def _pooled_case(seed, *, k, s, p, h, w, cin, cout, out_buf, act_buf, in_bits=4):
    cfg = CFG.replace(out_buf_depth=out_buf, act_buf_depth=act_buf, max_reduction=1152,
                      weight_buf_depth=128)
    rng = np.random.default_rng(seed)
    x, _, params, node = random_conv_layer(rng, cin=cin, cout=cout, kernel=k, stride=s,
                                           pad=p, size=max(h, w), ratio=(60, 35, 5),
                                           relu=True, in_bits=in_bits, act_bits=4)
    x = x[:, :, :h, :w]
    expected = golden.maxpool(golden.conv(x, node, params, 4), 3, 2, 1)[0]
    descs, bands, whole = _pooled_on_emulator(cfg, x, params, node, in_bits=in_bits)
    np.testing.assert_array_equal(np.concatenate(bands, axis=1), expected)
    np.testing.assert_array_equal(whole, expected)
    assert [d["pool"] for d in descs] == [POOL_TOP] + [POOL_LEAD] * (len(descs) - 1)
    return descs


@pytest.mark.parametrize(("k", "s", "p", "h", "w", "cout", "out_buf", "act_buf"), [
    (3, 1, 1, 11, 9, 6, 32, 256),     # odd H and W: the last window reaches a zero row
    (3, 1, 1, 12, 10, 6, 32, 256),    # even H and W
    (7, 2, 3, 29, 13, 8, 32, 256),    # the stem, 7x7/2: 15 x 7 conv rows
    (7, 2, 3, 26, 17, 8, 32, 256),    # 13 x 9
    (5, 1, 2, 9, 7, 10, 64, 128),     # two chunks of output channels
    (1, 1, 0, 7, 5, 3, 16, 64),
    (3, 2, 1, 17, 9, 6, 16, 64),      # one pooled row a tile
])
def test_pooled_conv_by_tiles_equals_golden(k, s, p, h, w, cout, out_buf, act_buf):
    """Each tile, its lead row recomputed, writes its band of the max-pool: the bands, and
    the map they make in DDR, equal the golden conv and max-pool of the whole layer."""
    descs = _pooled_case(h * 100 + w, k=k, s=s, p=p, h=h, w=w, cin=5, cout=cout,
                         out_buf=out_buf, act_buf=act_buf)
    assert len(descs) >= 3


@settings(max_examples=60, deadline=None)
@given(k=st.sampled_from([1, 3, 5, 7]), s=st.sampled_from([1, 2]), data=st.data(),
       h=st.integers(1, 24), w=st.integers(1, 24), cin=st.integers(1, 12),
       cout=st.integers(1, 16), out_buf=st.sampled_from([16, 32, 64, 128]),
       act_buf=st.sampled_from([64, 128, 256]), in_bits=st.sampled_from([4, 8]),
       seed=st.integers(0, 1 << 16))
def test_random_pooled_convs_equal_golden(k, s, data, h, w, cin, cout, out_buf, act_buf,
                                          in_bits, seed):
    p = data.draw(st.integers(0, k // 2))
    assume(h + 2 * p >= k and w + 2 * p >= k and out_buf <= act_buf)
    try:
        descs = _pooled_case(seed, k=k, s=s, p=p, h=h, w=w, cin=cin, cout=cout,
                             out_buf=out_buf, act_buf=act_buf, in_bits=in_bits)
    except TilingError:
        assume(False)                  # the buffers hold no pooled row: nothing to run
    event(f"{min(len(descs), 3)}+ tiles")


def test_pooled_descriptors_point_at_the_pooled_bands():
    """13 x 5 conv rows of 15 out-buffer words: 4 conv rows a tile, so 2 pooled rows at the
    top (conv rows 0-3), then 1 a tile (3 conv rows), each from the last conv row of the
    band above."""
    fields = _conv_fields(in_h=13, out_h=13, in_w=5, out_w=5, pool=POOL_TOP)
    descs = [unpack_descriptor(d) for d in layer_descriptors(CFG, pad=1, **fields)]
    in_row = 8 * 5 * 2 * words_per_vector(CFG, 4)        # bytes of one input row
    pooled_row = 8 * 3 * 3 * words_per_vector(CFG, 4)    # of one pooled row (3 columns)
    # (first pooled row, pooled rows, first conv row, conv rows); the last band's last
    # window reads a zero row below conv row 12, so it pools 2 rows from 4 conv rows.
    plan = [(0, 2, 0, 4), (2, 1, 3, 3), (3, 1, 5, 3), (4, 1, 7, 3), (5, 2, 9, 4)]
    assert len(descs) == len(plan)
    for d, (r0, n, c0, rows) in zip(descs, plan, strict=True):
        t = row_tile(c0, rows, in_h=13, kernel=3, stride=1, pad=1)
        assert d["pool"] == (POOL_TOP if r0 == 0 else POOL_LEAD)
        assert (d["out_h"], d["out_w"], d["in_h"], d["in_w"]) == (rows, 5, t.in_rows, 5)
        assert pooled_size(d["out_h"], d["out_w"], d["pool"]) == (n, 3)
        assert (d["pad_top"], d["pad_bottom"], d["pad_left"], d["pad_right"]) == (
            t.pad_top, t.pad_bottom, 1, 1)
        assert d["in_addr"] == 0x10000 + t.in_row0 * in_row
        assert d["out_addr"] == 0x80000 + r0 * pooled_row
        assert (d["op"], d["weight_addr"], d["passes"], d["steps"]) == (Op.CONV, 0x40000, 3, 18)


def test_pooled_layer_without_room_for_one_pooled_row():
    """Two conv rows of 33 out-buffer words (the top pooled row) do not fit 64."""
    with pytest.raises(TilingError, match=r"^conv1: one pooled output row needs \d+ "
                                          r"act-buffer and 99 out-buffer words, the build has "
                                          r"256 and 64; use a hardware config with deeper"):
        layer_descriptors(CFG, pad=1, name="conv1",
                          **_conv_fields(in_w=11, out_w=11, pool=POOL_TOP))
    # The same layer unpooled fits: one conv row a tile.
    assert len(layer_descriptors(CFG, pad=1, **_conv_fields(in_w=11, out_w=11))) == 12
