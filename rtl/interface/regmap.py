"""The accelerator's register map: declared once, offsets generated, JSON for firmware."""

from __future__ import annotations

import argparse
import enum
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import WEIGHT_FORMATS, HwConfig, preset, preset_names

__all__ = [
    "MAGIC",
    "REGMAP_VERSION",
    "Access",
    "ErrorCode",
    "Field",
    "Register",
    "RegisterMap",
    "build_regmap",
]

#: Version of the register map layout; bump it whenever a register is added, moved or changed.
REGMAP_VERSION = 2
#: Value of the MAGIC register (ASCII ``"ILMP"``): tells firmware it found this accelerator.
MAGIC = 0x494C4D50
#: Width of one register (and of the AXI4-Lite data bus) in bits.
DATA_WIDTH = 32
#: Bytes between two consecutive registers.
STRIDE = DATA_WIDTH // 8

_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Access(str, enum.Enum):  # noqa: UP042 (StrEnum needs 3.11)
    """How software may access a register.

    ``ro``: read only (a constant or a value driven by the core); writes are ignored.
    ``rw``: read/write storage, byte strobes honoured; the core sees the stored value.
    ``wo``: write only; a write sends the value to the core with a one-cycle strobe; reads are 0.
    ``w1c``: the core sets bits; software reads them and clears a bit by writing 1 to it.
    """

    RO = "ro"
    RW = "rw"
    WO = "wo"
    W1C = "w1c"


class ErrorCode(enum.IntEnum):
    """Values of the ERROR_CODE register; the engine sets one, finishes, and never hangs.

    The code stays until the next START; STATUS.error is set whenever it is not NONE.
    """

    #: The last layer finished without an error.
    NONE = 0
    #: The layer descriptor is malformed: wrong magic or version, an unknown operation, or a
    #: field outside its legal range (zero sizes, a kernel or stride the engine lacks).
    BAD_DESCRIPTOR = 1
    #: The descriptor, or a buffer it names, lies partly outside
    #: ``[WINDOW_BASE, WINDOW_BASE + WINDOW_SIZE)``.
    ADDR_OUT_OF_WINDOW = 2
    #: An address is not aligned to the AXI master's data width (``axi_data_width / 8`` bytes).
    MISALIGNED_ADDR = 3
    #: The layer exceeds the build's limits (``max_channels``, ``max_spatial``,
    #: ``max_reduction``) or a tile does not fit the on-chip buffers.
    LAYER_TOO_LARGE = 4
    #: A filter uses a weight format this build does not implement (``HwConfig.weight_formats``).
    UNSUPPORTED_FORMAT = 5
    #: The DDR side answered a burst with SLVERR or DECERR.
    AXI_RESPONSE = 6
    #: ``CTRL.soft_reset`` abandoned the run at its next safe point (the end of the DDR
    #: burst or conv pass under way); no later transfer of the run was started.
    ABORTED = 7


def _error_values() -> tuple[tuple[str, int], ...]:
    return tuple((code.name, int(code)) for code in ErrorCode)


@dataclass(frozen=True)
class Field:
    """A named bit field of a register.

    Parameters
    ----------
    name : str
        Lower-case identifier, unique within its register.
    offset : int
        Least significant bit of the field.
    width : int
        Bits in the field.
    description : str
        One sentence for the documentation.
    values : tuple of (str, int)
        Named values (an enumeration), if the field has them.
    """

    name: str
    offset: int
    width: int = 1
    description: str = ""
    values: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"field name must be a string, not {self.name!r}")
        if not _FIELD_NAME.match(self.name):
            raise ValueError(
                f"field name must be a lower-case identifier (letters, digits, '_'), "
                f"not {self.name!r}")
        for attr, lo in (("offset", 0), ("width", 1)):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise TypeError(
                    f"field {self.name!r}: {attr} must be an integer >= {lo}, not {value!r}")
        if not isinstance(self.description, str):
            raise TypeError(
                f"field {self.name!r}: description must be a string, not {self.description!r}")
        object.__setattr__(self, "values", tuple((str(k), v) for k, v in self.values))
        for key, value in self.values:
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not 0 <= value < (1 << self.width):
                raise ValueError(
                    f"field {self.name!r}: value {key}={value!r} does not fit {self.width} bits")

    @property
    def msb(self) -> int:
        return self.offset + self.width - 1

    @property
    def bits(self) -> str:
        """The bit range as documentation writes it: ``"7:0"`` or ``"3"``."""
        return str(self.offset) if self.width == 1 else f"{self.msb}:{self.offset}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "bit_offset": self.offset, "width": self.width,
                             "description": self.description}
        if self.values:
            d["values"] = dict(self.values)
        return d

    @classmethod
    def from_dict(cls, data: Any) -> Field:
        data = _check_keys(data, "field", required=("name", "bit_offset", "width"),
                           optional=("description", "values"))
        values = data.get("values", {})
        if not isinstance(values, dict):
            raise TypeError(f"field {data['name']!r}: values must be an object, not {values!r}")
        return cls(name=data["name"], offset=data["bit_offset"], width=data["width"],
                   description=data.get("description", ""), values=tuple(values.items()))


