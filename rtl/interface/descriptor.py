"""The layer descriptor: the one definition of its fields, op codes and output modes, for the
engine and the firmware.

A descriptor is ``len(FIELDS)`` little-endian 32-bit words in DDR, field ``i`` at byte
``4 * i``, padded with a zero word to a whole number of 64-bit bus words; the engine reads
it with one burst. Field order and meaning live only here.
"""

from __future__ import annotations

import enum
import itertools
import struct

__all__ = [
    "ADDRESS_FIELDS",
    "DESC_MAGIC",
    "FIELDS",
    "IN_BITS",
    "MAX_KERNEL",
    "MAX_PASSES",
    "OUT_BITS",
    "POOL_LEAD",
    "POOL_TOP",
    "Op",
    "PostMode",
    "descriptor_bytes",
    "descriptor_words32",
    "fusable_adds",
    "fusable_pools",
    "pack_descriptor",
    "pooled_size",
    "run_order",
    "split_descriptors",
    "unpack_descriptor",
]

#: First word of every descriptor: ASCII "DSC5" (layout version 5: padding per side, the
#: kernel's height and width, the split first-layer input; an 8-bit pixel map of at most
#: ``V`` channels in the words its channels fill, ``rtl.interface.ddr.vector_words``, so that
#: an engine built before reads no such map the old way: it refuses the descriptor).
DESC_MAGIC = 0x35435344


class Op(enum.IntEnum):
    """Layer operations (``op`` field)."""

    CONV = 1      #: convolution; also the fully connected layer (1x1 kernel on a 1x1 map)
    ADD = 2       #: residual add of ``in_addr`` and ``in2_addr``
    MAXPOOL = 3
    AVGPOOL = 4
    #: a conv (``mode`` SIGNED inside) whose result is added to ``in2_addr`` (a map of the
    #: output's shape) as a residual add does, in place, before the write-back; ``mode``,
    #: ``out_bits``, ``mult_*`` and ``shift_*`` are the add's (input a: the conv's result)
    CONV_ADD = 5


#: (name, meaning) of every 32-bit descriptor word, in order.
FIELDS: tuple[tuple[str, str], ...] = (
    ("magic", "DESC_MAGIC"),
    ("op", "an Op"),
    ("in_addr", "DDR byte address of the input feature map"),
    ("in2_addr", "second input of an add or a conv-add (else 0)"),
    ("out_addr", "DDR byte address of the output feature map"),
    ("weight_addr", "DDR byte address of the conv pass blocks (else 0)"),
    ("in_h", "input height"), ("in_w", "input width"), ("in_c", "input channels"),
    ("out_h", "output height"), ("out_w", "output width"), ("out_c", "output channels"),
    ("kernel_h", "kernel height (1 to 7)"),
    ("kernel_w", "kernel width (1 to 7; the unrolled stem's is 1, docs/engine.md)"),
    ("stride", "stride (1, 2)"),
    ("pad_top", "zero rows above the input (<= kernel_h // 2; a row tile pads only at the "
                "map's own top)"),
    ("pad_bottom", "zero rows below the input (<= kernel_h // 2)"),
    ("pad_left", "zero columns left of the input (<= kernel_w // 2)"),
    ("pad_right", "zero columns right of the input (<= kernel_w // 2)"),
    ("mode", "PostMode of the output (RELU, SIGNED, LOGITS)"),
    ("pool", "a conv's output max-pooled (3 x 3, stride 2, padding 1) in its write-back: "
             "0 none; POOL_TOP the band's first row is the map's row 0 (a zero row above); "
             "POOL_LEAD its first row only leads into the windows below it"),
    ("split", "1: a conv's input holds the first layer's pixels as 4-bit nibbles, chunk 2k "
              "their low and chunk 2k + 1 their high nibbles, which the arrays take times 16 "
              "(only on a split_input build; in_bits 4, an even chunk count)"),
    ("unroll", "1: a conv's input in DDR is a map of 8-bit pixels on V / unroll_taps channels "
               "and unroll_taps - 1 more columns, whose neighbouring pixels the engine puts side "
               "by side (HwConfig.unroll_taps; in_c V, kernel_w 1, stride 1, no column pads)"),
    ("in_bits", "storage bits of one input element (4, 5, 6, 8)"),
    ("in2_bits", "storage bits of one element of the (conv-)add's second input"),
    ("out_bits", "storage bits of one output element (4, 5, 6, 8, 32)"),
    ("passes", "conv passes (pass blocks at weight_addr)"),
    ("steps", "weight rows per pass: kernel_h * kernel_w * ceil(in_c / V)"),
    ("mult_a", "requant multiplier of input a (add, conv-add, avgpool)"),
    ("shift_a", "requant shift of input a"),
    ("mult_b", "requant multiplier of input b (add)"),
    ("shift_b", "requant shift of input b"),
)


