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

from .common import index_bits, stage
from .config import HwConfig
from .interface.descriptor import MAX_KERNEL

__all__ = ["MAX_PAD", "WindowGen", "rows_all", "rows_shape", "window_layout"]

#: Largest kernel and padding the generator walks (ResNet's stem: 7x7, padding 3).
MAX_PAD = 3


def rows_shape(cfg: HwConfig) -> unsigned:
    """The count of map rows present in the act buffer (``WindowGen.rows``): wide enough
    that all ones passes every output row's need (``height + kernel_h`` at most)."""
    return unsigned(index_bits(cfg.max_spatial + MAX_KERNEL + 2))


def rows_all(cfg: HwConfig) -> int:
    """The row count of a map that is all in (:func:`rows_shape`'s all ones)."""
    return (1 << rows_shape(cfg).width) - 1


def window_layout(cfg: HwConfig) -> data.StructLayout:
    """Window parameters, stable from ``start`` until the walk is done.

    ``height``/``width``: the map in the act buffer; ``chunks``: ``ceil(C / V)``;
    ``row_stride``: ``width * chunks`` (words per map row); ``out_h``/``out_w``: output size;
    ``kernel_h``/``kernel_w`` 1..7 (the window's rows and columns), ``stride`` 1..2;
    ``pad_top``/``pad_left`` 0..3: zero rows above and columns left of the map.
    """
    sp = index_bits(cfg.max_spatial + 1)
    return data.StructLayout({
        "height": unsigned(sp), "width": unsigned(sp),
        "chunks": unsigned(index_bits(cfg.max_channels // cfg.vec_len + 2)),
        "row_stride": unsigned(index_bits(cfg.act_buf_depth + 1)),
        "out_h": unsigned(sp), "out_w": unsigned(sp),
        "kernel_h": unsigned(index_bits(MAX_KERNEL + 1)),
        "kernel_w": unsigned(index_bits(MAX_KERNEL + 1)), "stride": unsigned(2),
        "pad_top": unsigned(index_bits(MAX_PAD + 1)), "pad_left": unsigned(index_bits(MAX_PAD + 1)),
    })


class WindowGen(wiring.Component):
    """Presents window positions one per cycle from ``start`` until the last is taken.

    A position is on the outputs while ``valid`` is high and is taken in a cycle with
    ``adv`` high; the next one (or the end) follows in the next cycle. ``start`` while
    idle begins a walk of ``out_h * out_w * chunks * kernel_h * kernel_w`` positions; ``done``
    goes high when the last one has been taken and stays high until the next ``start``.

    Members
    -------
    layer : In(window_layout(cfg))
    start, adv : In(1)
    rows : In(rows_shape(cfg)), all ones unless driven
        Rows of the map present in the act buffer (it only grows during a walk): an output
        row's positions are presented once the rows its windows reach are in
        (``oy * stride - pad_top + kernel_h``, counted from the map's first row), so a walk
        may start while its map still loads (docs/engine.md, "Overlap"). Checked
        a cycle late (a register), which is never early while the count only grows.
    valid : Out(1)
    addr : Out(addr_bits)
        Act-buffer word of the position (meaningless where ``inside`` is low).
    inside : Out(1)
        The position lies in the map (else it is zero padding).
    win_first, win_last : Out(1)
        ``ky == kx == 0``; ``ky == kernel_h - 1`` and ``kx == kernel_w - 1``.
    chunk_first, chunk_last : Out(1)
        First and last chunk.
    chunk_odd : Out(1)
        The chunk's index is odd (a split input's high nibbles).
    done : Out(1)
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        self._cfg = cfg
        self._addr_bits = index_bits(cfg.act_buf_depth)
        super().__init__({
            "layer": In(window_layout(cfg)),
            "start": In(1), "adv": In(1),
            "rows": In(rows_shape(cfg), init=rows_all(cfg)),
            "valid": Out(1), "addr": Out(self._addr_bits), "inside": Out(1),
            "win_first": Out(1), "win_last": Out(1),
            "chunk_first": Out(1), "chunk_last": Out(1), "chunk_odd": Out(1),
            "done": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg, L = self._cfg, self.layer
        sp = index_bits(cfg.max_spatial + 1) + 2
        ab = index_bits(cfg.act_buf_depth) + sp + 2       # signed address (negative in padding)
        kb = len(L.kernel_h)
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
        # Rows the current output row's windows reach (iy0 + kernel_h), and whether they are
        # in: a register, computed from the value ``need`` takes in the next cycle.
        need = Signal(signed(sp + 2), name="need")
        rows_in = Signal(name="rows_in")

        def times_pad(pad, value):
            # pad * value for pad <= 3: two shifted adds, no multiplier.
            return Mux(pad[0], value, 0) + Mux(pad[1], value << 1, 0)

        iy, ix = iy0 + ky, ix0 + kx
        # What the counters are compared with are registers (the layer holds still from
        # ``start`` on, and the first step comes a cycle after it).
        counters = ((L.kernel_w, kx, "kernel_w"), (L.kernel_h, ky, "kernel_h"),
                    (L.chunks, ch, "chunks"), (L.out_w, ox, "out_w"), (L.out_h, oy, "out_h"))

        def minus(value, like, n, name):
            sig = Signal(len(like) + n - 1, name=name)
            m.d.sync += sig.eq(value - n)
            return sig

        # Three below the count: the value two before the last, two bits wider, so that a
        # counter of one or two values never equals it.
        pres = [minus(value, like, 3, f"{name}_pre") for value, like, name in counters]
        # Counts of one and of two values: the last is 0 (the value before it is).
        ones = [stage(m, value == 1, 1, f"{name}_one") for value, _, name in counters]
        twos = [stage(m, value == 2, 1, f"{name}_two") for value, _, name in counters]
        # Whether each counter is at its last value (``at_*``), and whether it and every
        # counter inside it are (``end_*``: the next step carries past it), are registers set
        # with the counters: a step's enable goes only to clock enables, and what the
        # counters load comes from flip-flops.
        # ``near_*``: whether the counter is at the value before its last, also a register,
        # so that what a step makes of ``at_*`` is a choice between registers: the
        # comparisons with the counters feed only ``near_*``, not the ``end_*`` behind them.
        last_kx, last_ky = Signal(name="at_last_kx"), Signal(name="at_last_ky")
        last_ch = Signal(name="at_last_ch")
        last_ox, last_oy = Signal(name="at_last_ox"), Signal(name="at_last_oy")
        nears = [Signal(name=f"near_last_{name}") for name in ("kx", "ky", "ch", "ox", "oy")]
        end_ky, end_ch = Signal(name="end_ky"), Signal(name="end_ch")
        end_ox, end_oy = Signal(name="end_ox"), Signal(name="end_oy")
        end_kx = last_kx
        m.d.comb += [
            self.valid.eq(running & rows_in),
            self.addr.eq((row_k + col_k + ch)[:self._addr_bits]),
            self.inside.eq((iy >= 0) & (iy < L.height) & (ix >= 0) & (ix < L.width)),
            self.win_first.eq((ky == 0) & (kx == 0)), self.win_last.eq(end_ky),
            self.chunk_first.eq(ch == 0), self.chunk_last.eq(last_ch), self.chunk_odd.eq(ch[0]),
        ]

        def set_ends(kx_at, ky_at, ch_at, ox_at, oy_at):
            e_ky = kx_at & ky_at
            e_ch = e_ky & ch_at
            e_ox = e_ch & ox_at
            m.d.sync += [last_kx.eq(kx_at), last_ky.eq(ky_at), last_ch.eq(ch_at),
                         last_ox.eq(ox_at), last_oy.eq(oy_at), end_ky.eq(e_ky),
                         end_ch.eq(e_ch), end_ox.eq(e_ox), end_oy.eq(e_ox & oy_at)]

        stride_rows = Mux(L.stride == 2, L.row_stride << 1, L.row_stride)
        stride_cols = Mux(L.stride == 2, L.chunks << 1, L.chunks)
        init_row = -times_pad(L.pad_top, L.row_stride)
        init_col = -times_pad(L.pad_left, L.chunks)
        # While idle the counters hold the walk's first position (the layer is stable by
        # ``start``), so that ``start`` sets only ``running``.
        with m.If(~running):
            with m.If(self.start):
                m.d.sync += [running.eq(1), self.done.eq(0)]
            m.d.sync += [oy.eq(0), ox.eq(0), ky.eq(0), kx.eq(0), ch.eq(0),
                         iy0.eq(-L.pad_top), ix0.eq(-L.pad_left),
                         row_oy.eq(init_row), row_k.eq(init_row),
                         col_init.eq(init_col), col_ox.eq(init_col), col_k.eq(init_col)]
            first_need = L.kernel_h - L.pad_top
            m.d.sync += [need.eq(first_need), rows_in.eq(first_need <= self.rows)]
            set_ends(L.kernel_w == 1, L.kernel_h == 1, L.chunks == 1, L.out_w == 1,
                     L.out_h == 1)
            m.d.sync += [near.eq(c[0] == 2) for near, c in zip(nears, counters, strict=True)]

        def step(k, count, at_last, inner_end, own_end):
            # A counter inside which every counter ends steps: to 0 past its last value.
            near, pre, one, two = nears[k], pres[k], ones[k], twos[k]
            m.d.sync += near.eq(Mux(inner_end, Mux(own_end, two, count == pre), near))
            return (Mux(inner_end, Mux(own_end, 0, count + 1), count),
                    Mux(inner_end, Mux(own_end, one, near), at_last))

        step_en = running & rows_in & self.adv
        with m.If(running):
            # Both verdicts from registers, chosen by the step: no comparison behind it.
            row_step = step_en & end_ox
            m.d.sync += [need.eq(Mux(row_step, need + L.stride, need)),
                         rows_in.eq(Mux(row_step, need + L.stride <= self.rows,
                                        need <= self.rows))]
        with m.If(step_en):
            kx_n, kx_at = step(0, kx, last_kx, 1, end_kx)
            ky_n, ky_at = step(1, ky, last_ky, end_kx, end_ky)
            ch_n, ch_at = step(2, ch, last_ch, end_ky, end_ch)
            ox_n, ox_at = step(3, ox, last_ox, end_ch, end_ox)
            oy_n, oy_at = step(4, oy, last_oy, end_ox, end_oy)
            m.d.sync += [kx.eq(kx_n), ky.eq(ky_n), ch.eq(ch_n), ox.eq(ox_n), oy.eq(oy_n)]
            set_ends(kx_at, ky_at, ch_at, ox_at, oy_at)
            next_col_ox = col_ox + stride_cols
            next_row_oy = row_oy + stride_rows
            m.d.sync += [
                col_k.eq(Mux(end_ox, col_init, Mux(end_ch, next_col_ox,
                                                   Mux(end_kx, col_ox, col_k + L.chunks)))),
                row_k.eq(Mux(end_ox, next_row_oy, Mux(end_ky, row_oy,
                                                      Mux(end_kx, row_k + L.row_stride,
                                                          row_k)))),
                col_ox.eq(Mux(end_ox, col_init, Mux(end_ch, next_col_ox, col_ox))),
                row_oy.eq(Mux(end_ox, next_row_oy, row_oy)),
                ix0.eq(Mux(end_ox, -L.pad_left, Mux(end_ch, ix0 + L.stride, ix0))),
                iy0.eq(Mux(end_ox, iy0 + L.stride, iy0)),
            ]
            with m.If(end_oy):
                m.d.sync += [running.eq(0), self.done.eq(1)]
        return m