@dataclass(frozen=True)
class Register:
    """One 32-bit word of the register map (its offset is given by its place in the map).

    Parameters
    ----------
    name : str
        Upper-case identifier, unique within the map.
    access : Access or str
        ``"ro"``, ``"rw"``, ``"wo"`` or ``"w1c"``.
    width : int
        Implemented bits, 1 to 32, from bit 0; the bits above read as 0 and ignore writes.
    reset : int
        Value after reset (the fixed value of a constant register).
    description : str
        One sentence for the documentation.
    fields : tuple of Field
        Named bit fields; they may leave gaps but must not overlap or pass ``width``.
    constant : bool
        Only for ``ro``: the value is ``reset`` forever, built into the hardware.

    Raises
    ------
    TypeError
        For a value of the wrong type.
    ValueError
        For parts that do not fit together (fields overlapping or too wide, a reset value too
        wide, ``constant`` on a register that is not ``ro``).
    """

    name: str
    access: Access
    width: int = DATA_WIDTH
    reset: int = 0
    description: str = ""
    fields: tuple[Field, ...] = ()
    constant: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"register name must be a string, not {self.name!r}")
        if not _NAME.match(self.name):
            raise ValueError(
                f"register name must be an upper-case identifier (letters, digits, '_'), "
                f"not {self.name!r}")
        try:
            object.__setattr__(self, "access", Access(self.access))
        except ValueError:
            raise ValueError(
                f"register {self.name!r}: access must be one of "
                f"{', '.join(a.value for a in Access)}, not {self.access!r}") from None
        if isinstance(self.width, bool) or not isinstance(self.width, int) \
                or not 1 <= self.width <= DATA_WIDTH:
            raise ValueError(
                f"register {self.name!r}: width must be an integer from 1 to {DATA_WIDTH}, "
                f"not {self.width!r}")
        if isinstance(self.reset, bool) or not isinstance(self.reset, int):
            raise TypeError(f"register {self.name!r}: reset must be an integer, not {self.reset!r}")
        if not 0 <= self.reset < (1 << self.width):
            raise ValueError(
                f"register {self.name!r}: reset value {self.reset:#x} does not fit "
                f"{self.width} bits")
        if not isinstance(self.description, str):
            raise TypeError(
                f"register {self.name!r}: description must be a string, not "
                f"{self.description!r}")
        if not isinstance(self.constant, bool):
            raise TypeError(
                f"register {self.name!r}: constant must be True or False, not {self.constant!r}")
        if self.constant and self.access is not Access.RO:
            raise ValueError(
                f"register {self.name!r}: only 'ro' registers can be constant, not "
                f"{self.access.value!r} ones")
        object.__setattr__(self, "fields", tuple(self.fields))
        seen: dict[str, Field] = {}
        for f in self.fields:
            if not isinstance(f, Field):
                raise TypeError(f"register {self.name!r}: fields must be Field objects, not {f!r}")
            if f.name in seen:
                raise ValueError(f"register {self.name!r} has two fields named {f.name!r}")
            if f.msb >= self.width:
                raise ValueError(
                    f"register {self.name!r}: field {f.name!r} (bits {f.bits}) exceeds the "
                    f"register width of {self.width} bits")
            for g in seen.values():
                if f.offset <= g.msb and g.offset <= f.msb:
                    raise ValueError(
                        f"register {self.name!r}: fields {g.name!r} (bits {g.bits}) and "
                        f"{f.name!r} (bits {f.bits}) overlap")
            seen[f.name] = f

    def field(self, name: str) -> Field:
        """The field called ``name``; an unknown name lists the known ones."""
        for f in self.fields:
            if f.name == name:
                return f
        raise ValueError(
            f"register {self.name!r} has no field {name!r}; fields: "
            f"{', '.join(f.name for f in self.fields) or 'none'}")

    def pack(self, values: Mapping[str, int]) -> int:
        """The register value with each named field set to ``values[name]`` (others 0)."""
        word = 0
        for name, value in values.items():
            f = self.field(name)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not 0 <= value < (1 << f.width):
                raise ValueError(
                    f"register {self.name!r}: value {value!r} does not fit field {name!r} "
                    f"(bits {f.bits}, {f.width} bits)")
            word |= value << f.offset
        return word

    def unpack(self, word: int) -> dict[str, int]:
        """The value of every field of a register value read from the hardware."""
        return {f.name: (word >> f.offset) & ((1 << f.width) - 1) for f in self.fields}

    def to_dict(self, offset: int) -> dict[str, Any]:
        return {"name": self.name, "offset": offset, "width": self.width,
                "access": self.access.value, "constant": self.constant, "reset": self.reset,
                "description": self.description, "fields": [f.to_dict() for f in self.fields]}

    @classmethod
    def from_dict(cls, data: Any) -> tuple[int, Register]:
        """``(offset, register)`` from one entry of the JSON ``registers`` list."""
        data = _check_keys(data, "register",
                           required=("name", "offset", "width", "access", "reset"),
                           optional=("constant", "description", "fields"))
        fields_data = data.get("fields", [])
        if not isinstance(fields_data, list):
            raise TypeError(f"register {data['name']!r}: fields must be a list, not "
                            f"{fields_data!r}")
        reg = cls(name=data["name"], access=data["access"], width=data["width"],
                  reset=data["reset"], description=data.get("description", ""),
                  fields=tuple(Field.from_dict(f) for f in fields_data),
                  constant=data.get("constant", False))
        return data["offset"], reg


