"""The training CLI end to end on tiny settings, its datasets, and its error messages."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from quant import golden, train
from quant.data import digits, image_folder
from quant.model_format import QModel
from quant.resnet import CheckpointError, ResNet18, load_checkpoint_state
from quant.train import main

TINY = ["--width", "0.05", "--float-epochs", "1", "--epochs", "1", "--max-steps", "2",
        "--calib-images", "16", "--hessian-iters", "1", "--hessian-probes", "1",
        "--batch-size", "16", "--eval-limit", "60", "--no-progress"]


def test_torchvision_state_dict_layout():
    sd = ResNet18().state_dict()
    assert len(sd) == 122  # torchvision resnet18().state_dict() has 122 entries
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert sd["layer4.1.bn2.num_batches_tracked"].shape == ()
    assert sd["fc.weight"].shape == (1000, 512)
    assert {k.split(".")[0] for k in sd} == {"conv1", "bn1", "layer1", "layer2", "layer3",
                                             "layer4", "fc"}


def test_checkpoint_mismatch_errors(tmp_path):
    small = ResNet18(num_classes=10, in_channels=1, width=0.25, small_stem=True)
    torch.save(small.state_dict(), tmp_path / "a.pt")
    other = ResNet18(num_classes=10, in_channels=1, width=0.5, small_stem=True)
    with pytest.raises(CheckpointError, match=r"conv1.weight has shape \(16, 1, 3, 3\) but "
                                              r"this model needs \(32, 1, 3, 3\)"):
        load_checkpoint_state(other, tmp_path / "a.pt")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match=r"is not a ResNet-18 of this layout"):
        load_checkpoint_state(small, tmp_path / "b.pt")
    again = ResNet18(num_classes=10, in_channels=1, width=0.25, small_stem=True)
    load_checkpoint_state(again, tmp_path / "a.pt")
    for k, v in small.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)


def test_digits_dataset():
    d = digits()
    assert (len(d.train), len(d.test)) == (1438, 359)
    x, y = d.test_arrays()
    assert x.dtype == np.uint8 and x.shape == (359, 1, 8, 8)
    assert x.max() == 255 and x.min() == 0 and sorted(set(y.tolist())) == list(range(10))


def test_cli_digits_end_to_end_interrupted_and_resumed(tmp_path, monkeypatch):
    """A run stopped after its first QAT epoch continues from the checkpoint; the float model
    is cached under the output root (the parent of --out), not the working directory."""
    monkeypatch.chdir(tmp_path)
    real_save = train._save_checkpoint

    def save_then_stop(content, ckpt):
        real_save(content, ckpt)
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "_save_checkpoint", save_then_stop)
    out = tmp_path / "root" / "r1"
    with pytest.raises(KeyboardInterrupt):
        main([*TINY, "--epochs", "2", "--out", str(out)])
    assert not (out / "model.npz").exists()
    monkeypatch.setattr(train, "_save_checkpoint", real_save)
    m = main([*TINY, "--epochs", "2", "--out", str(out), "--resume"])
    assert [h["epoch"] for h in m["history"]] == [1, 2]
    qm = QModel.load(out / "model.npz")
    assert qm.input_shape == (1, 8, 8) and qm.manifest["meta"]["ratio"] == [60, 35, 5]
    assert qm.manifest["meta"]["settings"]["epochs"] == 2
    d = digits()
    x, y = d.test_arrays(60)
    acc = 100 * (golden.predict(qm, x) == y).mean()
    assert (m["integer_test_acc"], m["integer_test_images"]) == (pytest.approx(acc), 60)
    assert len(list((tmp_path / "root" / "float").glob("digits-w0.05-e1-s0-*.pt"))) == 1
    assert not (tmp_path / "runs").exists()
    saved = json.loads((out / "run.json").read_text())["settings"]
    assert saved == m["settings"]
    for key in ("ratio", "act_bits", "width", "epochs", "float_epochs", "lr", "qat_lr",
                "batch_size", "seed", "data", "kd", "max_steps", "eval_limit"):
        assert key in saved, key


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished tiny 60:35:5 run: (output root, run folder)."""
    root = tmp_path_factory.mktemp("runs")
    main([*TINY, "--root", str(root)])
    (out,) = [p for p in root.iterdir() if p.name != "float"]
    return root, out


def test_default_run_folder_names_every_setting(finished_run):
    root, out = finished_run
    assert re.fullmatch(r"digits-60-35-5-a4-w0\.05-s0-[0-9a-f]{10}", out.name)
    assert sorted(p.name for p in out.iterdir()) == [
        "assignment.json", "checkpoint.pt", "metrics.json", "model.npz", "run.json"]
    # The same command again is refused; its folder is named by the settings' digest.
    with pytest.raises(SystemExit, match=rf"^error: run folder '{re.escape(str(out))}' already "
                                         rf"holds a run \(run\.json, checkpoint\.pt, "
                                         rf"assignment\.json, model\.npz, metrics\.json\); use "
                                         rf"--resume to continue it, --force to overwrite it, or "
                                         rf"another --out$"):
        main([*TINY, "--root", str(root)])


