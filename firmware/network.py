"""Plan a whole quantized network for the accelerator: DDR layout and one descriptor table
(each layer's row tiles in order).

``firmware.compile`` turns the plan into a compiled network (relocatable DDR image, input
and output layout) that the board and the RTL benches both run: copy it into DDR, write the
input image, then run the whole network as one chain (``plan.chain_addr``,
``plan.chain_count``: one START, one interrupt) or each layer as its own chain
(``job.desc_addr``, ``job.desc_count``: its row tiles) for per-layer cycle counts; the logits
are then at ``plan.output``. Only numpy, the hardware config and the model file are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quant import contract as C
from quant.fit import check_fits
from quant.model_format import QModel
from rtl.config import NIBBLE_BITS, HwConfig
from rtl.interface.ddr import feature_map_words
from rtl.interface.descriptor import (
    POOL_TOP,
    Op,
    PostMode,
    descriptor_bytes,
    fusable_adds,
    fusable_pools,
    run_order,
)
from rtl.interface.stem import (
    Fold,
    fold_plan,
    fold_weight,
    split_channels,
    split_weight,
)
from rtl.interface.tiling import layer_descriptors, pool_fusion_pays

from .layer import prepare_conv

__all__ = ["Buffer", "LayerJob", "NetworkPlan", "plan_network"]

_ALIGN = 64


@dataclass(frozen=True)
class Buffer:
    """A feature map in DDR: where, its (C, H, W) shape and element type."""

    addr: int
    shape: tuple[int, int, int]
    ttype: C.TensorType

    def words(self, cfg: HwConfig) -> int:
        return feature_map_words(cfg, self.shape, self.ttype.bits)


@dataclass(frozen=True)
class LayerJob:
    """One layer: its chain of ``desc_count`` descriptors (row tiles) from ``desc_addr``."""

    name: str
    op: str
    desc_addr: int
    desc_count: int
    out: Buffer


@dataclass
class NetworkPlan:
    """DDR contents and the layer sequence of one network on one hardware config."""

    cfg: HwConfig
    window: tuple[int, int]
    input: Buffer
    output: Buffer
    jobs: list[LayerJob] = field(default_factory=list)
    memory: list[tuple[int, bytes]] = field(default_factory=list)
    chain_addr: int = 0
    chain_count: int = 0
    #: The first layer runs folded (space-to-depth, ``rtl.interface.stem``), or None.
    fold: Fold | None = None
    #: The input is written split into nibbles (a ``split_input`` build,
    #: ``rtl.interface.stem.split_pixels``), after any fold.
    split: bool = False


class _Allocator:
    def __init__(self, base: int) -> None:
        self.next = base

    def take(self, nbytes: int) -> int:
        addr = self.next
        self.next += -(-nbytes // _ALIGN) * _ALIGN + _ALIGN
        return addr


def plan_network(model: QModel, cfg: HwConfig, *, base: int, size: int,
                 fuse: bool = True, fuse_pool: bool | None = None) -> NetworkPlan:
    """Lay out ``model`` in DDR from ``base`` (a window of ``size`` bytes) for ``cfg``.

    With ``fuse``, a residual add runs inside the conv that produces its input
    (:func:`fusable_adds`): the add's output is written, the conv's is never stored; so does
    the stem's max-pool (:func:`fusable_pools`: one "conv+maxpool" job named after the conv,
    its output the pool's) where that pays (:func:`pool_fusion_pays`: its tiles fit the
    buffers and recompute less than the fusion saves; with ``fuse_pool`` True wherever the
    tiles fit, False never), else it runs on its own.
    Raises ``quant.fit.ModelMismatchError`` if the model does not fit the hardware, and
    ValueError if the plan does not fit the window.
    """
    check_fits(model, cfg)
    info = model.infer()
    alloc = _Allocator(base)
    act, sgn = cfg.act_bits, cfg.act_bits + 1

    def buffer(name: str, shape: tuple[int, int, int] | None = None,
               ttype: C.TensorType | None = None) -> Buffer:
        buf = Buffer(0, shape or info[name].shape, ttype or info[name].ttype)
        return Buffer(alloc.take(8 * buf.words(cfg)), buf.shape, buf.ttype)

    # A stride-2 first layer on few channels runs folded (rtl.interface.stem): the host writes
    # the folded image, and the layer's weights are folded to match.
    readers = [n for n in model.nodes if "input" in n["inputs"]]
    fold = (fold_plan(readers[0], info["input"].shape, cfg, info["input"].ttype.bits)
            if len(readers) == 1 else None)
    shape = fold.stored_shape if fold else info["input"].shape
    # On a split_input build the pixels go into the arrays as nibbles: the input map holds
    # their low and high nibbles in chunks of their own (check_fits: only convs read it).
    if cfg.split_input:
        buffers = {"input": buffer("input", (split_channels(shape[0], cfg), *shape[1:]),
                                   C.TensorType(False, NIBBLE_BITS))}
    else:
        buffers = {"input": buffer("input", shape)}
    plan = NetworkPlan(cfg, (base, size), buffers["input"], buffers["input"], fold=fold,
                       split=cfg.split_input)
    layers: list[tuple[str, str, list[bytes], Buffer]] = []
    # A conv that reads the same map as an earlier one runs right after it, from its band.
    nodes = run_order(model.nodes)
    pools = fusable_pools(nodes) if fuse and fuse_pool is not False else {}
    fused = {**fusable_adds(nodes), **pools} if fuse else {}
    pending: dict[str, dict] = {}       # a fused conv's fields, until its add or max-pool
    for node in nodes:
        name, op = node["name"], node["op"]
        src = buffers[node["inputs"][0]]
        if op == "add" and any(i in pending for i in node["inputs"]):
            conv_name = next(i for i in node["inputs"] if i in pending)
            other = next(i for i in node["inputs"] if i != conv_name)
            out = buffers[name] = buffer(name)
            src2 = buffers[other]
            (ma, mb), (sa, sb) = node["mult"], node["shift"]
            if node["inputs"][0] != conv_name:         # input a is the conv's result
                (ma, sa), (mb, sb) = (mb, sb), (ma, sa)
            fields = {**pending.pop(conv_name), "op": Op.CONV_ADD, "out_addr": out.addr,
                      "out_bits": out.ttype.bits, "in2_addr": src2.addr,
                      "in2_bits": src2.ttype.bits,
                      "mode": int(PostMode.RELU if node["relu"] else PostMode.SIGNED),
                      "mult_a": ma, "shift_a": sa, "mult_b": mb, "shift_b": sb}
            if src2.ttype.bits not in (act, sgn):
                raise ValueError(f"{name}: {src2.ttype.bits}-bit inputs are not supported "
                                 f"by the engine")
            layers.append((conv_name, "conv+add",
                           layer_descriptors(cfg, name=conv_name, **fields), out))
            continue
        if op == "maxpool" and node["inputs"][0] in pending:   # in the conv's write-back
            conv_name = node["inputs"][0]
            out = buffers[name] = buffer(name)
            fields = {**pending.pop(conv_name), "out_addr": out.addr,
                      "out_bits": out.ttype.bits, "pool": POOL_TOP}
            layers.append((conv_name, "conv+maxpool",
                           layer_descriptors(cfg, name=conv_name, **fields), out))
            continue
        out = (Buffer(0, info[name].shape, info[name].ttype) if name in fused
               else buffer(name))
        if op == "fc":
            out = Buffer(out.addr, out.shape, C.TensorType(True, 32))
        buffers[name] = out
        fields = dict(in_addr=src.addr, out_addr=out.addr, in_c=src.shape[0],
                      in_h=src.shape[1], in_w=src.shape[2], out_c=out.shape[0],
                      out_h=out.shape[1], out_w=out.shape[2], in_bits=src.ttype.bits,
                      out_bits=out.ttype.bits)
        if op in ("conv", "fc"):
            p = model.params(name)
            weight = p["weight"]
            conv = node if op == "conv" else {"stride": 1, "padding": 0}
            if fold and node is readers[0]:
                weight = fold_weight(weight, fold)
                conv = {"stride": 1, "padding": 0}
                if fold.lanes:       # the engine unrolls the stored map it reads
                    fields.update(fold.input_fields)
            if plan.split and node["inputs"][0] == "input":
                weight = split_weight(weight, cfg)
                fields["split"] = 1
            layer = prepare_conv(weight, p["scheme"], p["bias"], p["mult"], p["shift"], cfg)
            w_addr = alloc.take(8 * len(layer.weights))
            plan.memory.append((w_addr, layer.weights.astype("<u8").tobytes()))
            mode = (PostMode.LOGITS if op == "fc" else
                    PostMode.RELU if node["relu"] else PostMode.SIGNED)
            fields.update(op=Op.CONV, weight_addr=w_addr, kernel_h=layer.kernel[0],
                          kernel_w=layer.kernel[1], stride=conv["stride"],
                          pad=conv["padding"], mode=int(mode),
                          passes=layer.passes, steps=layer.steps)
        elif op == "add":
            src2 = buffers[node["inputs"][1]]
            (ma, mb), (sa, sb) = node["mult"], node["shift"]
            fields.update(op=Op.ADD, in2_addr=src2.addr, in2_bits=src2.ttype.bits,
                          mode=int(PostMode.RELU if node["relu"] else PostMode.SIGNED),
                          mult_a=ma, shift_a=sa, mult_b=mb, shift_b=sb)
        elif op == "maxpool":
            fields.update(op=Op.MAXPOOL, kernel_h=node["kernel"], kernel_w=node["kernel"],
                          stride=node["stride"],
                          pad=node["padding"], mode=int(PostMode.RELU))
        else:
            fields.update(op=Op.AVGPOOL, mult_a=node["mult"], shift_a=node["shift"],
                          mode=int(PostMode.RELU))
        for bits in (fields["in_bits"], fields.get("in2_bits", act)):
            if bits not in (act, sgn, NIBBLE_BITS if plan.split else 8):
                raise ValueError(f"{name}: {bits}-bit inputs are not supported by the engine")
        if name in pools and not pool_fusion_pays(cfg, name=name, always=bool(fuse_pool),
                                                  **fields):
            # Its tiles in pooled rows (a lead row each) do not fit the buffers, or recompute
            # more than the fusion saves: the conv is stored and the pool runs on its own.
            del fused[name]
            out = buffers[name] = buffer(name)
            fields["out_addr"] = out.addr
        if name in fused:
            pending[name] = fields
            continue
        layers.append((name, op, layer_descriptors(cfg, name=name, **fields), out))
    # One table: every layer's tiles in order, so the network is also one chain.
    table = b"".join(d for _, _, descs, _ in layers for d in descs)
    plan.chain_addr = addr = alloc.take(len(table))
    plan.chain_count = len(table) // descriptor_bytes()
    plan.memory.append((addr, table))
    for name, op, descs, out in layers:
        plan.jobs.append(LayerJob(name, op, addr, len(descs), out))
        addr += len(descs) * descriptor_bytes()
    plan.output = buffers[model.output]
    if alloc.next > base + size:
        raise ValueError(f"the network needs {alloc.next - base} bytes of DDR from "
                         f"{base:#x}, more than the {size} bytes of the window")
    return plan
