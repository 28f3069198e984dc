"""A functional emulator of the accelerator at the register and DDR level, in numpy.

It plays the role TVM VTA's ``fsim`` plays: the driver runs on it exactly as on the board.
On START it reads each descriptor and each conv pass block **from its DDR image** (never from
the model file), checks them as the engine does (error codes, window, alignment, sizes), and
computes with the integer contract (``quant.contract``), so a disagreement with the golden
model is a packing or planning bug, found without RTL. It models no time: ``CYCLES`` reads 0
(the compiled network carries the cycle model's estimate instead).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from quant import contract as C
from rtl.config import NIBBLE_BITS
from rtl.interface.ddr import (
    PASS_HEADER_WORDS,
    SLOT_WORDS,
    feature_map_words,
    pack_feature_map,
    pass_block_words,
    pass_word_order,
    row_words,
    stored_input,
    stored_input_words,
    unpack_feature_map,
    unpack_slot,
    word_bits,
)
from rtl.interface.descriptor import (
    ADDRESS_FIELDS,
    DESC_MAGIC,
    IN_BITS,
    MAX_KERNEL,
    MAX_PASSES,
    PIXEL_BITS,
    POOL_LEAD,
    POOL_TOP,
    Op,
    PostMode,
    descriptor_bytes,
    pooled_size,
    unpack_descriptor,
)
from rtl.interface.regmap import Access, ErrorCode
from rtl.interface.stem import unroll_columns

from .backend import Backend, DmaBuffer
from .package import BuildPackage

__all__ = ["EmuBackend", "EmuMemory", "check_descriptor", "execute_descriptor"]



class EmuMemory(DmaBuffer):
    """Plain memory standing in for a DMA buffer at bus address ``phys_addr``."""

    def __init__(self, size: int, phys_addr: int = 0x1000_0000) -> None:
        self.size, self.phys_addr = size, phys_addr
        self.data = bytearray(size)

    def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        self.data[offset:offset + len(data)] = data

    def read(self, offset: int, nbytes: int) -> bytes:
        self._check(offset, nbytes)
        return bytes(self.data[offset:offset + nbytes])


class _Fault(Exception):
    def __init__(self, code: ErrorCode) -> None:
        self.code = code


class _Bus:
    """The engine's view of DDR: bus addresses, the window, one 64-bit word per beat."""

    def __init__(self, memory: EmuMemory, base: int, size: int) -> None:
        self.memory, self.base, self.limit = memory, base, base + size

    def check(self, addr: int, nbytes: int) -> None:
        if addr % 8:
            raise _Fault(ErrorCode.MISALIGNED_ADDR)
        if nbytes == 0 or addr < self.base or addr + nbytes > self.limit:
            raise _Fault(ErrorCode.ADDR_OUT_OF_WINDOW)

    def read(self, addr: int, nbytes: int) -> bytes:
        off = addr - self.memory.phys_addr
        if off < 0 or off + nbytes > self.memory.size:
            raise _Fault(ErrorCode.AXI_RESPONSE)       # DECERR: nothing answers there
        return bytes(self.memory.data[off:off + nbytes])

    def write(self, addr: int, data: bytes) -> None:
        off = addr - self.memory.phys_addr
        if off < 0 or off + len(data) > self.memory.size:
            raise _Fault(ErrorCode.AXI_RESPONSE)
        self.memory.data[off:off + len(data)] = data

    def words(self, addr: int, count: int) -> np.ndarray:
        return np.frombuffer(self.read(addr, 8 * count), "<u8")


def _signed(bits: int, cfg) -> bool:
    return bits == cfg.act_bits + 1


def _mode_bits(mode: int, cfg) -> int:
    return {PostMode.RELU: cfg.act_bits, PostMode.SIGNED: cfg.act_bits + 1,
            PostMode.LOGITS: 32}.get(mode, -1)


