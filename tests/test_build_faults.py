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


def _built_to_regmap(tmp_path, capsys):
    tiny = tmp_path / "tiny.json"
    tiny.write_text(preset("pynq-z2").replace(name="tiny", pot_rows=2, pot_cols=4, dsp_rows=2,
                                              dsp_cols=4).to_json())
    args = ["--board", "pynq-z2", "--config", str(tiny), "--out", str(tmp_path)]
    assert build.main([*args, "--to", "regmap"]) == 0
    capsys.readouterr()
    folder = next(p for p in tmp_path.iterdir() if p.is_dir())
    return args, folder


def test_damaged_state_and_parts_files_are_one_line(tmp_path, capsys) -> None:
    args, folder = _built_to_regmap(tmp_path, capsys)
    parts = folder / "work" / "parts.json"
    good = parts.read_text()
    for damage in ("{not json", "[1, 2]", '{"name": "x"}', "\xff\xfe"):
        parts.write_text(damage, errors="surrogateescape" if damage[0] == "\xff" else None)
        assert build.main([*args, "--from", "synthesize", "--to", "synthesize"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {parts} is damaged ")
        assert err.endswith("; run with --from elaborate\n")
    parts.write_text(good)
    state = folder / "build-state.json"
    for damage in ("", "[]", '{"steps": []}', '{"inputs": {}}'):
        state.write_text(damage)
        assert build.main([*args, "--from", "estimate", "--to", "estimate"]) == 2
        assert capsys.readouterr().err == (
            f"error: {state} is damaged (not a build state); delete it and build from the "
            f"first step (drop --from)\n")


def test_missing_or_damaged_record_of_an_earlier_step(tmp_path, capsys) -> None:
    args, folder = _built_to_regmap(tmp_path, capsys)
    assert build.main([*args, "--from", "estimate", "--to", "bitstream"]) == 0
    capsys.readouterr()
    record = folder / "work" / "utilization.json"
    record.unlink()
    assert build.main([*args, "--from", "package"]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot start at 'package': {record} (an output of step 'synthesize') is "
        f"missing; run with --from synthesize\n")
    record.write_text('"half a file')
    assert build.main([*args, "--from", "package"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {record} is damaged (not the JSON dict that step 'synthesize' "
                   f"writes); run with --from synthesize\n")
    assert not (folder / "package.json").exists()      # nothing half-written