@pytest.mark.parametrize(("argv", "message"), [
    (["--ratio", "pot"], r"ratio: \[60, 35, 5\] in the run, \[100, 0, 0\] now"),
    (["--act-bits", "5", "--qat-lr", "1e-3"],
     r"act_bits: 4 in the run, 5 now; qat_lr: 0\.0005 in the run, 0\.001 now"),
    (["--lr", "1e-3"], r"lr: 0\.003 in the run, 0\.001 now"),
])
def test_resume_refuses_other_settings(finished_run, argv, message):
    _, out = finished_run
    with pytest.raises(SystemExit, match=rf"^error: --resume: checkpoint "
                                         rf"'{re.escape(str(out / 'checkpoint.pt'))}' was made "
                                         rf"with other settings \({message}\); resume with the "
                                         rf"run's settings, or use another --out$"):
        main([*TINY, *argv, "--out", str(out), "--resume"])


def test_resume_of_a_finished_run_exports_it_again(finished_run, tmp_path):
    _, out = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = json.loads((copy / "metrics.json").read_text())
    m = main([*TINY, "--out", str(copy), "--resume", "--root", str(out.parent)])
    assert m["integer_test_acc"] == before["integer_test_acc"]
    assert m["history"] == before["history"]


class _Evil:
    pass


@pytest.mark.parametrize("damage", ["truncated", "pickled object", "not a run checkpoint"])
def test_damaged_checkpoint_gives_one_line(finished_run, tmp_path, damage):
    _, out = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    ckpt = copy / "checkpoint.pt"
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
        message = (r"is damaged or truncated \(\w+\); delete it, or start the run again "
                   r"with --force$")
    elif damage == "pickled object":
        torch.save({"settings": _Evil()}, ckpt)  # weights_only loading refuses to build it
        message = (r"is damaged or truncated \(UnpicklingError\); delete it, or start the run "
                   r"again with --force$")
    else:
        torch.save({"model": {}}, ckpt)
        message = (r"is not a run checkpoint of this version \(it lacks settings, optim, sched, "
                   r"aug_rng, epoch, history, assignment\); start the run again with --force$")
    with pytest.raises(SystemExit, match=rf"^error: checkpoint "
                                         rf"'{re.escape(str(ckpt))}' {message}"):
        main([*TINY, "--out", str(copy), "--resume"])


def test_resume_needs_a_run(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: --resume: run folder '.*nothing' holds no "
                                         r"run; start it without --resume$"):
        main([*TINY, "--out", str(tmp_path / "nothing"), "--resume"])


def test_force_overwrites_only_the_run_files_and_float_cache_problems(finished_run, tmp_path,
                                                                       capsys):
    root, out = finished_run
    copy = tmp_path / "r"
    shutil.copytree(out, copy)
    (copy / "notes.txt").write_text("mine")
    (copy / "metrics.json").write_text("{}")
    # The float model cache of these settings is damaged: reported, trained again, rewritten.
    shutil.copytree(root / "float", tmp_path / "float")
    (cache,) = (tmp_path / "float").glob("*.pt")
    cache.write_bytes(b"garbage")
    m = main([*TINY, "--out", str(copy), "--force"])
    assert (copy / "notes.txt").read_text() == "mine"
    assert json.loads((copy / "metrics.json").read_text())["integer_test_acc"] == \
        m["integer_test_acc"]
    err = capsys.readouterr().err
    assert re.search(rf"^warning: float model cache '{re.escape(str(cache))}' is unusable "
                     rf"\(UnpicklingError: .*\); training the float model again$", err, re.M)
    assert torch.load(cache, weights_only=True)["test_acc"] == m["float_test_acc"]
    # The cache cannot be written (its folder is a file): the finished training is still used.
    other = tmp_path / "ro"
    other.mkdir()
    (other / "float").write_text("a file, not a folder")
    m2 = main([*TINY, "--out", str(other / "r")])
    assert m2["integer_test_acc"] == m["integer_test_acc"]
    assert re.search(r"^warning: cannot write the float model cache '.*' \(File exists\); going "
                     r"on without caching it$", capsys.readouterr().err, re.M)


def test_float_cache_is_keyed_by_learning_rate_and_batch_size(tmp_path):
    from quant.data import digits as load_digits
    from quant.train import _arch, build_parser, float_cache_path, run_settings

    data = load_digits()
    paths = set()
    for extra in ([], ["--lr", "1e-3"], ["--batch-size", "32"], ["--label-smoothing", "0.2"],
                  ["--qat-lr", "1e-3"], ["--kd", "0.5"]):
        args = build_parser().parse_args([*TINY, *extra])
        settings = run_settings(args, data, _arch(args, data), (60, 35, 5), 1)
        paths.add(float_cache_path(tmp_path, settings))
    assert len(paths) == 4  # QAT-only settings share the float model