def _check_shape(d: dict[str, int], cfg) -> None:
    """The engine's shape and size checks, in its order (``rtl.engine.check``)."""
    v, act, sgn = cfg.vec_len, cfg.act_bits, cfg.act_bits + 1
    op = d["op"]
    nonzero = d["in_h"] and d["in_w"] and d["in_c"] and d["out_c"]

    def window_geom() -> bool:
        kh, kw = d["kernel_h"], d["kernel_w"]
        if (d["stride"] not in (1, 2) or max(d["pad_top"], d["pad_bottom"]) > kh // 2
                or max(d["pad_left"], d["pad_right"]) > kw // 2):
            return False
        span_h = d["in_h"] + d["pad_top"] + d["pad_bottom"] - kh
        span_w = d["in_w"] + d["pad_left"] + d["pad_right"] - kw
        return (span_h >= 0 and span_w >= 0 and d["out_h"] == span_h // d["stride"] + 1
                and d["out_w"] == span_w // d["stride"] + 1)

    kernel_ok = 1 <= d["kernel_h"] <= MAX_KERNEL and 1 <= d["kernel_w"] <= MAX_KERNEL
    if op in (Op.CONV, Op.CONV_ADD):
        ok = (kernel_ok and window_geom() and d["mode"] <= PostMode.LOGITS
              and d["in_bits"] in (act, NIBBLE_BITS if cfg.split_input else 8)
              and d["out_bits"] == _mode_bits(d["mode"], cfg)
              and d["steps"] == cfg.steps((d["kernel_h"], d["kernel_w"]), d["in_c"])
              and 0 < d["passes"] <= MAX_PASSES)
        if op == Op.CONV_ADD:
            ok = ok and d["mode"] <= PostMode.SIGNED and d["in2_bits"] in (act, sgn)
    elif op == Op.ADD:
        ok = ((d["in_c"], d["in_h"], d["in_w"]) == (d["out_c"], d["out_h"], d["out_w"])
              and d["mode"] <= PostMode.SIGNED and d["out_bits"] == _mode_bits(d["mode"], cfg)
              and d["in_bits"] in (act, sgn) and d["in2_bits"] in (act, sgn))
    elif op == Op.MAXPOOL:
        ok = (kernel_ok and window_geom() and d["in_c"] == d["out_c"] and d["in_bits"] == act
              and d["out_bits"] == act)
    elif op == Op.AVGPOOL:
        ok = (d["in_c"] == d["out_c"] and d["out_h"] == 1 and d["out_w"] == 1
              and d["in_bits"] == act and d["out_bits"] == act)
    else:
        ok = False
    if d["pool"]:        # a max-pool in a ReLU conv's write-back, of at least one row
        ok = ok and (op == Op.CONV and d["mode"] == PostMode.RELU
                     and d["pool"] in (POOL_TOP, POOL_LEAD)
                     and _pooled_shape(d)[1] >= 1)
    if d["split"]:       # a first layer's pixels as nibbles, low and high chunks in turn
        ok = ok and (op == Op.CONV and cfg.split_input and d["split"] == 1
                     and d["in_bits"] == NIBBLE_BITS and cfg.chunks(d["in_c"]) % 2 == 0)
    if d["unroll"]:      # a pixel map whose neighbouring columns the engine unrolls
        ok = ok and (op in (Op.CONV, Op.CONV_ADD) and cfg.tap_lanes > 0 and d["unroll"] == 1
                     and d["in_c"] == v and d["in_bits"] == PIXEL_BITS and d["kernel_w"] == 1
                     and d["stride"] == 1 and d["pad_left"] == d["pad_right"] == 0)
    if d["magic"] != DESC_MAGIC or not nonzero or not ok:
        raise _Fault(ErrorCode.BAD_DESCRIPTOR)
    in_vecs = d["in_h"] * d["in_w"] * cfg.chunks(d["in_c"])
    out_vecs = d["out_h"] * d["out_w"] * cfg.chunks(d["out_c"])
    if (max(d["in_h"], d["in_w"]) > cfg.max_spatial
            or max(d["in_c"], d["out_c"]) > cfg.max_channels
            or in_vecs > cfg.act_buf_depth or out_vecs > cfg.out_buf_depth
            or (op in (Op.CONV, Op.CONV_ADD) and (d["steps"] > cfg.max_pass_rows
                                   or d["steps"] * v > cfg.max_reduction + v - 1))):
        raise _Fault(ErrorCode.LAYER_TOO_LARGE)


def _pooled_shape(d: dict[str, int]) -> tuple[int, int, int]:
    """(C, H, W) of the map a descriptor writes: its conv band max-pooled when ``pool``."""
    if not d["pool"]:
        return d["out_c"], d["out_h"], d["out_w"]
    return (d["out_c"], *pooled_size(d["out_h"], d["out_w"], d["pool"]))


def _pool_band(y: np.ndarray, pool: int) -> np.ndarray:
    """The max-pool (3 x 3, stride 2, zero padding) of a conv band ``y`` (C, H, W) of
    unsigned values: a zero column left and right, a zero row above at POOL_TOP, and the last
    window may reach one zero row below the band."""
    c, h, w = y.shape
    ph, pw = pooled_size(h, w, pool)
    top = int(pool == POOL_TOP)
    padded = np.zeros((c, 2 * ph + 1, 2 * pw + 1), y.dtype)   # the rows and columns read
    rows = min(h, 2 * ph + 1 - top)
    padded[:, top:top + rows, 1:1 + w] = y[:, :rows]           # 2 * pw >= w
    win = sliding_window_view(padded, (3, 3), axis=(1, 2))[:, ::2, ::2]
    return win.max(axis=(3, 4))


def _read_map(bus: _Bus, addr: int, shape: tuple[int, int, int], bits: int, cfg
              ) -> np.ndarray:
    words = bus.words(addr, feature_map_words(cfg, shape, bits))
    return unpack_feature_map(words, shape, bits, signed=_signed(bits, cfg), cfg=cfg)


def _decode_pass(block: np.ndarray, steps: int, kernel: tuple[int, int], in_c: int, cfg
                 ) -> list[tuple[int, int, int, int, np.ndarray]]:
    """(channel, bias, mult, shift, weight (in_c, kh, kw)) of every result slot of one pass
    block, decoded as the engine reads it; ``kernel`` is ``(kh, kw)``."""
    v, rows = cfg.vec_len, cfg.slots
    flags = int(block[0])
    if flags and "fixed8" not in cfg.weight_formats:
        raise _Fault(ErrorCode.UNSUPPORTED_FORMAT)
    wpr = row_words(cfg)
    first_row = PASS_HEADER_WORDS + SLOT_WORDS * rows
    row_ints = np.empty(steps * wpr, np.uint64)       # rows' words in DDR are in port order
    row_ints[pass_word_order(cfg, steps)] = block[first_row:first_row + steps * wpr]
    row_ints = row_ints.reshape(steps, wpr)
    # Nibble n of a weight row: word n // 16, bits 4 * (n % 16); rows hold (row * V + col).
    nib = (row_ints[:, :, None] >> (np.arange(16, dtype=np.uint64) * np.uint64(4))) & np.uint64(15)
    nib = nib.reshape(steps, -1)[:, :rows * v].reshape(steps, rows, v).astype(np.int64)
    lo4 = np.where(nib >= 8, nib - 16, nib)            # a Fixed-4 lane, or a Fixed-8 high half
    out = []
    for slot in range(rows):
        at = PASS_HEADER_WORDS + SLOT_WORDS * slot
        field = unpack_slot(block[at:at + SLOT_WORDS])
        if field is None:
            continue
        if slot < cfg.pot_rows:
            w = C.pot_decode(nib[:, slot])
        else:
            lane = slot - cfg.pot_rows
            if lane % 2 == 0 and (flags >> (lane // 2)) & 1:     # Fixed-8 on lanes 2k, 2k+1
                w = nib[:, slot] + 16 * lo4[:, slot + 1]
            else:
                w = lo4[:, slot]
        # steps run over (chunk, ky, kx), kx innermost; column = channel within the chunk
        w = w.reshape(-1, *kernel, v).transpose(0, 3, 1, 2).reshape(-1, *kernel)
        out.append((field["channel"], field["bias"], field["mult"], field["shift"], w[:in_c]))
    return out


def _windows(x: np.ndarray, d: dict[str, int]) -> np.ndarray:
    """(C, Ho, Wo, kh, kw) windows of the input padded per side."""
    x = np.pad(x, ((0, 0), (d["pad_top"], d["pad_bottom"]), (d["pad_left"], d["pad_right"])))
    s = d["stride"]
    win = sliding_window_view(x, (d["kernel_h"], d["kernel_w"]), axis=(1, 2))
    return win[:, ::s, ::s][:, :d["out_h"], :d["out_w"]]


def _conv(bus: _Bus, x: np.ndarray, d: dict[str, int], cfg) -> np.ndarray:
    k = (d["kernel_h"], d["kernel_w"])
    if d["split"]:       # the arrays take a high-nibble chunk's products times 16
        x = x << np.where(np.arange(d["in_c"]) // cfg.vec_len % 2, NIBBLE_BITS, 0)[:, None, None]
    win = _windows(x, d)                                         # (C, Ho, Wo, kh, kw)
    cols = win.transpose(1, 2, 0, 3, 4).reshape(d["out_h"] * d["out_w"], -1)
    out = np.zeros((d["out_c"], d["out_h"] * d["out_w"]), np.int64)
    block_words = pass_block_words(cfg, d["steps"])
    slots = []
    for p in range(d["passes"]):
        block = bus.words(d["weight_addr"] + 8 * p * block_words, block_words)
        slots += _decode_pass(block, d["steps"], k, d["in_c"], cfg)
    if not slots:
        return out.reshape(d["out_c"], d["out_h"], d["out_w"])
    channel = np.array([s[0] for s in slots])
    if channel.max() >= d["out_c"]:
        raise _Fault(ErrorCode.BAD_DESCRIPTOR)
    weights = np.stack([s[4] for s in slots]).reshape(len(slots), -1)
    acc = cols @ weights.T + np.array([s[1] for s in slots])        # (pixels, slots)
    mult = np.array([s[2] for s in slots])
    shift = np.array([s[3] for s in slots])
    mode = d["mode"]
    if mode == PostMode.LOGITS:
        res = C.logits(acc, mult, shift)
    else:
        res = C.activation(acc, mult, shift, mode == PostMode.RELU, cfg.act_bits)
    out[channel] = res.T
    return out.reshape(d["out_c"], d["out_h"], d["out_w"])


def check_descriptor(bus: _Bus, d: dict[str, int], cfg) -> None:
    """The engine's checks of a descriptor's fields, in its order (shape, size, alignment,
    window: ``rtl.engine.check``); raises ``_Fault`` with the engine's error code."""
    _check_shape(d, cfg)
    op = Op(d["op"])
    in_shape = (d["in_c"], d["in_h"], d["in_w"])
    out_shape = (d["out_c"], d["out_h"], d["out_w"])
    sizes = {"in_addr": 8 * stored_input_words(cfg, d),
             "out_addr": 8 * feature_map_words(cfg, _pooled_shape(d), d["out_bits"]),
             "weight_addr": 8 * d["passes"] * pass_block_words(cfg, d["steps"]),
             "in2_addr": 8 * feature_map_words(cfg, out_shape if op == Op.CONV_ADD else in_shape,
                                               d["in2_bits"])
             if d["in2_bits"] in IN_BITS else 0}
    for name in ADDRESS_FIELDS[op]:
        if d[name] % 8:
            raise _Fault(ErrorCode.MISALIGNED_ADDR)
    for name in ADDRESS_FIELDS[op]:
        bus.check(d[name], sizes[name])


def execute_descriptor(bus: _Bus, raw: bytes, cfg) -> None:
    """Check and run one descriptor; raises ``_Fault`` with the engine's error code."""
    d = unpack_descriptor(raw)
    check_descriptor(bus, d, cfg)
    op = Op(d["op"])
    in_shape = (d["in_c"], d["in_h"], d["in_w"])
    out_shape = (d["out_c"], d["out_h"], d["out_w"])
    x = _read_map(bus, d["in_addr"], stored_input(cfg, d), d["in_bits"], cfg)
    if d["unroll"]:
        x = unroll_columns(x, cfg.unroll_taps)
    if op == Op.CONV:
        y = _conv(bus, x, d, cfg)
        if d["pool"]:                # the band's max-pool is written instead of the band
            y = _pool_band(y, d["pool"])
    elif op == Op.CONV_ADD:       # the conv's signed result, then the residual add
        a = _conv(bus, x, {**d, "mode": PostMode.SIGNED}, cfg)
        b = _read_map(bus, d["in2_addr"], out_shape, d["in2_bits"], cfg)
        y = C.residual_add(a, b, d["mult_a"], d["shift_a"], d["mult_b"], d["shift_b"],
                           d["mode"] == PostMode.RELU, cfg.act_bits)
    elif op == Op.ADD:
        b = _read_map(bus, d["in2_addr"], in_shape, d["in2_bits"], cfg)
        y = C.residual_add(x, b, d["mult_a"], d["shift_a"], d["mult_b"], d["shift_b"],
                           d["mode"] == PostMode.RELU, cfg.act_bits)
    elif op == Op.MAXPOOL:
        y = _windows(x, d).max(axis=(3, 4))             # zero padding never beats a u-value
    else:
        total = x.sum(axis=(1, 2), keepdims=True)
        y = C.avgpool_requant(total, d["mult_a"], d["shift_a"], cfg.act_bits)
    words = pack_feature_map(y, d["out_bits"], signed=d["out_bits"] != cfg.act_bits, cfg=cfg)
    bus.write(d["out_addr"], words.astype("<u8").tobytes())


class EmuBackend(Backend):
    """The emulator behind the driver's backend interface.

    Parameters
    ----------
    package : BuildPackage
        The build it emulates: its config and register map (constants such as ID).
    memory_size : int
        Bytes of the emulated DMA buffer.
    phys_addr : int
        Its bus address.
    clock_mhz : float or None
        The clock to report as running (default: the build's).
    hang_at : int or None
        For tests of the driver's timeout path: the descriptor index (counted over every
        START) at which the emulated engine stops making progress until a soft reset.
    """

    name = "emu"
    min_timeout_s = 0.0

    def __init__(self, package: BuildPackage, *, memory_size: int = 1 << 26,
                 phys_addr: int = 0x1000_0000, clock_mhz: float | None = None,
                 hang_at: int | None = None) -> None:
        self.package, self.cfg, self.regmap = package, package.cfg, package.regmap
        word_bits(self.cfg)
        self._memory = EmuMemory(memory_size, phys_addr)
        self._clock = float(clock_mhz if clock_mhz is not None else package.clock_mhz)
        self._regs = {off: reg.reset for off, reg in self.regmap.items()}
        self._hang_at, self._executed, self._hung = hang_at, 0, False
        self._time = 0.0

    @property
    def memory(self) -> EmuMemory:
        return self._memory

    @property
    def clock_mhz(self) -> float:
        return self._clock

    def _reg(self, name: str) -> int:
        return self._regs[self.regmap.offset(name)]

    def _set(self, name: str, value: int) -> None:
        self._regs[self.regmap.offset(name)] = value

    async def read_reg(self, offset: int) -> int:
        reg = self.regmap.at(offset)
        if reg is None or offset % 4 or reg.access is Access.WO:
            return 0
        return self._regs[offset]

    async def write_reg(self, offset: int, value: int) -> None:
        reg = self.regmap.at(offset)
        if reg is None or offset % 4:
            return
        value &= (1 << reg.width) - 1
        if reg.access is Access.RW:
            self._regs[offset] = value
        elif reg.access is Access.W1C:
            self._regs[offset] &= ~value
        elif reg.access is Access.WO and reg.name == "CTRL":
            bits = reg.unpack(value)
            if bits["soft_reset"] and self._hung:
                self._finish(ErrorCode.ABORTED, self._reg("DESC_DONE"))
            if bits["start"] and not self._hung:
                self._run()

    def _status(self, *, busy: bool, done: bool, code: ErrorCode) -> None:
        status = self.regmap["STATUS"]
        self._set("STATUS", status.pack({"busy": int(busy), "done": int(done),
                                         "error": int(code != ErrorCode.NONE)}))
        self._set("ERROR_CODE", int(code))

    def _finish(self, code: ErrorCode, done_count: int) -> None:
        self._hung = False
        self._status(busy=False, done=True, code=code)
        self._set("DESC_DONE", done_count)
        irq = self.regmap["IRQ_STATUS"].pack({"done": 1, "error": int(code != ErrorCode.NONE)})
        self._set("IRQ_STATUS", self._reg("IRQ_STATUS") | irq)

    def _run(self) -> None:
        count, addr = self._reg("DESC_COUNT"), self._reg("DESC_ADDR")
        self._set("CYCLES_LO", 0)
        self._set("CYCLES_HI", 0)
        self._set("STALL_CYCLES", 0)
        if count == 0:
            self._finish(ErrorCode.BAD_DESCRIPTOR, 0)
            return
        bus = _Bus(self._memory, self._reg("WINDOW_BASE"), self._reg("WINDOW_SIZE"))
        dbytes = descriptor_bytes()
        for i in range(count):
            if self._hang_at is not None and self._executed == self._hang_at:
                self._hung = True
                self._set("DESC_DONE", i)
                self._status(busy=True, done=False, code=ErrorCode.NONE)
                self._executed += 1
                return
            self._executed += 1
            try:
                bus.check(addr + i * dbytes, dbytes)
                execute_descriptor(bus, bus.read(addr + i * dbytes, dbytes), self.cfg)
            except _Fault as fault:
                self._finish(fault.code, i)
                return
        self._finish(ErrorCode.NONE, count)

    async def sleep(self, seconds: float) -> None:
        self._time += seconds       # emulated time: a hung run times out without waiting

    def now(self) -> float:
        return self._time
