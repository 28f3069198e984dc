"""Layer descriptor: layout, packing, padding and errors."""

import struct

import pytest

from rtl.descriptor import descriptor_layout
from rtl.interface.descriptor import (
    DESC_MAGIC,
    FIELDS,
    Op,
    descriptor_bytes,
    pack_descriptor,
    unpack_descriptor,
)


def test_pack_places_fields_in_order_and_pads():
    raw = pack_descriptor(op=Op.ADD, in_addr=0x1000, shift_b=7)
    assert len(raw) == descriptor_bytes() and len(raw) % 8 == 0
    words = struct.unpack(f"<{len(raw) // 4}I", raw)
    names = [n for n, _ in FIELDS]
    assert words[0] == DESC_MAGIC == int.from_bytes(b"DSC5", "little")
    assert words[names.index("op")] == 2
    assert words[names.index("in_addr")] == 0x1000
    assert words[names.index("shift_b")] == 7
    assert words[len(FIELDS):] == (0,) * (len(words) - len(FIELDS))
    back = unpack_descriptor(raw)
    assert back["in_addr"] == 0x1000 and back["out_addr"] == 0 and len(back) == len(FIELDS)


def test_layout_matches_bytes():
    assert descriptor_layout().size == 8 * descriptor_bytes()


def test_bad_fields():
    with pytest.raises(ValueError, match=r"^descriptor has no field 'inaddr'; fields: magic, "):
        pack_descriptor(inaddr=3)
    with pytest.raises(ValueError, match=r"^descriptor field in_h must fit 32 bits unsigned, "
                                         r"not -1$"):
        pack_descriptor(in_h=-1)
    with pytest.raises(ValueError, match=r"^a descriptor is \d+ bytes, not 3$"):
        unpack_descriptor(b"abc")
