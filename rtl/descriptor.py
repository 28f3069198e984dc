"""The layer descriptor as the engine holds it (the fields: :mod:`rtl.interface.descriptor`)."""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import data

from .interface.descriptor import FIELDS, descriptor_words32

__all__ = ["descriptor_layout"]


def descriptor_layout() -> data.StructLayout:
    """One 32-bit field per descriptor word (and the padding word)."""
    fields = {name: unsigned(32) for name, _ in FIELDS}
    if descriptor_words32() > len(FIELDS):
        fields["_pad"] = unsigned(32)
    return data.StructLayout(fields)
