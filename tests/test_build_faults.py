"""build.py's answers to faults: one line on stderr, a clear exit code, nothing corrupted."""

from __future__ import annotations

import fcntl
import json
import os

import build
from rtl.config import preset


def _out(tmp_path, board="pynq-z2"):
    return tmp_path / f"{board}-{preset(board).config_hash_hex}"


def test_second_build_in_the_same_folder_is_refused(tmp_path, capsys) -> None:
    folder = _out(tmp_path)
    folder.mkdir(parents=True)
    with open(folder / ".build.lock", "a+") as held:     # a build that is running
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        rc = build.main(["--board", "pynq-z2", "--out", str(tmp_path), "--to", "regmap"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == (f"error: {folder} is busy: another build (PID 4242) is running in it; wait "
                   f"for it to finish or build into another folder with --out\n")
    assert sorted(p.name for p in folder.iterdir()) == [".build.lock"]   # nothing touched


def test_unwritable_out_is_one_line(tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rc = build.main(["--board", "pynq-z2", "--out", str(blocker / "sub")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"error: cannot write the build folder {_out(blocker / 'sub')}: ")
    assert err.endswith("; choose a writable --out\n")


def test_interrupt_names_the_step_to_resume_from(tmp_path, capsys, monkeypatch) -> None:
    def interrupted(ctx, start=None, stop=None):
        ctx.state_path.write_text(json.dumps({"steps": {"elaborate": {}, "regmap": {}}}))
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "run_flow", interrupted)
    rc = build.main(["--board", "pynq-z2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 130
    assert err == (f"interrupted during step estimate; resume with 'python build.py --board "
                   f"pynq-z2 --out {tmp_path} --from estimate'\n")
    # The lock is free again for the next build of this process.
    with open(_out(tmp_path) / ".build.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert os.path.exists(_out(tmp_path) / ".build.lock")