@pytest.mark.parametrize(("argv", "message"), [
    (["--image-size", "0"], r"^error: --image-size must be a positive integer, not 0$"),
    (["--image-size", "-8"], r"^error: --image-size must be a positive integer, not -8$"),
    (["--eval-limit", "-1"], r"^error: --eval-limit must be a positive integer, not -1$"),
    (["--max-steps", "-1"], r"^error: --max-steps must be a positive integer, not -1$"),
    (["--max-steps", "0"], r"^error: --max-steps must be a positive integer, not 0$"),
    (["--epochs", "-1"], r"^error: --epochs must be an integer >= 0, not -1$"),
    (["--batch-size", "0"], r"^error: --batch-size must be a positive integer, not 0$"),
    (["--lr", "0"], r"^error: --lr must be positive, not 0\.0$"),
    (["--width", "-1"], r"^error: --width must be positive, not -1\.0$"),
    (["--kd", "1.5"], r"^error: --kd must be between 0 and 1, not 1\.5$"),
])
def test_cli_refuses_nonsense_values(tmp_path, argv, message):
    with pytest.raises(SystemExit, match=message):
        main([*TINY, *argv, "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()


def test_cli_image_folder(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for cls, colour in (("cat", 0), ("dog", 2)):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            arr = rng.integers(0, 60, (20, 24, 3), dtype=np.uint8)
            arr[..., colour] += 190
            Image.fromarray(arr).save(tmp_path / "imgs" / cls / f"{i}.png")
    bundle = image_folder(tmp_path / "imgs", size=16, channels=3)
    assert bundle.classes == ["cat", "dog"] and len(bundle.test) == 2  # round(6 * 0.2) per class
    assert bundle.test[0][0].shape == (3, 16, 16) and bundle.test[0][0].dtype == torch.uint8
    main([*TINY, "--data", str(tmp_path / "imgs"), "--image-size", "16", "--out", "r2",
          "--ratio", "50:50:0"])
    qm = QModel.load(tmp_path / "r2" / "model.npz")
    assert qm.input_shape == (3, 16, 16)


@pytest.mark.parametrize(("argv", "message"), [
    (["--data", "no/such/folder"], r"^error: dataset folder 'no/such/folder' does not exist; "
                                   r"give a folder with one sub-folder of images per class"),
    (["--ratio", "60-35-5"], r"^error: --ratio: ratio must look like 'POT4:FIXED4:FIXED8'"),
    (["--pretrained", "missing.pt"], r"^error: checkpoint 'missing.pt' does not exist"),
])
def test_cli_errors(tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=message):
        main([*TINY, *argv])


def test_cli_rejects_checkpoint_of_another_architecture(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save(ResNet18(num_classes=10, in_channels=3).state_dict(), tmp_path / "rgb.pt")
    with pytest.raises(SystemExit, match=r"^error: checkpoint '.*rgb.pt': conv1.weight has shape "
                                         r"\(64, 3, 7, 7\) but this model needs"):
        main([*TINY, "--pretrained", str(tmp_path / "rgb.pt")])
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def _torchrun_cmd(*argv: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--standalone", "-m", "quant.train", *argv]


_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (torchrun's workers run in their own session)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {pid}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    for p in sorted(tree, reverse=True):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_checkpoint_resume_export(tmp_path):
    """Data-parallel training with two gloo processes: the run is killed once its first
    checkpoint exists, --resume finishes it, and the model matches a one-process model in
    kind."""
    argv = [*TINY, "--device", "cpu", "--epochs", "12", "--out", str(tmp_path / "ddp")]
    out = tmp_path / "ddp"
    proc = subprocess.Popen(_torchrun_cmd(*argv), env=_ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not (out / "checkpoint.pt").exists() and proc.poll() is None:
        assert time.time() < deadline, "no checkpoint after 10 minutes"
        time.sleep(0.05)
    _kill_tree(proc.pid)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 1 <= ckpt["epoch"] < 12 and ckpt["settings"]["world_size"] == 2
    assert not (out / "model.npz").exists()
    done = subprocess.run(_torchrun_cmd(*argv, "--resume"), env=_ENV, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, 13))
    assert metrics["settings"]["world_size"] == 2
    ddp = QModel.load(out / "model.npz")
    single = tmp_path / "single"
    main([*TINY, "--epochs", "12", "--out", str(single)])
    one = QModel.load(single / "model.npz")
    assert [n["name"] for n in ddp.nodes] == [n["name"] for n in one.nodes]
    assert {k: v.shape for k, v in ddp.arrays.items()} == \
        {k: v.shape for k, v in one.arrays.items()}
    x, y = digits().test_arrays(60)
    acc = 100 * (golden.predict(ddp, x) == y).mean()
    assert metrics["integer_test_acc"] == pytest.approx(acc)
