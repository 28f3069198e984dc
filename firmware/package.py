"""A build package as the firmware reads it: the hardware config, the register map and the
manifest (register base address, clocks, bitstream files) that ``python build.py`` wrote."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtl.config import HwConfig
from rtl.interface.regmap import RegisterMap

__all__ = ["BuildPackage", "PackageError"]


class PackageError(ValueError):
    """A build package is missing a file or holds one that cannot be read."""


@dataclass(frozen=True)
class BuildPackage:
    """``build/<board>-<hash>/`` (or the ``deploy/`` folder copied to a board)."""

    path: Path
    cfg: HwConfig
    regmap: RegisterMap
    manifest: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> BuildPackage:
        path = Path(path)
        if not path.is_dir():
            raise PackageError(f"{path}: no build package here; build one with "
                               f"'python build.py --board <board>' and pass its folder "
                               f"(build/<board>-<hash>)")
        texts = {}
        for name in ("hwconfig.json", "regmap.json", "package.json"):
            try:
                texts[name] = (path / name).read_text()
            except OSError as exc:
                raise PackageError(f"{path}: cannot read {name} ({exc.strerror or exc}); "
                                   f"rebuild the package with 'python build.py'") from None
        try:
            cfg = HwConfig.from_json(texts["hwconfig.json"])
            regmap = RegisterMap.from_json(texts["regmap.json"])
            manifest = json.loads(texts["package.json"])
        except (TypeError, ValueError) as exc:
            raise PackageError(f"{path}: {exc}") from None
        if not isinstance(manifest, dict):
            raise PackageError(f"{path}/package.json must hold an object")
        if regmap.config_hash != cfg.config_hash:
            raise PackageError(
                f"{path}: regmap.json is for configuration {regmap.config_hash:08x} but "
                f"hwconfig.json is {cfg.config_hash_hex}; the files come from different "
                f"builds, rebuild the package with 'python build.py'")
        return cls(path, cfg, regmap, manifest)

    @classmethod
    def of(cls, cfg: HwConfig, regmap: RegisterMap, path: str | Path = ".",
           **manifest: Any) -> BuildPackage:
        """A package held in memory (the RTL benches build the hardware themselves)."""
        return cls(Path(path), cfg, regmap, {"board": cfg.name, "clock_mhz": cfg.clock_mhz,
                                             **manifest})

    @property
    def board(self) -> str:
        return str(self.manifest.get("board", self.cfg.name))

    @property
    def clock_mhz(self) -> float:
        """The fabric clock the build was made (and timed) for."""
        return float(self.manifest.get("clock_mhz", self.cfg.clock_mhz))

    def rebuild_hint(self) -> str:
        return f"'python build.py --board {self.board}'"

    def get(self, key: str) -> Any:
        """A manifest entry the board needs; a missing one names the fix."""
        if self.manifest.get(key) is None:
            raise PackageError(f"{self.path}/package.json has no {key!r}; it comes from a "
                               f"build with the Vivado project of this version: rebuild with "
                               f"{self.rebuild_hint()}")
        return self.manifest[key]

    def file(self, key: str) -> Path:
        """The package file named by manifest entry ``key`` (e.g. ``"bin"``), which must exist."""
        path = self.path / str(self.get(key))
        if not path.is_file():
            raise PackageError(f"{path} is missing; copy it from the Vivado build (see the "
                               f"README's 'Run on the board') or rebuild with "
                               f"{self.rebuild_hint()}")
        return path
