"""The conv datapath: one pass of a conv/fc layer from on-chip buffers through both arrays and
the requantization unit, results scattered by original output channel (docs/engine.md)."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from quant import contract as C

from .common import act_width, check_config
from .config import HwConfig
from .dsp_array import DspArray
from .postproc import OUT_BITS, SHIFT_BITS, PostProc
from .pot_array import PotArray
from .vector_units import buffer_read_signature, lane_bits

__all__ = ["ConvCore", "conv_layer_layout", "result_layout", "slot_layout"]


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def conv_layer_layout(cfg: HwConfig) -> data.StructLayout:
    """Layer parameters of one pass; stable from ``start`` until ``done``.

    ``height``/``width``: input map held in the act buffer; ``chunks``: ``ceil(C_in / V)``;
    ``row_stride``: ``width * chunks`` (act-buffer words per input row); ``out_h``/``out_w``:
    output size; ``kernel``/``stride``/``pad``; ``mode``: a :class:`PostMode`; ``fixed8``:
    which DSP lane pairs run a Fixed-8 filter in this pass.
    """
    sp = _bits(cfg.max_spatial + 1)
    fields = {
        "height": unsigned(sp), "width": unsigned(sp),
        "chunks": unsigned(_bits(cfg.max_channels // cfg.vec_len + 2)),
        "row_stride": unsigned(_bits(cfg.act_buf_depth + 1)),
        "out_h": unsigned(sp), "out_w": unsigned(sp),
        "kernel": unsigned(3), "stride": unsigned(2), "pad": unsigned(2),
        "mode": unsigned(2),
    }
    if "fixed8" in cfg.weight_formats:
        fields["fixed8"] = data.ArrayLayout(unsigned(1), cfg.dsp_rows // 2)
    return data.StructLayout(fields)


def slot_layout(cfg: HwConfig) -> data.StructLayout:
    """One result slot (PoT rows first, then DSP lanes): where it lands and its requant."""
    return data.StructLayout({
        "valid": unsigned(1),
        "channel": unsigned(_bits(cfg.max_channels)),
        "bias": signed(cfg.acc_bits),
        "mult": unsigned(C.MULT_BITS),
        "shift": unsigned(SHIFT_BITS),
    })


def result_layout(cfg: HwConfig) -> data.StructLayout:
    """One output element: pixel index ``oy * out_w + ox``, original channel, value."""
    return data.StructLayout({
        "pixel": unsigned(2 * _bits(cfg.max_spatial + 1)),
        "channel": unsigned(_bits(cfg.max_channels)),
        "value": signed(OUT_BITS),
    })


class ConvCore(wiring.Component):
    """Runs one pass of a convolution (or fc, as 1x1) over the act buffer's input map.

    The act buffer is outside, shared with the vector units: ``rd`` is its read port (word
    ``(y * width + x) * chunks + chunk``, lane ``i`` at bits ``[i * lane_bits, ...)``, see
    ``rtl.vector_units.buffer_read_signature``). Before ``start``: load it, the
    weight buffer (``w_*``: one row per step, see ``firmware.conv.weight_rows``) and the
    result slots (``slot_*``). After ``start`` the core issues one activation vector per cycle
    to both arrays (zeros in the padding), and every output pixel's ``pot_rows + dsp_rows``
    dot products leave requantized on ``o``, one valid slot per cycle, tagged with pixel and
    original channel. ``done`` pulses when the last result has been taken.

    The pass takes ``out_h * out_w * kernel**2 * chunks`` issue cycles when neither the
    arrays nor ``o`` stall; the element-serial result path stalls the arrays on layers with
    fewer steps per pixel than valid slots.
    """

    def __init__(self, *, cfg: HwConfig) -> None:
        cfg = check_config(cfg, "ConvCore")
        self._cfg = cfg
        self._slots = cfg.pot_rows + cfg.dsp_rows
        from firmware.conv import weight_row_bits
        self._wbits = weight_row_bits(cfg)
        super().__init__({
            "layer": In(conv_layer_layout(cfg)),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "rd": In(buffer_read_signature(cfg)),
            "w_we": In(1), "w_waddr": In(_bits(cfg.weight_buf_depth)),
            "w_wdata": In(self._wbits),
            "slot_we": In(1), "slot_waddr": In(_bits(self._slots)),
            "slot_wdata": In(slot_layout(cfg)),
            "o": Out(stream.Signature(result_layout(cfg))),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg, v = self._cfg, self._cfg.vec_len
        aw = act_width(cfg)
        L = self.layer

        m.submodules.pot = pot = PotArray(cfg=cfg)
        m.submodules.dsp = dsp = DspArray(cfg=cfg)
        ch_bits, pix_bits = _bits(cfg.max_channels), 2 * _bits(cfg.max_spatial + 1)
        m.submodules.post = post = PostProc(cfg=cfg, lanes=1, tag_bits=ch_bits + pix_bits)

        # ---- buffers ----------------------------------------------------------------------
        m.submodules.w_mem = w_mem = Memory(shape=self._wbits, depth=cfg.weight_buf_depth,
                                            init=[])
        w_wr, w_rd = w_mem.write_port(), w_mem.read_port()
        act_rd = self.rd
        m.d.comb += [w_wr.en.eq(self.w_we), w_wr.addr.eq(self.w_waddr),
                     w_wr.data.eq(self.w_wdata)]
        slots = Signal(data.ArrayLayout(slot_layout(cfg), self._slots))
        with m.If(self.slot_we):
            m.d.sync += slots[self.slot_waddr].eq(self.slot_wdata)

        # ---- issue sequencer ----------------------------------------------------------------
        sp = _bits(cfg.max_spatial + 1) + 2
        ab = _bits(cfg.act_buf_depth) + sp + 2       # signed act address (negative in padding)
        oy, ox = Signal(sp, name="oy"), Signal(sp, name="ox")
        ky, kx = Signal(3, name="ky"), Signal(3, name="kx")
        ch = Signal(len(L.chunks), name="ch")
        step = Signal(_bits(cfg.weight_buf_depth + 1), name="step")
        iy0, ix0 = Signal(signed(sp + 1), name="iy0"), Signal(signed(sp + 1), name="ix0")
        row_oy = Signal(signed(ab), name="row_oy")    # (oy*s - pad) * row_stride
        row_k = Signal(signed(ab), name="row_k")      # row_oy + ky * row_stride
        col_ox = Signal(signed(ab), name="col_ox")    # (ox*s - pad) * chunks
        col_k = Signal(signed(ab), name="col_k")      # col_ox + kx * chunks
        col_init = Signal(signed(ab), name="col_init")
        init_count = Signal(2)
        issuing = Signal()

        iy, ix = iy0 + ky, ix0 + kx
        inside = (iy >= 0) & (iy < L.height) & (ix >= 0) & (ix < L.width)
        addr = row_k + col_k + ch
        first = (ky == 0) & (kx == 0) & (ch == 0)
        last_ch, last_kx, last_ky = ch == L.chunks - 1, kx == L.kernel - 1, ky == L.kernel - 1
        last_ox, last_oy = ox == L.out_w - 1, oy == L.out_h - 1
        last = last_ch & last_kx & last_ky

        # Stage 1: memory data for the vector issued the cycle before.
        valid1, pad1, first1, last1 = Signal(), Signal(), Signal(), Signal()
        both_ready = pot.i.ready & dsp.i.ready
        adv = ~valid1 | both_ready
        m.d.comb += [act_rd.en.eq(adv), w_rd.en.eq(adv),
                     act_rd.addr.eq(addr[:len(act_rd.addr)]), w_rd.addr.eq(step)]
        with m.If(adv):
            m.d.sync += [valid1.eq(issuing), pad1.eq(~inside), first1.eq(first),
                         last1.eq(last)]

        # Buffer lanes are lane_bits wide; activations into a conv are unsigned act_width.
        lb = lane_bits(cfg)
        act_vec = Signal(v * aw)
        m.d.comb += act_vec.eq(Mux(pad1, 0, Cat(*[act_rd.data[i * lb:i * lb + aw]
                                                  for i in range(v)])))
        pot_bits = 4 * v * cfg.pot_rows
        m.d.comb += [
            pot.i.valid.eq(valid1 & both_ready), dsp.i.valid.eq(valid1 & both_ready),
            pot.i.payload.act.eq(act_vec), dsp.i.payload.act.eq(act_vec),
            pot.i.payload.weight.eq(w_rd.data[:pot_bits]),
            dsp.i.payload.weight.eq(w_rd.data[pot_bits:]),
            pot.i.payload.first.eq(first1), pot.i.payload.last.eq(last1),
            dsp.i.payload.first.eq(first1), dsp.i.payload.last.eq(last1),
        ]
        if "fixed8" in cfg.weight_formats:
            m.d.comb += dsp.i.payload.fixed8.eq(L.fixed8)

        stride_rows = Mux(L.stride == 2, L.row_stride << 1, L.row_stride)
        stride_cols = Mux(L.stride == 2, L.chunks << 1, L.chunks)
        issue_done = Signal()
        with m.FSM(name="issue"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [oy.eq(0), ox.eq(0), ky.eq(0), kx.eq(0), ch.eq(0), step.eq(0),
                                 iy0.eq(-L.pad), ix0.eq(-L.pad), row_oy.eq(0), col_init.eq(0),
                                 init_count.eq(L.pad), issue_done.eq(0)]
                    m.next = "INIT"
            with m.State("INIT"):
                # -pad * row_stride and -pad * chunks by repeated subtraction (pad <= 3).
                with m.If(init_count != 0):
                    m.d.sync += [row_oy.eq(row_oy - L.row_stride),
                                 col_init.eq(col_init - L.chunks),
                                 init_count.eq(init_count - 1)]
                with m.Else():
                    m.d.sync += [row_k.eq(row_oy), col_ox.eq(col_init), col_k.eq(col_init)]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += issuing.eq(1)
                with m.If(adv):
                    m.d.sync += [ch.eq(ch + 1), step.eq(step + 1)]
                    with m.If(last_ch):
                        m.d.sync += [ch.eq(0), kx.eq(kx + 1), col_k.eq(col_k + L.chunks)]
                        with m.If(last_kx):
                            m.d.sync += [kx.eq(0), ky.eq(ky + 1), col_k.eq(col_ox),
                                         row_k.eq(row_k + L.row_stride)]
                            with m.If(last_ky):
                                m.d.sync += [ky.eq(0), step.eq(0), ox.eq(ox + 1),
                                             ix0.eq(ix0 + L.stride),
                                             col_ox.eq(col_ox + stride_cols),
                                             col_k.eq(col_ox + stride_cols), row_k.eq(row_oy)]
                                with m.If(last_ox):
                                    m.d.sync += [ox.eq(0), oy.eq(oy + 1),
                                                 iy0.eq(iy0 + L.stride), ix0.eq(-L.pad),
                                                 row_oy.eq(row_oy + stride_rows),
                                                 row_k.eq(row_oy + stride_rows),
                                                 col_ox.eq(col_init), col_k.eq(col_init)]
                                    with m.If(last_oy):
                                        m.d.sync += issue_done.eq(1)
                                        m.next = "IDLE"

        # ---- results: join both arrays, then one slot per cycle into PostProc --------------
        res = Signal(data.ArrayLayout(signed(cfg.acc_bits), self._slots))
        ser_busy = Signal()
        j = Signal(_bits(self._slots + 1))
        pixel = Signal(pix_bits)
        pixels_done = Signal(pix_bits + 1)
        take = pot.o.valid & dsp.o.valid & ~ser_busy
        m.d.comb += [pot.o.ready.eq(take), dsp.o.ready.eq(take)]
        with m.If(take):
            m.d.sync += [res.eq(Cat(pot.o.payload.as_value(), dsp.o.payload.as_value())),
                         ser_busy.eq(1), j.eq(0)]

        slot = slots[j]
        m.d.comb += [
            post.i.valid.eq(ser_busy & slot.valid),
            post.i.payload.acc[0].eq(res[j]),
            post.i.payload.bias[0].eq(slot.bias),
            post.i.payload.mult[0].eq(slot.mult),
            post.i.payload.shift[0].eq(slot.shift),
            post.i.payload.mode.eq(L.mode),
            post.i.payload.tag.eq(Cat(slot.channel, pixel)),
        ]
        with m.If(ser_busy & (~slot.valid | post.i.ready)):
            m.d.sync += j.eq(j + 1)
            with m.If(j == self._slots - 1):
                m.d.sync += [ser_busy.eq(0), pixel.eq(pixel + 1),
                             pixels_done.eq(pixels_done + 1)]

        m.d.comb += [
            self.o.valid.eq(post.o.valid), post.o.ready.eq(self.o.ready),
            self.o.payload.value.eq(post.o.payload.value[0]),
            self.o.payload.channel.eq(post.o.payload.tag[:ch_bits]),
            self.o.payload.pixel.eq(post.o.payload.tag[ch_bits:]),
        ]

        # ---- completion ---------------------------------------------------------------------
        inflight = Signal(4)
        fire_in = post.i.valid & post.i.ready
        fire_out = post.o.valid & post.o.ready
        m.d.sync += inflight.eq(inflight + fire_in - fire_out)
        total = Signal(len(pixels_done))
        with m.If(self.start):
            m.d.sync += [pixel.eq(0), pixels_done.eq(0)]
        # Output pixels of the pass, counted as the sequencer finishes each one.
        with m.If(self.start):
            m.d.sync += total.eq(0)
        with m.Elif(issuing & adv & last):
            m.d.sync += total.eq(total + 1)
        busy = Signal()
        finished = issue_done & (pixels_done == total) & ~ser_busy & (inflight == 0) & \
            ~pot.o.valid & ~dsp.o.valid
        with m.If(self.start):
            m.d.sync += busy.eq(1)
        with m.Elif(busy & finished & ~self.start):
            m.d.sync += busy.eq(0)
        m.d.comb += [self.busy.eq(busy), self.done.eq(busy & finished)]
        return m
