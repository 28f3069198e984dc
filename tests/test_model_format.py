"""Model file: round trips, and every kind of bad file or inconsistent model rejected clearly."""

import copy
import io
import json
import zipfile

import numpy as np
import pytest

from quant import golden
from quant.model_format import FORMAT_VERSION, ModelFormatError, QModel
from quant.random_model import random_images, random_resnet18


@pytest.fixture(scope="module")
def model():
    return random_resnet18(11, input_shape=(3, 16, 16), width=0.125)


@pytest.fixture
def saved(tmp_path, model):
    return model.save(tmp_path / "m.npz")


def _mutated(model, fn):
    m = QModel(copy.deepcopy(model.manifest), {k: v.copy() for k, v in model.arrays.items()})
    fn(m)
    return m


def test_round_trip_is_exact(model, saved):
    back = QModel.load(saved)
    shapes = {n["name"]: n.pop("out_shape") for n in back.manifest["nodes"]}
    assert shapes["layer4.1.add"] == [64, 2, 2]
    assert back.manifest == model.manifest
    assert back.arrays.keys() == model.arrays.keys()
    for key, arr in model.arrays.items():
        assert back.arrays[key].dtype == arr.dtype
        np.testing.assert_array_equal(back.arrays[key], arr)
    images = random_images(np.random.default_rng(0), 2, (3, 16, 16))
    np.testing.assert_array_equal(golden.run(back, images), golden.run(model, images))


def test_save_adds_suffix_and_is_self_describing(tmp_path, model):
    path = model.save(tmp_path / "plain")
    assert path.name == "plain.npz"
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(np.load(z.open("manifest.npy")).tobytes())
    assert manifest["format"] == "ilmpq-int-model" and manifest["version"] == FORMAT_VERSION
    assert manifest["arrays"]["conv1.weight"]["dtype"] == "|i1"
    assert manifest["nodes"][0]["op"] == "conv"
    assert manifest["nodes"][0]["out_shape"] == [8, 16, 16]
    assert manifest["nodes"][-1]["out_shape"] == [10, 1, 1]


def test_missing_file(tmp_path):
    with pytest.raises(ModelFormatError, match=r"^cannot read model file '.*nope\.npz': "
                                               r"No such file or directory$"):
        QModel.load(tmp_path / "nope.npz")


def test_truncated_file(tmp_path, saved):
    data = saved.read_bytes()
    for cut in (len(data) // 2, 100, 0):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelFormatError, match=r"is truncated or corrupt .*; export or copy "
                                                   r"it again$"):
            QModel.load(bad)


def test_flipped_bytes_never_give_a_different_model(tmp_path, model, saved):
    """A damaged byte either is caught, or lies in zip metadata (timestamps) and changes
    nothing: a silently different model never loads."""
    data = bytearray(saved.read_bytes())
    caught = 0
    for pos in range(0, len(data), max(1, len(data) // 300)):
        bad = bytearray(data)
        bad[pos] ^= 0x55
        path = tmp_path / "flip.npz"
        path.write_bytes(bytes(bad))
        try:
            back = QModel.load(path)
        except ModelFormatError:
            caught += 1
            continue
        for key, arr in model.arrays.items():
            np.testing.assert_array_equal(back.arrays[key], arr)
    assert caught >= 250


def test_not_a_model(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ModelFormatError, match=r"has no manifest; it is not a quantized model"):
        QModel.load(path)
    path.write_text("hello")
    with pytest.raises(ModelFormatError, match=r"is truncated or corrupt"):
        QModel.load(path)


def _rewrite(saved, tmp_path, manifest_fn=None, arrays_fn=None):
    """Rewrite a saved file with a changed manifest/arrays, bypassing save()'s validation."""
    with np.load(saved) as npz:
        contents = {k: npz[k] for k in npz.files}
    manifest = json.loads(contents.pop("manifest").tobytes())
    if manifest_fn:
        manifest_fn(manifest)
    if arrays_fn:
        arrays_fn(contents)
    out = tmp_path / "rewritten.npz"
    buf = io.BytesIO()
    np.savez(buf, manifest=np.frombuffer(json.dumps(manifest).encode(), np.uint8), **contents)
    out.write_bytes(buf.getvalue())
    return out


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m.update(version=FORMAT_VERSION + 1),
     r"has format version 2, newer than this software reads \(1\); update the software$"),
    (lambda m: m.update(version=0), r"has old format version 0 .*; export the model again$"),
    (lambda m: m.update(format="onnx"), r"is not a quantized model \(format 'onnx'"),
    (lambda m: m.pop("arrays"), r"manifest lacks its 'arrays' table"),
])
def test_header_problems(tmp_path, saved, change, message):
    with pytest.raises(ModelFormatError, match=message):
        QModel.load(_rewrite(saved, tmp_path, manifest_fn=change))


