"""Helpers for the firmware tests: build-package folders and compiled networks in tmp."""

from __future__ import annotations

import json
from pathlib import Path

from firmware.compile import CompiledNetwork, compile_network
from firmware.package import BuildPackage
from quant.model_format import QModel
from rtl.config import HwConfig
from rtl.interface.regmap import build_regmap

#: A small engine with small buffers: many layers run as several row tiles.
SMALL = HwConfig(name="engine-sim", part="xc7z020clg400-1", clock_mhz=100.0, pot_rows=4,
                 pot_cols=8, dsp_rows=4, dsp_cols=8, max_reduction=1152,
                 max_channels=64, max_spatial=64, act_buf_depth=256, weight_buf_depth=128,
                 out_buf_depth=64, result_lanes=4)


def make_package(folder: Path, cfg: HwConfig, **manifest) -> BuildPackage:
    """A build package folder as ``build.py`` writes it (without the bitstream)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hwconfig.json").write_text(cfg.to_json())
    (folder / "regmap.json").write_text(build_regmap(cfg).to_json())
    base = {"board": cfg.name, "config_name": cfg.name, "config_hash": cfg.config_hash_hex,
            "clock_mhz": cfg.clock_mhz, "regs_base": 0x43C00000, "regs_size": 0x10000,
            "fclk0_mhz": cfg.clock_mhz, "hp_ports": ["S_AXI_HP0"], "bin": None,
            "bitstream": None, "hwh": None}
    (folder / "package.json").write_text(json.dumps({**base, **manifest}, indent=1))
    return BuildPackage.load(folder)


def compiled(model: QModel, package: BuildPackage, folder: Path, name: str = "model",
             fuse_pool: bool | None = None) -> tuple[Path, Path, CompiledNetwork]:
    """Save ``model``, compile it for ``package`` (``fuse_pool``: as ``plan_network``'s);
    (model path, network path, network)."""
    model_path = model.save(folder / f"{name}.npz")
    net = compile_network(model, package, model_path=model_path, fuse_pool=fuse_pool)
    net_path = net.save(folder / f"{name}.ilmpq.npz")
    return model_path, net_path, CompiledNetwork.load(net_path)
