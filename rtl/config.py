"""The one hardware configuration: every parameter of the accelerator, validated, with JSON I/O."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .boards import BOARDS, PARTS

__all__ = ["PRESETS", "WEIGHT_FORMATS", "HwConfig", "preset", "preset_names", "preset_table"]

#: Weight formats the hardware can be built to support, and their weight bit widths.
WEIGHT_FORMATS: dict[str, int] = {"pot4": 4, "fixed4": 4, "fixed8": 8}

#: Lower bounds of what the compute arrays cost in LUTs, below every Yosys ``synth_xilinx``
#: figure of the arrays (docs/arrays.md: 35.5 to 36.8 LUTs per PoT MAC, 13.1 to 21.2 per DSP
#: lane; ``tests/test_config.py`` synthesizes both arrays to keep these floors honest). A config
#: whose arrays alone need more LUTs, DSP48E1 or block RAM than its part has is refused at once,
#: before anything is elaborated.
ARRAY_LUT_FLOOR: dict[str, int] = {"pot_mac": 20, "dsp_lane": 10}
#: Bits of one RAMB36E1.
BRAM36_BITS = 36 * 1024

#: Signed width of the DSP48E1 pre-adder/multiplier operand (ports A and D, UG479).
DSP_A_BITS = 25
#: Width of one DSP lane weight (a Fixed-4 value, or one nibble of a Fixed-8 weight).
LANE_BITS = 4
#: Width of the pieces a ``split_input`` build's first-layer pixels are cut into: a pixel is
#: ``2**NIBBLE_BITS * hi + lo`` (``rtl.interface.stem.split_pixels``).
NIBBLE_BITS = 4
#: Largest |lane weight| the multiplier sees: a Fixed-8 pair's high lane carries
#: ``hi + lo[3]`` in [-8, 8] (``rtl.dsp_array.DspArray``), so lanes are packed as 5-bit values.
LANE_ABS_MAX = 8
#: Most lanes one DSP48E1 may carry (``HwConfig.dsp_pack``'s largest value).
PACK_MAX = 4


class PartTooSmallError(ValueError):
    """The arrays and buffers of a config need more of a resource than its part has."""


#: AXI data widths the engine's DDR layouts are built for (``rtl.interface.ddr``: 64-bit words).
_AXI_DATA_WIDTHS = (64,)
_ACT_BITS = (4, 5)


@dataclass(frozen=True, kw_only=True)
class HwConfig:
    """Hardware parameters of one accelerator build.

    Every field is checked when the object is made; derived values are properties, so nothing
    is stored twice. Both arrays receive the same activation vector each cycle, so their
    column counts (the vector length) must agree.
    """

    #: Short name of the configuration, used in build directory names. Example: ``"zc706"``.
    name: str
    #: Xilinx part, as Vivado spells it. Example: ``"xc7z045ffg900-2"``.
    part: str
    #: Target fabric clock in MHz. Example: ``150.0``.
    clock_mhz: float
    #: Width of unsigned activations in bits (4 or 5). Example: ``4``.
    act_bits: int = 4
    #: Width of the unsigned first-layer input (image pixels) in bits. Example: ``8``.
    input_bits: int = 8
    #: The first layer's pixels reach the arrays as 4-bit nibbles, ``x = 16 hi + lo``, the
    #: high nibbles in reduction steps of their own that the accumulators take times 16
    #: (docs/arrays.md), so that the arrays and the act buffer are only ``act_bits`` wide
    #: (cheaper PoT MACs, four lanes per DSP48E1). Example: ``True``.
    split_input: bool = False
    #: Weight formats the arrays implement. Example: ``("pot4", "fixed4", "fixed8")``.
    weight_formats: tuple[str, ...] = ("pot4", "fixed4", "fixed8")
    #: PoT filters computed in parallel by the LUT shift-add array. Example: ``24``.
    pot_rows: int
    #: Activations per cycle into the PoT array (a dot-product slice). Example: ``16``.
    pot_cols: int
    #: Fixed-point 4-bit lanes (filters) of the DSP array. Example: ``18``.
    dsp_rows: int
    #: Activations per cycle into the DSP array; equals ``pot_cols``. Example: ``16``.
    dsp_cols: int
    #: 4-bit lanes (products) packed into one DSP48E1 per column, 1 to 4; at most
    #: :attr:`dsp_max_pack` (3 with 8-bit first-layer pixels, 4 with 4-bit inputs). Example: ``3``.
    dsp_pack: int = 2
    #: 4-bit DSP lanes one Fixed-8 filter occupies: 2 (its low and high nibble). Example: ``2``.
    fixed8_lanes: int = 2
    #: Longest dot product (input channels x kernel taps) a layer may have. Example: ``4608``.
    max_reduction: int = 4608
    #: Largest channel count of any layer. Example: ``2048``.
    max_channels: int = 2048
    #: Largest feature-map height or width. Example: ``1024``.
    max_spatial: int = 1024
    #: Depth of the activation (input tile) buffer, in activation vectors. Example: ``4096``.
    act_buf_depth: int = 4096
    #: Depth of each of the two (double-buffered) weight buffers, in weight rows. A pass of
    #: more rows than that, up to both banks' (:attr:`max_pass_rows`), spans the two banks
    #: and runs without the next pass loading beside it. Example: ``1024``.
    weight_buf_depth: int = 1024
    #: Depth of the output buffer, in output vectors. Example: ``2048``.
    out_buf_depth: int = 2048
    #: Conv results requantized and written to the output buffer per cycle (a power of two;
    #: each lane costs one requantization multiplier; beyond ``vec_len`` it gains nothing, as
    #: one beat writes distinct output-buffer lanes). Example: ``4``.
    result_lanes: int = 1
    #: Most vector lanes the residual adder (``rtl.vector_units.AddUnit``) requantizes per
    #: cycle, a power of two (:attr:`add_lanes`: at most ``vec_len``; a vector's lanes come in
    #: ``vec_len / add_lanes`` groups, one a cycle). Each lane costs two small multipliers (two
    #: DSP48E1). 16 is what one 64-bit bus word brings of the narrowest second input (4-bit
    #: elements), so a standalone add's vectors take the adder no longer than their second
    #: input takes to come; a conv-add (all of ResNet-18's residual adds) produces its vectors
    #: slower than even a few lanes a cycle add them. Example: ``16``.
    adder_lanes: int = 16
    #: Data width of the AXI4 masters to DDR (Zynq HP ports) in bits: 64, the width the DDR
    #: layouts are built for. Example: ``64``.
    axi_data_width: int = 64
    #: Address width of the AXI4 master in bits. Example: ``32``.
    axi_addr_width: int = 32
    #: AXI4 masters that only load conv weights, each for its own HP port, besides the master
    #: for descriptors and feature maps (1 to 3: a Zynq-7000 has four HP ports). The weight
    #: rows of a pass are cut into a segment per port (``rtl.interface.ddr.pass_word_order``),
    #: so they load a pass ``weight_ports`` words a cycle. Example: ``3``.
    weight_ports: int = 1
    #: Taps of the engine's column unroller (0: none; else a power of two from 2 to
    #: ``vec_len``): a conv with ``unroll`` set reads a pixel map of ``vec_len / unroll_taps``
    #: channels and computes on ``unroll_taps`` neighbouring pixels of a row side by side in
    #: one vector (``rtl.engine.unpack.Unroller``), so that the folded stem's ``k' x 1``
    #: kernel reads each pixel once instead of ``k'`` times (``rtl.interface.stem``). Not
    #: built on a ``split_input`` build (:attr:`tap_lanes`). Example: ``4``.
    unroll_taps: int = 0

    def __post_init__(self) -> None:
        _check_type("name", self.name, str)
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ValueError(
                f"HwConfig.name must be a non-empty string of letters, digits, '-' and '_', "
                f"not {self.name!r}")
        _check_type("part", self.part, str)
        if self.part not in PARTS:
            raise ValueError(
                f"HwConfig.part must be one of {', '.join(sorted(PARTS))}, not {self.part!r}")
        if isinstance(self.clock_mhz, bool) or not isinstance(self.clock_mhz, (int, float)):
            raise TypeError(f"HwConfig.clock_mhz must be a number, not {self.clock_mhz!r}")
        if not 10.0 <= self.clock_mhz <= 500.0:
            raise ValueError(
                f"HwConfig.clock_mhz must be between 10 and 500 MHz, not {self.clock_mhz!r}")
        # One spelling per value: 100 and 100.0 are the same clock, so the same hash.
        object.__setattr__(self, "clock_mhz", float(self.clock_mhz))
        _check_int("act_bits", self.act_bits, choices=_ACT_BITS)
        _check_int("input_bits", self.input_bits, lo=self.act_bits, hi=8)
        _check_type("split_input", self.split_input, bool)
        if not isinstance(self.weight_formats, (tuple, list)):
            raise TypeError(
                f"HwConfig.weight_formats must be a tuple of format names, not "
                f"{self.weight_formats!r}")
        for fmt in self.weight_formats:
            if fmt not in WEIGHT_FORMATS:
                raise ValueError(
                    f"HwConfig.weight_formats holds unknown format {fmt!r}; allowed: "
                    f"{', '.join(WEIGHT_FORMATS)}")
        if len(set(self.weight_formats)) != len(self.weight_formats) or not self.weight_formats:
            raise ValueError(
                f"HwConfig.weight_formats must list each format at most once and not be empty, "
                f"not {tuple(self.weight_formats)!r}")
        # A list from JSON becomes the canonical tuple, in the canonical order.
        object.__setattr__(self, "weight_formats",
                           tuple(f for f in WEIGHT_FORMATS if f in self.weight_formats))
        for name in ("pot_rows", "dsp_rows"):
            if getattr(self, name) == 0:
                raise ValueError(f"HwConfig.{name} must be at least 1: the engine builds both "
                                 f"arrays (a ratio may still leave one idle), not 0")
        _check_int("pot_rows", self.pot_rows, lo=1, hi=1024)
        _check_int("pot_cols", self.pot_cols, lo=1, hi=256)
        _check_int("dsp_rows", self.dsp_rows, lo=1, hi=1024)
        _check_int("dsp_cols", self.dsp_cols, lo=1, hi=256)
        if self.pot_cols & (self.pot_cols - 1):
            raise ValueError(f"HwConfig.pot_cols (the vector length) must be a power of two: "
                             f"a channel's lane is its low bits, not {self.pot_cols!r}")
        _check_int("dsp_pack", self.dsp_pack, choices=tuple(range(1, PACK_MAX + 1)))
        _check_int("fixed8_lanes", self.fixed8_lanes, choices=(2,))
        _check_int("max_reduction", self.max_reduction, lo=1, hi=1 << 20)
        _check_int("max_channels", self.max_channels, lo=1, hi=1 << 16)
        _check_int("max_spatial", self.max_spatial, lo=1, hi=1 << 14)
        for name in ("act_buf_depth", "weight_buf_depth", "out_buf_depth"):
            _check_int(name, getattr(self, name), lo=16, hi=1 << 20)
            if getattr(self, name) & (getattr(self, name) - 1):
                raise ValueError(
                    f"HwConfig.{name} must be a power of two (BRAM depth), not "
                    f"{getattr(self, name)!r}")
        _check_int("result_lanes", self.result_lanes, choices=(1, 2, 4, 8, 16, 32, 64))
        _check_int("adder_lanes", self.adder_lanes, choices=(1, 2, 4, 8, 16, 32, 64))
        if self.axi_data_width not in _AXI_DATA_WIDTHS:
            _check_int("axi_data_width", self.axi_data_width, lo=1, hi=1 << 10)
            raise ValueError(f"HwConfig.axi_data_width must be 64 (the DDR layouts are built "
                             f"from 64-bit words), not {self.axi_data_width!r}")
        _check_int("axi_addr_width", self.axi_addr_width, lo=16, hi=32)
        _check_int("weight_ports", self.weight_ports, lo=1, hi=3)
        _check_int("unroll_taps", self.unroll_taps, lo=0, hi=self.pot_cols)
        if self.unroll_taps and (self.unroll_taps < 2
                                 or self.unroll_taps & (self.unroll_taps - 1)):
            raise ValueError(f"HwConfig.unroll_taps must be 0 or a power of two from 2 to the "
                             f"vector length {self.pot_cols}, not {self.unroll_taps!r}")

        # Parts that must agree with each other.
        if self.pot_cols != self.dsp_cols:
            raise ValueError(
                f"HwConfig.pot_cols ({self.pot_cols}) and HwConfig.dsp_cols ({self.dsp_cols}) "
                f"must be equal: both arrays take the same activation vector each cycle")
        if self.out_buf_depth > self.act_buf_depth:
            raise ValueError(
                f"HwConfig.out_buf_depth ({self.out_buf_depth}) must be at most act_buf_depth "
                f"({self.act_buf_depth}): the write-back's max-pool walks the out buffer with "
                f"the act buffer's window generator")
        if self.dsp_pack > self.dsp_max_pack:
            raise ValueError(
                f"HwConfig.dsp_pack must be at most {self.dsp_max_pack} with "
                f"{self.array_bits}-bit array inputs (the top lane must end "
                f"within the DSP48E1's {DSP_A_BITS}-bit operand), not {self.dsp_pack}")
        if self.dsp_pack == 2 and self.dsp_rows % 2:
            raise ValueError(
                f"HwConfig.dsp_rows must be even when dsp_pack is 2 (two filters share a DSP48E1), "
                f"not {self.dsp_rows}")
        if "fixed8" in self.weight_formats and self.dsp_rows < self.fixed8_lanes:
            raise ValueError(
                f"HwConfig.dsp_rows ({self.dsp_rows}) is smaller than fixed8_lanes "
                f"({self.fixed8_lanes}): a Fixed-8 filter would not fit the DSP array")
        self._check_part()
        if self.acc_bits > 32:
            raise ValueError(
                f"HwConfig.max_reduction {self.max_reduction} needs a {self.acc_bits}-bit "
                f"accumulator; at most 32 bits are supported (accumulators and biases are 32-bit "
                f"words in memory); lower max_reduction")

    def _check_part(self) -> None:
        res = PARTS[self.part].resources()
        # Buffers: act and out buffers, two weight banks (the narrowest element widths).
        buffer_bits = (self.vec_len * (self.act_bits + 1) * self.act_buf_depth
                       + self.vec_len * 32 * self.out_buf_depth
                       + 2 * 4 * self.vec_len * self.slots
                       * self.weight_buf_depth)
        floors = (
            ("LUT", "lut", ARRAY_LUT_FLOOR["pot_mac"] * self.pot_macs
             + ARRAY_LUT_FLOOR["dsp_lane"] * self.dsp_lanes,
             f"{ARRAY_LUT_FLOOR['pot_mac']} per PoT MAC and {ARRAY_LUT_FLOOR['dsp_lane']} per DSP "
             f"lane at least", "pot_rows, dsp_rows or the columns"),
            ("DSP48E1", "dsp", self.dsp_count, f"one per {self.dsp_pack} DSP lanes and column",
             "dsp_rows or dsp_cols, or raise dsp_pack"),
            ("BRAM36", "bram36", -(-buffer_bits // BRAM36_BITS),
             "act, out and two weight buffers at least", "the buffer depths"),
        )
        for label, key, need, how, fix in floors:
            if need > res[key]:
                raise PartTooSmallError(
                    f"config {self.name!r} does not fit {self.part}: its arrays and buffers "
                    f"alone need {need:,} {label} ({how}), the part has {res[key]:,}; reduce "
                    f"{fix}")

    # ---- derived values -----------------------------------------------------------------------

    @property
    def vec_len(self) -> int:
        """Activations per cycle, shared by both arrays."""
        return self.pot_cols

    @property
    def tap_lanes(self) -> int:
        """Lanes of one unrolled tap (``vec_len / unroll_taps``): the channels of the pixel map
        an ``unroll`` conv reads. 0 where the engine has no unroller: ``unroll_taps`` 0, or a
        ``split_input`` build, whose pixels come as nibbles, not the 8-bit pixels it takes."""
        return self.vec_len // self.unroll_taps if self.unroll_taps and not self.split_input \
            else 0

    @property
    def add_lanes(self) -> int:
        """Lanes the residual adder (``rtl.vector_units.AddUnit``) requantizes per cycle:
        :attr:`adder_lanes`, at most the vector's (pynq-z2's 16 lanes in one cycle, zc706's 64
        in four groups of 16)."""
        return min(self.vec_len, self.adder_lanes)

    @property
    def pot_macs(self) -> int:
        """PoT multiply-accumulates per cycle (shift-add units in LUT fabric)."""
        return self.pot_rows * self.pot_cols

    @property
    def dsp_lanes(self) -> int:
        """Fixed-4 multiply-accumulate lanes per cycle on the DSP array."""
        return self.dsp_rows * self.dsp_cols

    @property
    def dsp_count(self) -> int:
        """DSP48E1 slices used for the array's multiplications: one per ``dsp_pack`` lanes (the
        last DSP row may hold fewer) and column."""
        return math.ceil(self.dsp_rows / self.dsp_pack) * self.dsp_cols

    @property
    def weight_bits_max(self) -> int:
        """Widest weight the hardware supports, in bits."""
        return max(WEIGHT_FORMATS[f] for f in self.weight_formats)

    @property
    def max_abs_weight(self) -> int:
        """Largest weight magnitude of any supported format (|-128| for Fixed-8)."""
        from quant.contract import max_abs_weight
        return max(max_abs_weight(f) for f in self.weight_formats)

    @property
    def max_activation(self) -> int:
        """Largest unsigned input value of any layer (first-layer pixels included): what a dot
        product multiplies, whether or not the pixels reach the arrays whole."""
        return (1 << max(self.act_bits, self.input_bits)) - 1

    @property
    def array_bits(self) -> int:
        """Width of the unsigned activations on the array inputs: ``act_bits`` when the
        pixels arrive as nibbles (:attr:`split_input`), else wide enough for them too."""
        return self.act_bits if self.split_input else max(self.act_bits, self.input_bits)

    @property
    def max_array_input(self) -> int:
        """Largest unsigned value on an array input (a pixel, or a pixel's nibble)."""
        return (1 << self.array_bits) - 1

    @property
    def buffer_lane_bits(self) -> int:
        """Width of one element in an act-buffer word: two's complement, wide enough for the
        array inputs and for signed ``s{act_bits+1}`` values (8 for 8-bit pixels, 5 when they
        arrive as nibbles)."""
        return max(self.array_bits, self.act_bits + 1)

    @property
    def dsp_lane_field(self) -> int:
        """Bits ``f`` between neighbouring lanes of a packed DSP48E1 product.

        A lane's product ``p = a * w`` (``a <= max_array_input``, ``|w| <= 8``) plus the borrow
        ``q`` in [-2, 1] it receives from the lane below must have ``floor((p + q) / 2**f)`` in
        [-2, 1] (the four values a 2-bit canary tells apart): ``2**(f + 1) >= 8 * a_max + 2``.
        """
        need = LANE_ABS_MAX * self.max_array_input + 2
        return (need - 1).bit_length() - 1

    @property
    def dsp_max_pack(self) -> int:
        """Most lanes per DSP48E1 for this activation width: the top lane's 5-bit weight must
        end within the 25-bit operand, so ``(n - 1) * f + 5 <= 25``."""
        return min(PACK_MAX, 1 + (DSP_A_BITS - (LANE_BITS + 1)) // self.dsp_lane_field)

    @property
    def slots(self) -> int:
        """Filters one pass computes: one result slot per PoT row and per DSP lane (PoT first)."""
        return self.pot_rows + self.dsp_rows

    @property
    def result_groups(self) -> int:
        """Cycles an output pixel's results take to leave the conv core, ``result_lanes`` a
        cycle."""
        return -(-self.slots // self.result_lanes)

    def chunks(self, channels: int) -> int:
        """``vec_len``-element vectors that hold ``channels`` channels of one pixel."""
        return -(-channels // self.vec_len)

    def steps(self, kernel: int | tuple[int, int], channels: int) -> int:
        """Activation vectors of one dot product: every kernel tap of every chunk.
        ``kernel``: the side of a square kernel, or its ``(height, width)``."""
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        return kh * kw * self.chunks(channels)

    @property
    def max_pass_rows(self) -> int:
        """Most weight rows (steps) of one pass: both banks'. A pass of at most
        ``weight_buf_depth`` rows fills one bank while the core runs the other's; a longer one
        (a *long pass*) spans both, so the next pass loads only once it has run
        (docs/engine.md, "Long passes")."""
        return 2 * self.weight_buf_depth

    def long_pass(self, steps: int) -> bool:
        """Whether a pass of ``steps`` weight rows spans both weight banks."""
        return steps > self.weight_buf_depth

    def pass_rows_problem(self, steps: int) -> str | None:
        """Why a pass of ``steps`` weight rows does not fit the weight banks (the engine's
        check refuses its descriptor), or None when it does."""
        if steps <= self.max_pass_rows:
            return None
        return (f"a pass needs {steps} weight rows, the two weight banks hold "
                f"{self.max_pass_rows} (2 x weight_buf_depth {self.weight_buf_depth}); raise "
                f"weight_buf_depth to {1 << (-(-steps // 2) - 1).bit_length()} or widen the "
                f"vectors")

    @property
    def max_chunks(self) -> int:
        """Chunks of the widest layer (``max_channels``)."""
        return self.chunks(self.max_channels)

    @property
    def max_abs_dot(self) -> int:
        """Largest |dot product| any legal layer can produce: every product at its extreme."""
        return self.max_reduction * self.max_abs_weight * self.max_activation

    @property
    def acc_bits(self) -> int:
        """Signed accumulator width that holds ``bias + dot`` for any legal layer, and the
        average pool's sum of a full act buffer.

        The bias is limited to ``|bias| <= max_abs_dot`` (checked when a model is matched to
        the hardware), so ``|bias + dot| <= 2 * max_abs_dot`` and one more bit holds the sign.
        The average pool sums up to ``act_buf_depth`` buffer elements into the same
        requantization stage.
        """
        avg_sum = ((1 << self.buffer_lane_bits) - 1) * self.act_buf_depth
        return max(2 * self.max_abs_dot, avg_sum).bit_length() + 1

    @property
    def clock_period_ns(self) -> float:
        return 1000.0 / self.clock_mhz

    @property
    def resources(self) -> dict[str, int]:
        """Resources of the configured part (LUT, FF, DSP48E1, RAMB36E1)."""
        return PARTS[self.part].resources()

    @property
    def config_hash(self) -> int:
        """A stable 32-bit identity of this configuration (for the hardware identity register)."""
        digest = hashlib.sha256(self.to_json(indent=None).encode()).digest()
        return int.from_bytes(digest[:4], "big")

    @property
    def config_hash_hex(self) -> str:
        return f"{self.config_hash:08x}"

    # ---- JSON -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["weight_formats"] = list(self.weight_formats)
        return d

    def to_json(self, indent: int | None = 2) -> str:
        if indent is None:
            return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> HwConfig:
        if not isinstance(data, dict):
            raise TypeError(f"HwConfig JSON must be an object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"HwConfig has no field {unknown[0]!r}; known fields: {', '.join(sorted(known))}")
        missing = sorted(f.name for f in fields(cls)
                         if f.name not in data and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if missing:
            raise ValueError(f"HwConfig is missing required field {missing[0]!r}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> HwConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"HwConfig JSON is malformed: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> HwConfig:
        """Read a HwConfig JSON file; errors name the file."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"cannot read HwConfig file {str(path)!r}: {exc.strerror}") from None
        try:
            return cls.from_json(text)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{path}: {exc}") from None

    def replace(self, **changes: Any) -> HwConfig:
        return dataclasses.replace(self, **changes)


def _check_type(name: str, value: Any, typ: type) -> None:
    if not isinstance(value, typ):
        raise TypeError(f"HwConfig.{name} must be a {typ.__name__}, not {value!r}")


def _check_int(name: str, value: Any, *, lo: int | None = None, hi: int | None = None,
               choices: tuple[int, ...] | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"HwConfig.{name} must be an integer, not {value!r}")
    if choices is not None and value not in choices:
        raise ValueError(
            f"HwConfig.{name} must be one of {', '.join(map(str, choices))}, not {value!r}")
    if lo is not None and hi is not None and not lo <= value <= hi:
        raise ValueError(f"HwConfig.{name} must be between {lo} and {hi}, not {value!r}")


# Out buffers: 2048 vectors on pynq-z2 hold layer4's 7 x 7 x 512 output (1568 vectors), so
# layer4 runs as one tile; layer3's 14 x 14 x 256 (3136 vectors) would need 4096, 32 BRAM36
# more in 16 lanes of 32 bits, past the XC7Z020's 140, so it runs as 2 tiles. zc706's 2048
# (64-lane vectors) hold layer3 and layer4 whole.
# Array shapes are the design-space search's choices (``python -m rtl.build.dse``, docs/dse.md)
# at each board's paper ratio, on Yosys figures of builds of the part: the rows sit at pass
# steps of ResNet-18's conv layers. zc706 at 65:30:5: 64 columns, 42 PoT rows (the 42 / 83 /
# 166 / 333 PoT-4 filters of the 64- to 512-filter layers in 1 / 2 / 4 / 8 passes) and 26 DSP
# lanes (19 Fixed-4 + an alignment lane + 3 Fixed-8 pairs of a 64-filter layer in one pass):
# 7.05 ms modelled (one chain), against 8.95 ms for 32 columns with 52 rows and 32 lanes,
# which ran the 64-filter layers in one pass with 80 % of their rows busy but the 56x56 maps
# in two chunks.
# pynq-z2 at 60:35:5: 39 PoT rows (the 38 / 77 / 154 / 307 PoT-4 filters of the 64- to
# 512-filter layers in 1 / 2 / 4 / 8 passes) and 30 DSP lanes (their Fixed-4 lanes and
# Fixed-8 pairs likewise, with room for the pairs' alignment), on 4-bit arrays
# (``split_input``: the stem's pixels as nibbles, four lanes per DSP48E1: 30 lanes take the
# 128 DSP48E1 that 29 do) with two weight ports and 4 adder lanes: 19.34 ms modelled at
# 125 MHz (29 lanes: 19.89), against 25.96 ms for the 26 + 20 layout on 8-bit arrays
# before. Its weight banks are 256 rows deep, all the BRAM allows for 68 rows (layer4's
# 288-row passes span both: long passes), and its act buffer 8192 vectors, so that the
# split stem's host-unrolled 4 x 1 fold (24 steps a pixel instead of 32) keeps its one-row
# band within half of it (docs/dse.md, "20 ms on the XC7Z020").
# Clocks (docs/engine.md, "Timing"): the fastest the timing estimate of every part supports
# and the board makes. pynq-z2: 125 MHz, FCLK0 straight from the PS's 1000 MHz IO PLL (/ 8
# / 1; the next, 1000/7 = 142.9 MHz, is past the estimate); zc706: 150 MHz from an MMCM.
PRESETS: dict[str, HwConfig] = {
    cfg.name: cfg for cfg in (
        HwConfig(name="pynq-z2", part=BOARDS["pynq-z2"].part.name, clock_mhz=125.0,
                 split_input=True, pot_rows=39, pot_cols=16, dsp_rows=30, dsp_cols=16,
                 dsp_pack=4, act_buf_depth=8192, weight_buf_depth=256, out_buf_depth=2048,
                 result_lanes=4, adder_lanes=4, weight_ports=2),
        HwConfig(name="zc706", part=BOARDS["zc706"].part.name, clock_mhz=150.0,
                 pot_rows=42, pot_cols=64, dsp_rows=26, dsp_cols=64, dsp_pack=3,
                 act_buf_depth=4096, weight_buf_depth=256, out_buf_depth=2048,
                 result_lanes=16, weight_ports=3, unroll_taps=4),
    )
}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def preset_table() -> str:
    """The presets as the README's markdown table (a test keeps the README's copy current)."""
    lines = ["| preset | part | clock | PoT array (rows x cols) | DSP array (lanes x cols, "
             "packed per DSP48E1) | accumulator |", "|---|---|---|---|---|---|"]
    for cfg in PRESETS.values():
        lines.append(
            f"| `{cfg.name}` | {cfg.part} | {cfg.clock_mhz:g} MHz | {cfg.pot_rows} x "
            f"{cfg.pot_cols} = {cfg.pot_macs} MACs | {cfg.dsp_rows} x {cfg.dsp_cols} = "
            f"{cfg.dsp_rows * cfg.dsp_cols} lanes, {cfg.dsp_pack} per DSP48E1: "
            f"{cfg.dsp_count} DSP48E1 | {cfg.acc_bits} bits |")
    return "\n".join(lines) + "\n"


def preset(name: str) -> HwConfig:
    """Return a board preset; an unknown name lists the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown board {name!r}; valid boards: {', '.join(preset_names())}") from None

