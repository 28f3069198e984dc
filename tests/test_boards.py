"""The board table: every board fact written once, in ``rtl/boards.py``, and read from there."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from quant.schemes import RATIO_PRESETS
from rtl.boards import BOARDS, PARTS, board
from rtl.build.flow import make_context
from rtl.config import PRESETS, preset

ROOT = Path(__file__).resolve().parent.parent


def test_every_board_has_a_preset_on_its_part():
    assert sorted(PRESETS) == sorted(BOARDS)
    for name, facts in BOARDS.items():
        assert facts.name == name
        assert preset(name).part == facts.part.name
        assert preset(name).resources == facts.part.resources()
        assert facts.ratio == RATIO_PRESETS[facts.paper.method]
        assert make_context(name).ratio == facts.ratio


def test_parts_come_from_the_boards():
    assert PARTS == {b.part.name: b.part for b in BOARDS.values()}
    assert {p.device for p in PARTS.values()} == {"xc7z020", "xc7z045"}


@pytest.mark.parametrize("name", ["zedboard", "", None, 3])
def test_unknown_board(name):
    with pytest.raises(ValueError, match=r"^unknown board .*; valid boards: pynq-z2, zc706$"):
        board(name)


def _facts() -> dict[str, str]:
    """Literal spellings of each board fact that only ``rtl/boards.py`` may contain."""
    out = {}
    for b in BOARDS.values():
        out[b.part.name] = b.part.name
        for key, value in b.part.resources().items():
            if value >= 1000:
                out[f"{b.name} {key}"] = f"{value:_}|{value}"
        out[f"{b.name} PS DDR bytes"] = re.escape(repr(b.ps.ddr_bytes))
        out[f"{b.name} paper latency"] = rf"\b{re.escape(repr(b.paper.latency_ms))}\b"
        out[f"{b.name} paper GOP/s"] = rf"\b{re.escape(repr(b.paper.gops))}\b"
        out[f"{b.name} ratio"] = r"\(" + r",\s*".join(map(str, b.ratio)) + r"\)"
    return out


def test_board_facts_are_written_once():
    """No module of the project (tests aside) spells a part name, a part's resources, the
    paper's figures or a board's ratio except the board table (and the paper's named ratios
    in ``quant/schemes.py``)."""
    sources = [p for d in ("rtl", "quant", "firmware", "sim") for p in (ROOT / d).rglob("*.py")
               if not p.name.startswith("test_")] + [ROOT / "build.py"]
    allowed = {ROOT / "rtl" / "boards.py"}
    found = []
    for what, pattern in _facts().items():
        for path in sources:
            if path in allowed or (what.endswith("ratio") and path.name == "schemes.py"):
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if re.search(pattern, code) and "Example" not in line:
                    found.append(f"{path.relative_to(ROOT)}:{n}: {what}: {line.strip()}")
    assert not found, "board facts outside rtl/boards.py:\n" + "\n".join(found)


def test_the_gateware_imports_no_build_tooling_and_no_firmware():
    """``rtl/`` outside ``rtl/build/`` is gateware: importing all of it loads neither the build
    tooling nor the firmware."""
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts)
                     for p in (ROOT / "rtl").rglob("*.py")
                     if "build" not in p.relative_to(ROOT).parts and p.name != "__main__.py")
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('rtl.build', 'firmware')))\n"
            "print(','.join(bad))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip() == ""


def test_no_gateware_source_names_the_tooling_or_the_firmware():
    """Also imports inside functions, which importing the modules does not run."""
    import re
    found = []
    for path in (ROOT / "rtl").rglob("*.py"):
        if "build" in path.relative_to(ROOT).parts:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*(from|import)\s+(firmware\b|rtl\.build\b|\.+build\b)", line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)