def test_tampered_array_fails_checksum(tmp_path, saved):
    def tamper(arrays):
        arrays["fc.bias"] = arrays["fc.bias"] + 1
    with pytest.raises(ModelFormatError, match=r"array 'fc\.bias' does not match its manifest "
                                               r"entry .*the file is corrupt, export it again$"):
        QModel.load(_rewrite(saved, tmp_path, arrays_fn=tamper))


def test_missing_array_in_file(tmp_path, saved):
    with pytest.raises(ModelFormatError, match=r"arrays do not match the manifest \(missing "
                                               r"\['fc\.mult'\], unlisted \[\]\)"):
        QModel.load(_rewrite(saved, tmp_path, arrays_fn=lambda a: a.pop("fc.mult")))


def _set(path, value):
    def fn(m):
        target = m.manifest
        *head, last = path
        for key in head:
            target = target[key]
        target[last] = value
    return fn


def _set_array(key, fn_arr):
    def fn(m):
        m.arrays[key] = fn_arr(m.arrays[key])
    return fn


def _pot_row(a):
    a = a.copy()
    a[0] = 3
    return a


@pytest.mark.parametrize(("change", "message"), [
    (_set(("nodes", 0, "op"), "deconv"),
     r"^node 'conv1': unknown op 'deconv'; allowed: conv, fc, add, maxpool, avgpool$"),
    (_set(("nodes", 1, "inputs"), ["layer1.0.conv2"]),
     r"^node 'layer1\.0\.conv1': input 'layer1\.0\.conv2' is not an earlier node"),
    (_set(("nodes", 1, "in_channels"), 9),
     r"^node 'layer1\.0\.conv1': in_channels 9 but its input has 8 channels$"),
    (_set(("nodes", 1, "kernel"), 4), r"^node 'layer1\.0\.conv1': conv kernel 4 stride 1 "
                                       r"padding 1 not supported"),
    (_set(("nodes", 1, "relu"), 1), r"^node 'layer1\.0\.conv1': field 'relu' must be bool, "
                                    r"not 1$"),
    (_set(("nodes", 3, "inputs"), ["layer1.0.conv2"]),
     r"^node 'layer1\.0\.add': add needs 2 input name\(s\), not \['layer1\.0\.conv2'\]$"),
    (_set(("nodes", 4, "inputs"), ["layer1.0.conv2"]),
     r"^node 'layer1\.1\.conv1': conv input 'layer1\.0\.conv2' is signed \(s5\); activations "
     r"into a conv must be unsigned \(add a ReLU\)$"),
    (_set(("nodes", -1, "in_features"), 99),
     r"^node 'fc': in_features 99 but its input has 64x1x1 = 64 values$"),
    (_set(("nodes", 3, "shift"), [3, 48]),
     r"^node 'layer1\.0\.add': requant shift must be an integer in \[0, 47\], not 48$"),
    (_set(("nodes", -2, "mult"), 70000),
     r"^node 'avgpool': requant multiplier must be an integer in \[0, 65535\], not 70000$"),
    (_set(("nodes", 1, "name"), "conv1"), r"^node 'conv1': name used twice$"),
    (_set(("output",), "logits"), r"^output 'logits' is not a node of the model$"),
    (_set(("act_bits",), 3), r"^act_bits must be 4 or 5, not 3$"),
    (_set(("input_shape",), [3, 16]), r"^input_shape must be \[channels, height, width\]"),
    (_set(("extra",), 1), r"^manifest has unknown field 'extra'"),
    (_set(("nodes", 0, "out_shape"), [8, 8, 8]),
     r"^node 'conv1': stored out_shape \[8, 8, 8\] but the graph gives \[8, 16, 16\] for "
     r"input \[3, 16, 16\]$"),
    (_set_array("conv1.weight", lambda a: a.astype(np.int16)),
     r"^node 'conv1': array 'weight' must be int8, not int16$"),
    (_set_array("conv1.bias", lambda a: a[:-1]),
     r"^node 'conv1': array 'bias' has shape \(7,\), expected \(8,\)$"),
    (_set_array("conv1.scheme", lambda a: a + 3),
     r"^node 'conv1': filter 0 has scheme code \d; allowed codes 0\.\.2 \(pot4, fixed4, "
     r"fixed8\)$"),
    (_set_array("conv1.shift", lambda a: a + 60), r"^node 'conv1': a requant shift exceeds 47$"),
])
def test_inconsistent_models_rejected(model, change, message):
    bad = _mutated(model, change)
    with pytest.raises(ModelFormatError, match=message):
        bad.validate()


def test_weight_outside_its_scheme(model):
    def fn(m):
        w = m.arrays["layer1.0.conv1.weight"]
        scheme = m.arrays["layer1.0.conv1.scheme"]
        row = int(np.flatnonzero(scheme == 0)[0])        # a PoT-4 filter
        w[row, 0, 0, 0] = 3
        m.manifest["bad_row"] = row
    bad = _mutated(model, fn)
    row = bad.manifest.pop("bad_row")
    with pytest.raises(ModelFormatError, match=rf"^node 'layer1\.0\.conv1': filter {row} is pot4 "
                                               rf"but holds weight 3, outside that scheme$"):
        bad.validate()