def _check_keys(data: Any, what: str, *, required: Sequence[str],
                optional: Sequence[str]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError(f"register map JSON: a {what} must be an object, not {data!r}")
    label = f"{what} {data['name']!r}" if "name" in data else f"a {what}"
    for key in required:
        if key not in data:
            raise ValueError(f"register map JSON: {label} lacks the key {key!r}")
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        raise ValueError(
            f"register map JSON: {label} has unknown key {unknown[0]!r}; known keys: "
            f"{', '.join(list(required) + list(optional))}")
    return data


class RegisterMap:
    """Registers at generated offsets: register ``i`` of the declaration lies at ``4 * i``.

    Parameters
    ----------
    registers : iterable of Register
        In address order.
    config_name : str
        ``HwConfig.name`` of the build the map belongs to.
    config_hash : int
        ``HwConfig.config_hash`` of that build (also the value of the ID register).
    version : int
        Register map layout version, :data:`REGMAP_VERSION` for maps made by this code.

    Raises
    ------
    TypeError
        For a value of the wrong type.
    ValueError
        For two registers with one name, or an empty map.
    """

    def __init__(self, registers: Iterable[Register], *, config_name: str, config_hash: int,
                 version: int = REGMAP_VERSION) -> None:
        registers = tuple(registers)
        if not registers:
            raise ValueError("a register map needs at least one register")
        names: set[str] = set()
        for reg in registers:
            if not isinstance(reg, Register):
                raise TypeError(f"register map entries must be Register objects, not {reg!r}")
            if reg.name in names:
                raise ValueError(
                    f"register map has two registers named {reg.name!r}; register names must "
                    f"be unique")
            names.add(reg.name)
        if not isinstance(config_name, str):
            raise TypeError(f"register map config_name must be a string, not {config_name!r}")
        for what, value, bits in (("config_hash", config_hash, 32), ("version", version, 32)):
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not 0 <= value < (1 << bits):
                raise TypeError(
                    f"register map {what} must be an unsigned {bits}-bit integer, not {value!r}")
        self._registers = registers
        self._index = {reg.name: i for i, reg in enumerate(registers)}
        self._config_name = config_name
        self._config_hash = config_hash
        self._version = version

    # ---- queries ---------------------------------------------------------------------------

    @property
    def registers(self) -> tuple[Register, ...]:
        return self._registers

    @property
    def config_name(self) -> str:
        return self._config_name

    @property
    def config_hash(self) -> int:
        return self._config_hash

    @property
    def version(self) -> int:
        return self._version

    @property
    def data_width(self) -> int:
        return DATA_WIDTH

    @property
    def size(self) -> int:
        """Bytes the map occupies."""
        return STRIDE * len(self._registers)

    @property
    def addr_width(self) -> int:
        """Fewest byte-address bits that reach every register (at least the 2 in-word bits)."""
        return max(2, (self.size - 1).bit_length())

    def __len__(self) -> int:
        return len(self._registers)

    def __iter__(self):
        return iter(self._registers)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> Register:
        return self._registers[self._lookup(name)]

    def offset(self, name: str) -> int:
        """Byte offset of the register called ``name``."""
        return STRIDE * self._lookup(name)

    def items(self) -> list[tuple[int, Register]]:
        """``(offset, register)`` for every register, in address order."""
        return [(STRIDE * i, reg) for i, reg in enumerate(self._registers)]

    def at(self, offset: int) -> Register | None:
        """The register whose word holds byte ``offset``, or None when none does."""
        index = offset // STRIDE
        return self._registers[index] if 0 <= index < len(self._registers) else None

    def check_identity(self, magic: int, version: int, ident: int) -> None:
        """Raise ValueError unless MAGIC, VERSION and ID read from hardware match this map.

        Firmware calls this before touching any other register, so a bitstream built from
        another configuration is refused with a message saying how to fix it.
        """
        if magic != MAGIC:
            raise ValueError(
                f"no accelerator at this address: MAGIC reads {magic:#010x}, expected "
                f"{MAGIC:#010x}; check the bitstream is loaded and the base address")
        if version != self._version:
            raise ValueError(
                f"the hardware has register map version {version}, this map is version "
                f"{self._version}; use the register map JSON from the same build as the "
                f"bitstream")
        if ident != self._config_hash:
            raise ValueError(
                f"the bitstream was built from configuration {ident:08x}, but this register map "
                f"is for {self._config_name!r} ({self._config_hash:08x}); rebuild with "
                f"'python build.py --board {self._config_name}' or load the matching build")

    def _lookup(self, name: str) -> int:
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"register map has no register {name!r}; registers: "
                f"{', '.join(self._index)}") from None

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, RegisterMap) and self._registers == other._registers
                and self._config_name == other._config_name
                and self._config_hash == other._config_hash and self._version == other._version)

    def __hash__(self) -> int:
        return hash((self._registers, self._config_name, self._config_hash, self._version))

    def __repr__(self) -> str:
        return (f"RegisterMap({len(self)} registers, config {self._config_name!r} "
                f"{self._config_hash:08x}, version {self._version})")

    # ---- JSON --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"version": self._version, "config": self._config_name,
                "config_hash": self._config_hash, "data_width": DATA_WIDTH,
                "size": self.size,
                "registers": [reg.to_dict(offset) for offset, reg in self.items()]}

    def to_json(self, indent: int | None = 2) -> str:
        if indent is None:
            return json.dumps(self.to_dict(), separators=(",", ":"))
        return json.dumps(self.to_dict(), indent=indent) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> RegisterMap:
        if not isinstance(data, dict):
            raise TypeError(f"register map JSON must be an object, not {type(data).__name__}")
        required = ("version", "config", "config_hash", "data_width", "size", "registers")
        for key in required:
            if key not in data:
                raise ValueError(f"register map JSON lacks the key {key!r}")
        unknown = sorted(set(data) - set(required))
        if unknown:
            raise ValueError(
                f"register map JSON has unknown key {unknown[0]!r}; known keys: "
                f"{', '.join(required)}")
        if data["version"] != REGMAP_VERSION:
            raise ValueError(
                f"register map JSON has version {data['version']!r}, but this code reads "
                f"version {REGMAP_VERSION}; regenerate it with "
                f"'python -m rtl.interface.regmap --json'")
        if data["data_width"] != DATA_WIDTH:
            raise ValueError(
                f"register map JSON has data_width {data['data_width']!r}; only {DATA_WIDTH} "
                f"is supported")
        if not isinstance(data["registers"], list):
            raise TypeError(
                f"register map JSON: registers must be a list, not {data['registers']!r}")
        entries = [Register.from_dict(r) for r in data["registers"]]
        regmap = cls((reg for _, reg in entries), config_name=data["config"],
                     config_hash=data["config_hash"], version=data["version"])
        # Offsets are generated, never chosen: a JSON whose offsets disagree with its order was
        # edited by hand or made by other code, and firmware must not trust it.
        for (offset, reg), (expected, _) in zip(entries, regmap.items(), strict=True):
            if offset != expected:
                raise ValueError(
                    f"register map JSON puts {reg.name!r} at offset {offset!r}, but its place "
                    f"in the list gives {expected:#x}; regenerate the JSON rather than editing "
                    f"offsets")
        if data["size"] != regmap.size:
            raise ValueError(
                f"register map JSON gives size {data['size']!r}, but its {len(regmap)} registers "
                f"take {regmap.size} bytes")
        return regmap

    @classmethod
    def from_json(cls, text: str) -> RegisterMap:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"register map JSON is malformed: {exc}") from None
        return cls.from_dict(data)

    # ---- documentation -----------------------------------------------------------------------

    def markdown(self) -> str:
        """A Markdown table of every register and field, for docs/registers.md."""
        lines = [
            f"Register map version {self._version} for configuration `{self._config_name}` "
            f"(config hash `{self._config_hash:08x}`), {len(self)} registers, "
            f"{self.size} bytes, AXI4-Lite address width {self.addr_width} bits.",
            "",
            "| offset | name | access | width | reset | description |",
            "|---|---|---|---|---|---|",
        ]
        for offset, reg in self.items():
            access = reg.access.value + (" (constant)" if reg.constant else "")
            lines.append(f"| `{offset:#06x}` | `{reg.name}` | {access} | {reg.width} | "
                         f"`{reg.reset:#x}` | {reg.description} |")
        lines += ["", "Fields:", "",
                  "| register | bits | field | description |", "|---|---|---|---|"]
        for reg in self._registers:
            for f in reg.fields:
                desc = f.description
                if f.values:
                    desc += " Values: " + ", ".join(f"{k} = {v}" for k, v in f.values) + "."
                lines.append(f"| `{reg.name}` | {f.bits} | `{f.name}` | {desc} |")
        return "\n".join(lines) + "\n"


