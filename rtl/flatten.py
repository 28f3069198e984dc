"""Flatten a component's bus interfaces into ``<prefix>_<signal>`` ports for a Verilog top."""

from __future__ import annotations

from amaranth.hdl import Module, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In

__all__ = ["FlatTop"]


class FlatTop(wiring.Component):
    """``inner`` with the interfaces named in ``prefixes`` as flat members.

    ``FlatTop(dma, {"bus": "m_axi"})`` turns ``dma.bus.araddr`` into the top-level port
    ``m_axi_araddr`` (the names Vivado infers AXI interfaces from, and that cocotbext-axi's
    ``from_prefix`` finds); other members keep Amaranth's names. Only wires are added.
    """

    def __init__(self, inner: wiring.Component, prefixes: dict[str, str]) -> None:
        members = {}
        for name, member in inner.signature.members.items():
            if name in prefixes:
                if not member.is_signature:
                    raise TypeError(f"member {name!r} of {inner!r} is a port, not an interface")
                for sub, sm in member.signature.members.items():
                    if sm.is_signature:
                        raise TypeError(f"interface {name!r} is nested; only flat buses flatten")
                    members[f"{prefixes[name]}_{sub}"] = sm
            else:
                members[name] = member
        self._inner, self._prefixes = inner, dict(prefixes)
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.inner = inner = self._inner
        for name, member in inner.signature.members.items():
            if name in self._prefixes:
                pairs = [(getattr(self, f"{self._prefixes[name]}_{sub}"),
                          getattr(getattr(inner, name), sub), sm.flow)
                         for sub, sm in member.signature.members.items()]
            elif member.is_signature:
                outer_leaves = self.signature.members[name].signature.flatten(getattr(self, name))
                inner_leaves = member.signature.flatten(getattr(inner, name))
                pairs = [(outer, inner_sig, sm.flow) for (_, sm, outer), (_, _, inner_sig)
                         in zip(outer_leaves, inner_leaves, strict=True)]
            else:
                pairs = [(getattr(self, name), getattr(inner, name), member.flow)]
            for outer, inner_sig, flow in pairs:
                outer, inner_sig = Value.cast(outer), Value.cast(inner_sig)
                m.d.comb += inner_sig.eq(outer) if flow == In else outer.eq(inner_sig)
        return m
