"""Layer descriptor: layout, packing, padding and errors."""

import struct

import pytest

from quant.resnet_graph import resnet18_nodes
from rtl.descriptor import descriptor_layout
from rtl.interface.descriptor import (
    DESC_MAGIC,
    FIELDS,
    Op,
    descriptor_bytes,
    fusable_adds,
    pack_descriptor,
    run_order,
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


def test_run_order_puts_each_downsample_after_its_blocks_first_conv() -> None:
    """ResNet-18 in the engine's run order: each downsample right after the conv that reads
    the same map (so it computes from that conv's band), every node after its inputs, the
    same nodes; the residual add then runs in the block's second conv, with the downsample's
    output as its other input."""
    nodes = resnet18_nodes()
    order = run_order(nodes)
    assert sorted(n["name"] for n in order) == sorted(n["name"] for n in nodes)
    done = {"input"}
    for node in order:
        assert set(node["inputs"]) <= done, node["name"]
        done.add(node["name"])
    names = [n["name"] for n in order]
    for block in ("layer2.0", "layer3.0", "layer4.0"):
        at = names.index(f"{block}.conv1")
        assert names[at + 1:at + 3] == [f"{block}.downsample.0", f"{block}.conv2"]
        assert fusable_adds(order)[f"{block}.conv2"] == f"{block}.add"
    # In the model's own order the downsample came last, and took the add.
    assert fusable_adds(nodes)["layer2.0.downsample.0"] == "layer2.0.add"
    # Blocks without a downsample, and the stem with its fused max-pool, keep their order.
    assert [n["name"] for n in order if n["name"].startswith(("conv1", "maxpool", "layer1"))] \
        == [n["name"] for n in nodes if n["name"].startswith(("conv1", "maxpool", "layer1"))]
