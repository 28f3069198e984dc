"""The training CLI end to end on tiny settings, its datasets, and its error messages."""

import json

import numpy as np
import pytest
import torch

from quant import golden
from quant.data import digits, image_folder
from quant.model_format import QModel
from quant.resnet import CheckpointError, ResNet18, load_checkpoint_state
from quant.train import main

TINY = ["--width", "0.05", "--float-epochs", "1", "--epochs", "1", "--max-steps", "2",
        "--calib-images", "16", "--hessian-iters", "1", "--hessian-probes", "1",
        "--batch-size", "16", "--no-progress"]


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


def test_cli_digits_end_to_end_and_resume(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = main([*TINY, "--out", "r1"])
    qm = QModel.load(tmp_path / "r1" / "model.npz")
    assert qm.input_shape == (1, 8, 8) and qm.manifest["meta"]["ratio"] == [60, 35, 5]
    d = digits()
    x, y = d.test_arrays()
    acc = 100 * (golden.predict(qm, x) == y).mean()
    assert m["integer_test_acc"] == pytest.approx(acc)
    assert (tmp_path / "runs" / "float").is_dir()  # the float model is cached
    m2 = main([*TINY[:5], "2", *TINY[6:], "--out", "r1", "--resume"])
    assert [h["epoch"] for h in m2["history"]] == [1, 2]
    saved = json.loads((tmp_path / "r1" / "metrics.json").read_text())
    assert saved["epochs"] == 2


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
    (tmp_path / "r3").mkdir()
    torch.save({"arch": {"width": 9}}, tmp_path / "r3" / "checkpoint.pt")
    with pytest.raises(SystemExit, match=r"^error: checkpoint .* is from another architecture"):
        main([*TINY, "--out", "r3", "--resume"])
