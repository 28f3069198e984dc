"""The ./run wrapper runs the command where the user typed it, with the project's Python."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_command_runs_in_the_callers_folder(tmp_path) -> None:
    (tmp_path / "tiny.json").write_text("{}")
    r = subprocess.run([str(REPO / "run"), "python", "-c",
                        "import os, sys, rtl; print(os.getcwd()); print(open('tiny.json').read());"
                        "print(sys.prefix)"],
                       cwd=tmp_path, capture_output=True, text=True, check=True)
    cwd, content, prefix = r.stdout.split()
    assert Path(cwd) == tmp_path and content == "{}"
    assert Path(prefix) == REPO / ".venv"


def test_no_command_is_a_usage_error() -> None:
    r = subprocess.run([str(REPO / "run")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("usage: ./run COMMAND")