# ---- the accelerator's registers -------------------------------------------------------------

@dataclass
class _Builder:
    registers: list[Register] = field(default_factory=list)

    def add(self, name: str, access: str, description: str, *, width: int = DATA_WIDTH,
            reset: int = 0, fields: Sequence[Field] = ()) -> Register:
        reg = Register(name=name, access=Access(access), width=width, reset=reset,
                       description=description, fields=tuple(fields))
        self.registers.append(reg)
        return reg

    def const(self, name: str, description: str,
              fields: Sequence[tuple[Field, int]] = (), *, value: int | None = None) -> None:
        """A constant ``ro`` register; ``value`` or the packed ``(field, value)`` pairs."""
        reg = Register(name=name, access=Access.RO, description=description,
                       fields=tuple(f for f, _ in fields))
        if value is None:
            value = reg.pack({f.name: v for f, v in fields})
        self.registers.append(Register(name=name, access=Access.RO, reset=value,
                                       description=description, fields=reg.fields,
                                       constant=True))


def build_regmap(cfg: HwConfig) -> RegisterMap:
    """The accelerator's register map for one hardware configuration.

    Offsets follow the order below; nothing else in the project writes an offset.

    Raises
    ------
    TypeError
        If ``cfg`` is not a :class:`HwConfig`.
    ValueError
        If a configuration value does not fit its HW_* field.
    """
    if not isinstance(cfg, HwConfig):
        raise TypeError(f"build_regmap needs a HwConfig, not {cfg!r}")
    b = _Builder()
    b.const("MAGIC", "Identifies the accelerator: ASCII 'ILMP'.", value=MAGIC)
    b.const("VERSION", "Register map layout version (the JSON's 'version').",
            value=REGMAP_VERSION)
    b.const("ID", "Configuration hash of the build (HwConfig.config_hash); firmware refuses a "
            "bitstream whose ID differs from its JSON's config_hash.", value=cfg.config_hash)
    b.const("HW_ARRAY", "Compute array sizes.", [
        (Field("pot_rows", 0, 16, "PoT filters computed in parallel (LUT array)."),
         cfg.pot_rows),
        (Field("dsp_rows", 16, 16, "Fixed-point 4-bit lanes of the DSP array."), cfg.dsp_rows),
    ])
    b.const("HW_DATA", "Vector length and data widths.", [
        (Field("vec_len", 0, 16, "Activations per cycle into both arrays."), cfg.vec_len),
        (Field("act_bits", 16, 4, "Activation width in bits."), cfg.act_bits),
        (Field("input_bits", 20, 4, "First-layer input (pixel) width in bits."),
         cfg.input_bits),
        (Field("acc_bits", 24, 6, "Accumulator width in bits."), cfg.acc_bits),
        (Field("split_input", 30, 1, "1 if first-layer pixels enter the arrays as 4-bit "
               "nibbles (a first conv's input is written split, docs/engine.md)."),
         int(cfg.split_input)),
    ])
    b.const("HW_BUS", "DDR master bus widths and implemented weight formats.", [
        (Field("axi_data_width", 0, 8, "Data width of the AXI4 master to DDR in bits."),
         cfg.axi_data_width),
        (Field("axi_addr_width", 8, 8, "Address width of the AXI4 master in bits."),
         cfg.axi_addr_width),
        *((Field(fmt, 16 + i, 1, f"1 if the {fmt} weight format is implemented."),
           int(fmt in cfg.weight_formats)) for i, fmt in enumerate(WEIGHT_FORMATS)),
    ])
    b.const("HW_CLOCK", "Target fabric clock in kHz.", value=round(cfg.clock_mhz * 1000))
    b.add("CTRL", "wo", "Commands; each written 1 bit is a one-cycle pulse to the engine.",
          width=2, fields=[
              Field("start", 0, 1, "Run the DESC_COUNT descriptors from DESC_ADDR."),
              Field("soft_reset", 1, 1, "Abandon the run at its next safe point (the end of "
                    "the DDR burst or conv pass under way): ERROR_CODE ABORTED, then idle."),
          ])
    b.add("STATUS", "ro", "Engine state.", width=3, fields=[
        Field("busy", 0, 1, "A layer is running."),
        Field("done", 1, 1, "The last layer finished (with or without error); cleared by START."),
        Field("error", 2, 1, "ERROR_CODE is not NONE."),
    ])
    b.add("ERROR_CODE", "ro", "Why the last layer stopped early; kept until the next START.",
          width=8, fields=[Field("code", 0, 8, "An ErrorCode.", values=_error_values())])
    irq_fields = [Field("done", 0, 1, "A layer finished."),
                  Field("error", 1, 1, "A layer finished with an error.")]
    b.add("IRQ_ENABLE", "rw", "Which IRQ_STATUS bits raise the interrupt line.", width=2,
          fields=irq_fields)
    b.add("IRQ_STATUS", "w1c", "Pending interrupt events; write 1 to clear.", width=2,
          fields=irq_fields)
    aw = cfg.axi_addr_width
    b.add("DESC_ADDR", "rw", "DDR byte address of the first layer descriptor.", width=aw)
    b.add("DESC_COUNT", "rw", "Descriptors to run, one after another, from DESC_ADDR "
          "(consecutive in DDR): the row tiles of a layer, or a whole network. 0 is refused "
          "with BAD_DESCRIPTOR.", width=16, reset=1)
    b.add("DESC_DONE", "ro", "Descriptors of the last run that finished without error (on "
          "an error, the index of the failing one).", width=16)
    b.add("WINDOW_BASE", "rw", "First DDR byte address the engine may read or write.", width=aw)
    b.add("WINDOW_SIZE", "rw", "Bytes of the DDR window from WINDOW_BASE; 0 forbids all access.",
          width=aw)
    b.add("CYCLES_LO", "ro", "Clock cycles of the last run, bits 31:0 (stable while idle).")
    b.add("CYCLES_HI", "ro", "Clock cycles of the last run, bits 63:32.")
    b.add("STALL_CYCLES", "ro", "Cycles of the last run in which the compute waited for DDR "
          "(saturates).")
    b.add("SCRATCH", "rw", "Free for software (bus checks); no effect on the engine.")
    return RegisterMap(b.registers, config_name=cfg.name, config_hash=cfg.config_hash)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rtl.interface.regmap --board zc706 --markdown`` (or ``--json``)."""
    parser = argparse.ArgumentParser(prog="python -m rtl.interface.regmap", description=__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--board", choices=preset_names(), default="zc706",
                        help="board preset (default: zc706)")
    source.add_argument("--config", metavar="FILE", help="a HwConfig JSON file instead")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the JSON map (default)")
    fmt.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    try:
        cfg = HwConfig.load(args.config) if args.config else preset(args.board)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    regmap = build_regmap(cfg)
    sys.stdout.write(regmap.markdown() if args.markdown else regmap.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