#: ``pool`` values (:func:`pooled_size`): a pooled band that starts at the map's top, and one
#: whose first conv row is the last row of the band above (it only feeds the windows below).
POOL_TOP, POOL_LEAD = 1, 2


def pooled_size(out_h: int, out_w: int, pool: int) -> tuple[int, int]:
    """Rows and columns a conv band of ``out_h x out_w`` pools to (``pool`` POOL_TOP or
    POOL_LEAD): windows of 3 x 3, stride 2, a zero column left and right, a zero row above at
    POOL_TOP; the last window may reach one zero row below the band."""
    return (out_h + (pool == POOL_TOP)) // 2, (out_w + 1) // 2


#: Largest window side (``kernel_h``, ``kernel_w``) the engine runs: the stem's 7 x 7.
MAX_KERNEL = 7
#: Most conv passes of one descriptor (``passes``).
MAX_PASSES = 4096
#: Storage width of the image's pixels (and of its fold): the only 8-bit maps, which only the
#: host writes; a conv reads them (``rtl.interface.ddr.vector_words``).
PIXEL_BITS = 8
#: Storage widths (``in_bits``, ``in2_bits``) of input elements the engine unpacks.
IN_BITS = (4, 5, 6, PIXEL_BITS)
#: Storage widths (``out_bits``) of output elements the engine packs (32: logits).
OUT_BITS = (4, 5, 6, 8, 32)

#: The DDR byte addresses each op reads or writes (the other address fields are unused, 0).
ADDRESS_FIELDS: dict[Op, tuple[str, ...]] = {
    Op.CONV: ("in_addr", "out_addr", "weight_addr"),
    Op.ADD: ("in_addr", "in2_addr", "out_addr"),
    Op.MAXPOOL: ("in_addr", "out_addr"),
    Op.AVGPOOL: ("in_addr", "out_addr"),
    Op.CONV_ADD: ("in_addr", "in2_addr", "out_addr", "weight_addr"),
}


class PostMode(enum.IntEnum):
    """How a layer's requantized values are clamped (``mode`` field; docs/arithmetic.md)."""

    RELU = 0     #: ReLU, clamp to u{act_bits}
    SIGNED = 1   #: no ReLU, clamp to s{act_bits+1} (branch into a residual add)
    LOGITS = 2   #: last layer, saturate to s32


def descriptor_words32() -> int:
    """32-bit words of a descriptor in DDR: the fields, padded to whole 64-bit words."""
    return len(FIELDS) + len(FIELDS) % 2


def descriptor_bytes() -> int:
    """Bytes of a descriptor in DDR: the fields, padded to whole 64-bit words."""
    return 4 * descriptor_words32()


