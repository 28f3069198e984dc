"""The board's software stands alone: the deploy folder runs the emulator with Amaranth and
torch unimportable, and every module it holds keeps to Python 3.10."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from firmware.deploy import board_module_files, write_deploy
from quant.random_model import random_images, random_resnet18
from rtl.config import preset
from tests.firmware_util import compiled, make_package

#: Run first in the child: any import of these packages fails, as on a board.
_BLOCK = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("amaranth", "torch", "sklearn", "cocotb", "scipy"):
                raise ImportError(f"{name} is not available on the board")
    sys.meta_path.insert(0, Block())
""")


def test_board_modules_import_no_hdl_and_no_torch(tmp_path) -> None:
    pkg = make_package(tmp_path / "pkg", preset("pynq-z2"))
    model = random_resnet18(8, input_shape=(3, 32, 32), width=0.125, small_stem=False)
    model_path, net_path, _ = compiled(model, pkg, tmp_path)
    image = random_images(np.random.default_rng(1), 1, model.input_shape)[0]
    np.save(tmp_path / "image.npy", image.astype(np.uint8))
    deploy = write_deploy(pkg.path)
    shipped = sorted(p.relative_to(deploy) for p in deploy.rglob("*.py"))
    assert shipped == board_module_files()
    child = _BLOCK + textwrap.dedent(f"""
        import importlib, pkgutil
        import firmware
        for mod in pkgutil.iter_modules(firmware.__path__):
            importlib.import_module("firmware." + mod.name)
        import firmware.emu, firmware.run
        ours = [m for n, m in sys.modules.items()
                if n.split(".")[0] in ("firmware", "rtl", "quant")]
        outside = [m.__name__ for m in ours if not m.__file__.startswith({str(deploy)!r})]
        assert not outside, outside
        import amaranth
    """)
    # Every firmware module imports; the blocker really blocks (amaranth fails last).
    r = subprocess.run([sys.executable, "-c", child], cwd=deploy, capture_output=True,
                       text=True, env={"PYTHONPATH": str(deploy), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1 and r.stderr.strip().endswith(
        "ImportError: amaranth is not available on the board"), r.stderr
    # The command runs the emulator on the model and checks it against the golden model.
    run = _BLOCK + textwrap.dedent(f"""
        import sys
        from firmware.run import main
        sys.exit(main(["--package", ".", "--network", {str(net_path)!r}, "--image",
                       {str(tmp_path / "image.npy")!r}, "--backend", "emu", "--check",
                       "--model", {str(model_path)!r}, "--per-layer"]))
    """)
    r = subprocess.run([sys.executable, "-c", run], cwd=deploy, capture_output=True, text=True,
                       env={"PYTHONPATH": str(deploy), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 mismatching image(s) of 1, bit-exact" in r.stdout


def test_board_modules_keep_to_python_3_10() -> None:
    """vermin finds the oldest Python each module needs; the boards have 3.10."""
    from firmware.deploy import REPO_ROOT

    files = [str(REPO_ROOT / f) for f in board_module_files()]
    vermin = Path(sys.executable).with_name("vermin")      # the console script of the venv
    r = subprocess.run([str(vermin), "-t=3.10-", "--no-tips", "--violations",
                        "--eval-annotations", *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Minimum required versions: 3.10" in r.stdout, r.stdout