def test_save_refuses_invalid_model(tmp_path, model):
    bad = _mutated(model, _set(("act_bits",), 7))
    with pytest.raises(ModelFormatError):
        bad.save(tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


def test_error_names_the_file(tmp_path, model):
    bad = _mutated(model, _set_array("conv1.scheme", lambda a: a + 3))
    path = tmp_path / "bad.npz"
    buf = io.BytesIO()
    from quant.model_format import _describe
    manifest = dict(bad.manifest)
    shapes = bad.infer()
    manifest["nodes"] = [{**n, "out_shape": list(shapes[n["name"]].shape)} for n in bad.nodes]
    manifest["arrays"] = {k: _describe(v) for k, v in bad.arrays.items()}
    np.savez(buf, manifest=np.frombuffer(json.dumps(manifest).encode(), np.uint8), **bad.arrays)
    path.write_bytes(buf.getvalue())
    with pytest.raises(ModelFormatError, match=r"^model file '.*bad\.npz': node 'conv1': filter "
                                               r"0 has scheme code"):
        QModel.load(path)


def _rewrite_text(saved, tmp_path, text_fn):
    """Rewrite a saved file with the manifest's JSON text changed by ``text_fn``."""
    with np.load(saved) as npz:
        contents = {k: npz[k] for k in npz.files}
    text = text_fn(contents.pop("manifest").tobytes().decode())
    out = tmp_path / "rewritten.npz"
    np.savez(out, manifest=np.frombuffer(text.encode(), np.uint8), **contents)
    return out


def _node0(key, value):
    def fn(m):
        if value is _POP:
            m["nodes"][0].pop(key)
        else:
            m["nodes"][0][key] = value
    return fn


_POP = object()
_WHERE = r"^model file '.*rewritten\.npz'"


@pytest.mark.parametrize(("change", "message"), [
    (_node0("out_shape", _POP), r": node 'conv1': field 'out_shape' is missing \(a saved model "
                                r"has it on every node\); export the model again$"),
    (_node0("out_shape", None), r": node 'conv1': field 'out_shape' must be \[C, H, W\] of "
                                r"positive integers, not None$"),
    (_node0("out_shape", [8.0, 16.0, 16.0]), r": node 'conv1': field 'out_shape' must be "
                                             r"\[C, H, W\] of positive integers, not "
                                             r"\[8\.0, 16\.0, 16\.0\]$"),
    (_node0("out_shape", [8, 16]), r": node 'conv1': field 'out_shape' must be \[C, H, W\]"),
    (_node0("op", ["conv"]), r": node 'conv1': unknown op \['conv'\]; allowed: conv, fc, add, "
                             r"maxpool, avgpool$"),
    (_node0("op", 1), r": node 'conv1': unknown op 1; allowed: conv, fc, add, maxpool, "
                      r"avgpool$"),
])
def test_loader_refuses_bad_nodes(tmp_path, saved, change, message):
    with pytest.raises(ModelFormatError, match=_WHERE + message):
        QModel.load(_rewrite(saved, tmp_path, manifest_fn=change))


@pytest.mark.parametrize(("text_fn", "message"), [
    (lambda t: '{"deep": ' + "[" * 40 + "]" * 40 + ", " + t[1:],
     r" has a manifest nested deeper than 32 levels; export it again$"),
    (lambda t: '{"deep": ' + "[" * 100_000 + "]" * 100_000 + ", " + t[1:],
     r" has a manifest nested deeper than 32 levels; export it again$"),
    (lambda t: '{"big": 1' + "0" * 5000 + ", " + t[1:],
     r" has a manifest holding an integer of 5001 digits \(at most 20\); export it again$"),
    (lambda t: '{"big": -1' + "0" * 30 + ", " + t[1:],
     r" has a manifest holding an integer of 31 digits \(at most 20\); export it again$"),
    (lambda t: '{"big": 1e999, ' + t[1:],
     r" has a manifest holding the number 1e999 overflows a float; export it again$"),
    (lambda t: '{"big": NaN, ' + t[1:],
     r" has a manifest holding NaN, which is not a number JSON allows; export it again$"),
    (lambda t: t[: len(t) // 2], r" has a corrupt manifest \(.*\); export it again$"),
])
def test_loader_refuses_absurd_json(tmp_path, saved, text_fn, message):
    with pytest.raises(ModelFormatError, match=_WHERE + message):
        QModel.load(_rewrite_text(saved, tmp_path, text_fn))


def test_deep_meta_within_the_limit_loads(tmp_path, saved):
    def deepen(m):
        inner = m["meta"]["x"] = {}
        for _ in range(28):  # manifest -> meta -> x -> 28 more levels = 31
            inner["y"] = {}
            inner = inner["y"]
    assert QModel.load(_rewrite(saved, tmp_path, manifest_fn=deepen)).manifest["meta"]["x"]