def pack_descriptor(**values: int) -> bytes:
    """Bytes of a descriptor; unnamed fields are 0, ``magic`` is filled in. Unknown names and
    values outside 32 bits raise ValueError."""
    names = [name for name, _ in FIELDS]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"descriptor has no field {unknown[0]!r}; fields: {', '.join(names)}")
    words = []
    for name in names:
        value = int(values.get(name, DESC_MAGIC if name == "magic" else 0))
        if not 0 <= value < 1 << 32:
            raise ValueError(f"descriptor field {name} must fit 32 bits unsigned, not {value}")
        words.append(value)
    words += [0] * (descriptor_words32() - len(words))
    return struct.pack(f"<{len(words)}I", *words)


def split_descriptors(table: bytes, start: int = 0, count: int | None = None) -> list[bytes]:
    """The ``count`` descriptors (all that follow when None) of a table in DDR order from
    descriptor ``start`` on, each as its bytes."""
    n = descriptor_bytes()
    if count is None:
        count = len(table) // n - start
    return [bytes(table[(start + k) * n:(start + k + 1) * n]) for k in range(count)]


def unpack_descriptor(raw: bytes) -> dict[str, int]:
    """The fields of a descriptor's bytes, by name (the padding word dropped)."""
    if len(raw) != descriptor_bytes():
        raise ValueError(f"a descriptor is {descriptor_bytes()} bytes, not {len(raw)}")
    values = struct.unpack(f"<{descriptor_words32()}I", raw)
    return dict(zip((n for n, _ in FIELDS), values[:len(FIELDS)], strict=True))


def _readers(nodes: list[dict]) -> dict[str, int]:
    """How many inputs of ``nodes`` read each tensor."""
    readers: dict[str, int] = {}
    for node in nodes:
        for name in node["inputs"]:
            readers[name] = readers.get(name, 0) + 1
    return readers


def run_order(nodes: list[dict]) -> list[dict]:
    """``nodes`` in the order the engine runs them: a conv that reads the same map as an
    earlier conv runs right after it (ResNet's downsample after its block's first conv), so
    that it computes from the band that conv left in the act buffer instead of reading the
    map again (docs/engine.md, band reuse). A conv whose add or max-pool follows it at once
    (:func:`fusable_adds`, :func:`fusable_pools`) keeps its partner next to it. Every node
    still comes after its inputs."""
    order = list(nodes)
    for node in nodes:
        if node["op"] != "conv":
            continue
        at = order.index(node)
        for i, first in enumerate(order[:at - 1]):
            if (first["op"] == "conv" and first["inputs"] == node["inputs"]
                    and order[i + 1]["op"] not in ("add", "maxpool")):
                order.insert(i + 1, order.pop(at))
                break
    return order


def fusable_adds(nodes: list[dict]) -> dict[str, str]:
    """Residual adds that run inside the conv that produces one of their inputs (a conv
    without ReLU, right before the add, whose output nothing else reads): conv name -> add
    name. Such a pair runs as one ``Op.CONV_ADD`` job named after the conv."""
    readers = _readers(nodes)
    fused = {}
    for node, nxt in itertools.pairwise(nodes):
        if (node["op"] == "conv" and not node["relu"] and nxt["op"] == "add"
                and node["name"] in nxt["inputs"] and readers[node["name"]] == 1
                and len(set(nxt["inputs"])) == 2):
            fused[node["name"]] = nxt["name"]
    return fused


def fusable_pools(nodes: list[dict]) -> dict[str, str]:
    """Max-pools (3 x 3, stride 2, padding 1: ResNet's stem) that run in the write-back of
    the conv they pool (a conv with ReLU, right before the pool, whose output nothing else
    reads): conv name -> pool name. Such a pair runs as one ``Op.CONV`` job with ``pool``
    set, named after the conv."""
    readers = _readers(nodes)
    fused = {}
    for node, nxt in itertools.pairwise(nodes):
        if (node["op"] == "conv" and node["relu"] and nxt["op"] == "maxpool"
                and (nxt["kernel"], nxt["stride"], nxt["padding"]) == (3, 2, 1)
                and nxt["inputs"] == [node["name"]] and readers[node["name"]] == 1):
            fused[node["name"]] = nxt["name"]
    return fused
