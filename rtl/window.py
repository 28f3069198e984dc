"""The window address generator shared by the conv core and the max-pool unit.

It walks a sliding window over a feature map held in the act buffer (word
``(y * width + x) * chunks + chunk``, see ``rtl.vector_units.buffer_read_signature``) in the
order output row ``oy``, output column ``ox``, ``chunk``, ``ky``, ``kx`` (``kx`` innermost),
and presents one position per cycle: the act-buffer address, whether the position lies
inside the map (outside is zero padding), and the loop flags its users need. Padding is
given per side at the top and the left (the bottom and the right follow from the map size),
so a row tile of a larger map pads only where the map really ends (docs/engine.md).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import HwConfig
from .interface.descriptor import MAX_KERNEL

__all__ = ["MAX_PAD", "WindowGen", "window_layout"]

#: Largest kernel and padding the generator walks (ResNet's stem: 7x7, padding 3).
MAX_PAD = 3


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def window_layout(cfg: HwConfig) -> data.StructLayout:
    """Window parameters, stable from ``start`` until the walk is done.

    ``height``/``width``: the map in the act buffer; ``chunks``: ``ceil(C / V)``;
    ``row_stride``: ``width * chunks`` (words per map row); ``out_h``/``out_w``: output size;
    ``kernel`` 1..7, ``stride`` 1..2; ``pad_top``/``pad_left`` 0..3: zero rows above and
    columns left of the map.
    """
    sp = _bits(cfg.max_spatial + 1)
    return data.StructLayout({
        "height": unsigned(sp), "width": unsigned(sp),
        "chunks": unsigned(_bits(cfg.max_channels // cfg.vec_len + 2)),
        "row_stride": unsigned(_bits(cfg.act_buf_depth + 1)),
        "out_h": unsigned(sp), "out_w": unsigned(sp),
        "kernel": unsigned(_bits(MAX_KERNEL + 1)), "stride": unsigned(2),
        "pad_top": unsigned(_bits(MAX_PAD + 1)), "pad_left": unsigned(_bits(MAX_PAD + 1)),
    })


class WindowGen(wiring.Component):
    """Presents window positions one per cycle from ``start`` until the last is taken.

    A position is on the outputs while ``valid`` is high and is taken in a cycle with
    ``adv`` high; the next one (or the end) follows in the next cycle. ``start`` while
    idle begins a walk of ``out_h * out_w * chunks * kernel**2`` positions; ``done`` goes
    high when the last one has been taken and stays high until the next ``start``.

    Members
    -------
    layer : In(window_layout(cfg))
    start, adv : In(1)
    valid : Out(1)
    addr : Out(addr_bits)
        Act-buffer word of the position (meaningless where ``inside`` is low).
    inside : Out(1)
        The position lies in the map (else it is zero padding).
    win_first, win_last : Out(1)
        ``ky == kx == 0``; ``ky == kx == kernel - 1``.
    chunk_first, chunk_last : Out(1)
        First and last chunk.
    done : Out(1)
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        self._cfg = cfg
        self._addr_bits = _bits(cfg.act_buf_depth)
        super().__init__({
            "layer": In(window_layout(cfg)),
            "start": In(1), "adv": In(1),
            "valid": Out(1), "addr": Out(self._addr_bits), "inside": Out(1),
            "win_first": Out(1), "win_last": Out(1),
            "chunk_first": Out(1), "chunk_last": Out(1),
            "done": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg, L = self._cfg, self.layer
        sp = _bits(cfg.max_spatial + 1) + 2
        ab = _bits(cfg.act_buf_depth) + sp + 2       # signed address (negative in padding)
        kb = len(L.kernel)
        oy, ox = Signal(sp, name="oy"), Signal(sp, name="ox")
        ky, kx = Signal(kb, name="ky"), Signal(kb, name="kx")
        ch = Signal(len(L.chunks), name="ch")
        iy0, ix0 = Signal(signed(sp + 1), name="iy0"), Signal(signed(sp + 1), name="ix0")
        row_oy = Signal(signed(ab), name="row_oy")    # (oy * s - pad_top) * row_stride
        row_k = Signal(signed(ab), name="row_k")      # row_oy + ky * row_stride
        col_ox = Signal(signed(ab), name="col_ox")    # (ox * s - pad_left) * chunks
        col_k = Signal(signed(ab), name="col_k")      # col_ox + kx * chunks
        col_init = Signal(signed(ab), name="col_init")
        running = Signal()

        def times_pad(pad, value):
            # pad * value for pad <= 3: two shifted adds, no multiplier.
            return Mux(pad[0], value, 0) + Mux(pad[1], value << 1, 0)

        iy, ix = iy0 + ky, ix0 + kx
        # The last indices are registers (the layer holds still from ``start`` on, and the
        # first comparison comes a cycle after it).
        def last_of(value, like, name):
            sig = Signal.like(like, name=name)
            m.d.sync += sig.eq(value - 1)
            return sig

        k_last = last_of(L.kernel, kx, "kernel_last")
        last_kx, last_ky = kx == k_last, ky == k_last
        last_ch = ch == last_of(L.chunks, ch, "chunks_last")
        last_ox = ox == last_of(L.out_w, ox, "out_w_last")
        last_oy = oy == last_of(L.out_h, oy, "out_h_last")
        m.d.comb += [
            self.valid.eq(running),
            self.addr.eq((row_k + col_k + ch)[:self._addr_bits]),
            self.inside.eq((iy >= 0) & (iy < L.height) & (ix >= 0) & (ix < L.width)),
            self.win_first.eq((ky == 0) & (kx == 0)), self.win_last.eq(last_kx & last_ky),
            self.chunk_first.eq(ch == 0), self.chunk_last.eq(last_ch),
        ]

        stride_rows = Mux(L.stride == 2, L.row_stride << 1, L.row_stride)
        stride_cols = Mux(L.stride == 2, L.chunks << 1, L.chunks)
        init_row = -times_pad(L.pad_top, L.row_stride)
        init_col = -times_pad(L.pad_left, L.chunks)
        with m.If(self.start & ~running):
            m.d.sync += [running.eq(1), self.done.eq(0),
                         oy.eq(0), ox.eq(0), ky.eq(0), kx.eq(0), ch.eq(0),
                         iy0.eq(-L.pad_top), ix0.eq(-L.pad_left),
                         row_oy.eq(init_row), row_k.eq(init_row),
                         col_init.eq(init_col), col_ox.eq(init_col), col_k.eq(init_col)]
        with m.If(running & self.adv):
            m.d.sync += [kx.eq(kx + 1), col_k.eq(col_k + L.chunks)]
            with m.If(last_kx):
                m.d.sync += [kx.eq(0), ky.eq(ky + 1), col_k.eq(col_ox),
                             row_k.eq(row_k + L.row_stride)]
                with m.If(last_ky):
                    m.d.sync += [ky.eq(0), ch.eq(ch + 1), row_k.eq(row_oy)]
                    with m.If(last_ch):
                        m.d.sync += [ch.eq(0), ox.eq(ox + 1), ix0.eq(ix0 + L.stride),
                                     col_ox.eq(col_ox + stride_cols),
                                     col_k.eq(col_ox + stride_cols)]
                        with m.If(last_ox):
                            m.d.sync += [ox.eq(0), oy.eq(oy + 1), iy0.eq(iy0 + L.stride),
                                         ix0.eq(-L.pad_left),
                                         row_oy.eq(row_oy + stride_rows),
                                         row_k.eq(row_oy + stride_rows),
                                         col_ox.eq(col_init), col_k.eq(col_init)]
                            with m.If(last_oy):
                                m.d.sync += [running.eq(0), self.done.eq(1)]
        return m
