"""Compile on the PC, run on the board: a model file and a build package to one self-contained
compiled network (DDR image, descriptor table, input/output layout, hashes).

``python -m firmware.compile --package build/zc706-<hash> --model runs/.../model.npz
[--out net.ilmpq]`` plans the network once (``firmware.network``), at DDR offset 0; the
board copies the image into its DMA buffer and relocates the address words listed in the
file by the buffer's bus address, so nothing is planned again on the board. The file is a
numpy ``.npz`` (no pickled objects): ``image`` (uint8), ``relocs`` (uint32 byte offsets of
32-bit address words), ``manifest`` (UTF-8 JSON), and the SHA-256 of both in the manifest.

Compiling needs the PC environment (the cycle model that sizes each layer's timeout reads the
RTL's latencies); loading and running need only numpy.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quant.model_format import QModel
from rtl.config import HwConfig
from rtl.interface.ddr import pack_feature_map, unpack_feature_map
from rtl.interface.descriptor import (
    ADDRESS_FIELDS,
    FIELDS,
    Op,
    descriptor_bytes,
    split_descriptors,
    unpack_descriptor,
)
from rtl.interface.stem import Fold, fold_input, split_pixels

from .network import plan_network
from .package import BuildPackage

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CompileError",
    "CompiledNetwork",
    "compile_network",
    "file_sha256",
    "main",
]

FORMAT_NAME = "ilmpq-compiled-network"
#: 3: descriptors of layout version 4 (``split``), the input may be split into nibbles.
FORMAT_VERSION = 3
#: Margin over the cycle model's estimate before a layer counts as hung.
TIMEOUT_MARGIN = 20
_FIELD_INDEX = {name: i for i, (name, _) in enumerate(FIELDS)}


class CompileError(ValueError):
    """A compiled network file is damaged, from another build or another model."""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class CompiledNetwork:
    """A network laid out in DDR from offset 0, ready to copy and relocate."""

    image: np.ndarray          # uint8, the DDR contents from offset 0
    relocs: np.ndarray         # uint32 byte offsets of address words to add the base to
    manifest: dict[str, Any]

    # ---- what the driver reads ----------------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes of DDR the network needs (the DMA buffer must hold at least this)."""
        return int(self.image.size)

    @property
    def config_hash(self) -> str:
        return str(self.manifest["config_hash"])

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(self.manifest["layers"])

    @property
    def chain(self) -> tuple[int, int]:
        """(byte offset, count) of the whole network's descriptor table."""
        return int(self.manifest["chain"]["offset"]), int(self.manifest["chain"]["count"])

    @property
    def modelled_cycles(self) -> int:
        """The cycle model's estimate of one image: the whole network as one chain, as it
        runs (assumptions in the manifest's ``cycle_model``); files written before the chain
        was modelled give the layers' sum."""
        chain = self.manifest["chain"].get("modelled_cycles")
        if chain is not None:
            return int(chain)
        return sum(int(layer["modelled_cycles"]) for layer in self.manifest["layers"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.manifest["input"]["shape"])

    @property
    def num_classes(self) -> int:
        return int(np.prod(self.manifest["output"]["shape"]))

    def layer_of(self, index: int) -> tuple[str, int, int]:
        """(layer name, tile, tiles) of descriptor ``index`` of the whole chain."""
        first = 0
        for layer in self.manifest["layers"]:
            if index < first + layer["desc_count"]:
                return layer["name"], index - first, layer["desc_count"]
            first += layer["desc_count"]
        return "(past the last layer)", 0, 0

    def relocated(self, base: int, addr_bits: int = 32) -> bytes:
        """The image with every address word moved to bus address ``base``."""
        if base % 64:
            raise ValueError(f"the DMA buffer's bus address {base:#x} must be 64-byte aligned")
        if base + self.size > 1 << addr_bits:
            raise ValueError(f"the network at {base:#x} ({self.size} bytes) passes the "
                             f"{addr_bits}-bit address space of the accelerator")
        image = self.image.copy()
        words = image[: self.size - self.size % 4].view("<u4")
        words[self.relocs // 4] += np.uint32(base)
        return image.tobytes()

    def input_bytes(self, image: np.ndarray) -> bytes:
        """One input image (C, H, W) of unsigned pixels, packed (and folded) for DDR."""
        spec = self.manifest["input"]
        image = np.asarray(image)
        if tuple(image.shape) != tuple(spec["shape"]):
            raise ValueError(f"the network takes images of shape {tuple(spec['shape'])} "
                             f"(C, H, W), not {tuple(image.shape)}")
        if not np.issubdtype(image.dtype, np.integer):
            bits = 8 if spec["split"] else spec["bits"]
            raise TypeError(f"images must hold integer pixels (u{bits}), not {image.dtype}")
        if spec["fold"]:
            f = spec["fold"]
            image = fold_input(image, Fold(f["kernel"], f["pad"], tuple(f["in_shape"]),
                                           f["unroll"], f.get("lanes", 0)))
        if spec["split"]:
            image = split_pixels(image, self.cfg)
        words = pack_feature_map(image, spec["bits"], signed=False, cfg=self.cfg)
        return words.astype("<u8").tobytes()

    def output_nbytes(self) -> int:
        return int(self.manifest["output"]["bytes"])

    def logits(self, raw: bytes) -> np.ndarray:
        """The integer logits from the output buffer's bytes."""
        spec = self.manifest["output"]
        fm = unpack_feature_map(np.frombuffer(raw, "<u8"), tuple(spec["shape"]), spec["bits"],
                                signed=spec["signed"], cfg=self.cfg)
        return fm.reshape(-1)

    @functools.cached_property
    def cfg(self) -> HwConfig:
        """The hardware config the network was planned for."""
        return HwConfig.from_json(json.dumps(self.manifest["hwconfig"]))

    def timeout_s(self, layer: dict[str, Any] | None, clock_mhz: float) -> float:
        """How long a layer (or, for None, the whole network) may take before it counts as
        hung: the cycle model's estimate times a wide margin (the backend adds its floor)."""
        cycles = layer["modelled_cycles"] if layer else self.modelled_cycles
        return TIMEOUT_MARGIN * cycles / (clock_mhz * 1e6)

    # ---- file ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        manifest = dict(self.manifest)
        manifest["image_sha256"] = hashlib.sha256(self.image.tobytes()).hexdigest()
        manifest["relocs_sha256"] = hashlib.sha256(self.relocs.tobytes()).hexdigest()
        blob = np.frombuffer(json.dumps(manifest, indent=1).encode(), np.uint8)
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as f:
            np.savez(f, image=self.image, relocs=self.relocs, manifest=blob)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> CompiledNetwork:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("image", "relocs", "manifest")}
        except FileNotFoundError:
            raise CompileError(f"{path}: no such file; make it with 'python -m "
                               f"firmware.compile --package DIR --model MODEL.npz'") from None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise CompileError(f"{path}: not a readable compiled network ({exc}); compile it "
                               f"again with 'python -m firmware.compile'") from None
        try:
            manifest = json.loads(arrays["manifest"].tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CompileError(f"{path}: damaged manifest ({exc}); compile it again") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise CompileError(f"{path}: not a compiled network (format {found!r})")
        if manifest.get("version") != FORMAT_VERSION:
            raise CompileError(f"{path}: compiled network version {manifest.get('version')!r}, "
                               f"this firmware reads version {FORMAT_VERSION}; compile it again "
                               f"with this firmware's 'python -m firmware.compile'")
        image, relocs = arrays["image"], arrays["relocs"]
        if image.dtype != np.uint8 or relocs.dtype != np.uint32 or image.ndim != 1:
            raise CompileError(f"{path}: image or relocation table has the wrong type")
        for what, arr in (("image", image), ("relocs", relocs)):
            if hashlib.sha256(arr.tobytes()).hexdigest() != manifest.get(f"{what}_sha256"):
                raise CompileError(f"{path}: the {what} does not match its checksum (the file "
                                   f"is damaged); compile it again")
        if relocs.size and (relocs.max() + 4 > image.size or np.any(relocs % 4)):
            raise CompileError(f"{path}: a relocation lies outside the image")
        return cls(image, relocs, manifest)

    def check_package(self, package: BuildPackage) -> None:
        """Refuse a network compiled for another build."""
        if self.config_hash != package.cfg.config_hash_hex:
            raise CompileError(
                f"the network was compiled for configuration {self.config_hash} "
                f"({self.manifest['config_name']}), but the package {package.path} is "
                f"{package.cfg.config_hash_hex}; compile it for this package with 'python -m "
                f"firmware.compile --package {package.path} --model MODEL.npz'")

    def check_model(self, model_path: str | Path) -> None:
        """Refuse a model file other than (or changed since) the one compiled."""
        if file_sha256(model_path) != self.manifest["model"]["sha256"]:
            raise CompileError(
                f"{model_path} is not the model this network was compiled from "
                f"({self.manifest['model']['file']}, sha256 "
                f"{self.manifest['model']['sha256'][:12]}...): it changed or is another "
                f"model; compile it again with 'python -m firmware.compile'")


def compile_network(model: QModel, package: BuildPackage, *, model_path: str | Path,
                    fuse_pool: bool | None = None) -> CompiledNetwork:
    """Plan ``model`` for the package's hardware at offset 0 and record how to relocate it;
    ``fuse_pool``: as :func:`firmware.network.plan_network`'s."""
    from rtl.cycle_model import DdrTiming, chain_cycles  # PC only: the RTL's latencies

    cfg = package.cfg
    plan = plan_network(model, cfg, base=0, size=1 << cfg.axi_addr_width, fuse_pool=fuse_pool)
    end = max(addr + len(blob) for addr, blob in plan.memory)
    end = max(end, plan.input.addr + 8 * plan.input.words(cfg),
              plan.output.addr + 8 * plan.output.words(cfg))
    image = np.zeros(-(-end // 64) * 64, np.uint8)
    for addr, blob in plan.memory:
        image[addr:addr + len(blob)] = np.frombuffer(blob, np.uint8)
    dbytes = descriptor_bytes()
    relocs: list[int] = []
    table = image[plan.chain_addr:plan.chain_addr + plan.chain_count * dbytes].tobytes()
    descs = split_descriptors(table)
    for i, raw in enumerate(descs):
        d = unpack_descriptor(raw)
        for name in ADDRESS_FIELDS[Op(d["op"])]:
            relocs.append(plan.chain_addr + i * dbytes + 4 * _FIELD_INDEX[name])
    timing = DdrTiming.zynq_hp()
    layers = []
    for job in plan.jobs:
        first = (job.desc_addr - plan.chain_addr) // dbytes
        layers.append({"name": job.name, "op": job.op, "desc_offset": job.desc_addr,
                       "desc_count": job.desc_count, "out_offset": job.out.addr,
                       "modelled_cycles": chain_cycles(
                           cfg, descs[first:first + job.desc_count], timing,
                           memory=[(0, image)])})
    fold = plan.fold
    manifest: dict[str, Any] = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION,
        "config_hash": cfg.config_hash_hex, "config_name": cfg.name,
        "hwconfig": json.loads(cfg.to_json()),
        "model": {"file": Path(model_path).name, "sha256": file_sha256(model_path)},
        "size": int(image.size),
        "input": {"offset": plan.input.addr, "shape": list(model.input_shape),
                  "bits": plan.input.ttype.bits,
                  "fold": ({"kernel": fold.kernel, "pad": fold.pad,
                            "in_shape": list(fold.in_shape), "unroll": fold.unroll,
                            "lanes": fold.lanes}
                           if fold else None),
                  "split": plan.split},
        "output": {"offset": plan.output.addr, "shape": list(plan.output.shape),
                   "bits": plan.output.ttype.bits, "signed": plan.output.ttype.signed,
                   "bytes": 8 * plan.output.words(cfg)},
        "chain": {"offset": plan.chain_addr, "count": plan.chain_count,
                  "modelled_cycles": chain_cycles(cfg, descs, timing, memory=[(0, image)])},
        "layers": layers,
        "cycle_model": {"clock_mhz": cfg.clock_mhz, "read_latency": timing.read_latency,
                        "write_latency": timing.write_latency},
    }
    return CompiledNetwork(image, np.array(relocs, np.uint32), manifest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware.compile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", required=True, metavar="DIR",
                        help="build package folder (build/<board>-<hash>)")
    parser.add_argument("--model", required=True, metavar="FILE",
                        help="quantized model file (.npz from python -m quant.train)")
    parser.add_argument("--out", metavar="FILE",
                        help="compiled network to write (default: <model>-<board>.ilmpq.npz "
                             "beside the model)")
    args = parser.parse_args(argv)
    from quant.fit import ModelMismatchError
    from quant.model_format import ModelFormatError

    from .package import PackageError
    try:
        package = BuildPackage.load(args.package)
        model = QModel.load(args.model)
        net = compile_network(model, package, model_path=args.model)
    except (PackageError, ModelFormatError, ModelMismatchError, CompileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:        # the plan does not fit (tiling, window)
        print(f"error: {args.model} cannot run on {package.path}: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else Path(args.model).with_name(
        f"{Path(args.model).stem}-{package.board}.ilmpq.npz")
    try:
        net.save(out)
    except OSError as exc:
        print(f"error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    mhz = package.cfg.clock_mhz
    print(f"{out}: {len(net.layers)} layers, {net.chain[1]} descriptors, {net.size:,} bytes of "
          f"DDR; modelled {net.modelled_cycles / (mhz * 1e3):.2f} ms per image at {mhz:g} MHz")
    return 0


if __name__ == "__main__":
    sys.exit(main())

