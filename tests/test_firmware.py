"""Firmware: the driver over the functional emulator against the golden model, compiled
network files, and every fault the driver must name (identity, clock, buffer, timeout, each
ERROR_CODE)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from firmware import run as run_cli
from firmware.backend import run_sync
from firmware.compile import CompiledNetwork, CompileError
from firmware.driver import (
    Accelerator,
    AcceleratorError,
    AcceleratorTimeout,
    BitstreamMismatchError,
    BufferTooSmallError,
    ClockError,
    Driver,
)
from firmware.emu import EmuBackend
from quant import golden
from quant.random_model import random_images, random_resnet18
from rtl.config import preset
from rtl.interface.descriptor import (
    FIELDS,
    descriptor_bytes,
    fusable_adds,
    fusable_pools,
    run_order,
)
from rtl.interface.regmap import ErrorCode
from tests.firmware_util import SMALL, compiled, make_package

MODELS = {
    # name: (random_resnet18 keyword arguments)
    "small-stem-60-35-5": dict(seed=1, input_shape=(3, 16, 16), width=0.125, ratio="60:35:5"),
    "stem-65-30-5-odd": dict(seed=2, input_shape=(3, 35, 35), width=0.125, ratio="65:30:5",
                             small_stem=False),
    "pot-100": dict(seed=3, input_shape=(3, 12, 12), width=0.125, ratio="100:0:0"),
    "fixed-8bit-first-last": dict(seed=4, input_shape=(3, 12, 12), width=0.125,
                                  ratio="0:100:0", first_last_8bit=True),
    "digits-1ch": dict(seed=5, input_shape=(1, 8, 8), width=0.125, ratio="50:50:0"),
}


def _emu(pkg, net, **kwargs) -> Accelerator:
    acc = Accelerator(EmuBackend(pkg, memory_size=net.size + 4096, **kwargs), pkg)
    acc.load(net)
    return acc


@pytest.mark.parametrize("cfg", [SMALL, preset("pynq-z2"), preset("zc706")],
                         ids=lambda c: c.name)
@pytest.mark.parametrize("name", list(MODELS))
def test_emulator_equals_golden(tmp_path, cfg, name) -> None:
    """Layer by layer for the first image, one chain for the others: the logits decoded from
    the emulated DDR equal the golden model's, bit for bit."""
    kw = dict(MODELS[name])
    model = random_resnet18(kw.pop("seed"), **kw)
    pkg = make_package(tmp_path / "pkg", cfg)
    _, _, net = compiled(model, pkg, tmp_path)
    images = random_images(np.random.default_rng(7), 3, model.input_shape)
    expected = golden.run(model, images)
    acc = _emu(pkg, net)
    for i, image in enumerate(images):
        result = acc.infer(image, per_layer=i == 0)
        np.testing.assert_array_equal(result.logits, expected[i])
    # Fused adds and max-pools run inside their convs (a max-pool only where its tiles fit).
    layers = acc.infer(images[0], per_layer=True).layers
    ops = {layer.name: layer.op for layer in layers}
    # In the engine's run order (a downsample right after its block's first conv).
    nodes = run_order(model.nodes)
    inside = {*fusable_adds(nodes).values(),
              *(pool for conv, pool in fusable_pools(nodes).items()
                if ops[conv] == "conv+maxpool")}
    assert [layer.name for layer in layers] == \
        [node["name"] for node in nodes if node["name"] not in inside]


@pytest.mark.slow
def test_emulator_full_size_resnet18(tmp_path) -> None:
    """A full-width ResNet-18 at 224 x 224 (1.81 GMAC), as the zc706 build runs it."""
    model = random_resnet18(2, input_shape=(3, 224, 224), width=1.0, num_classes=1000)
    pkg = make_package(tmp_path / "pkg", preset("zc706"))
    _, _, net = compiled(model, pkg, tmp_path)
    image = random_images(np.random.default_rng(0), 1, (3, 224, 224))
    np.testing.assert_array_equal(_emu(pkg, net).infer(image[0]).logits,
                                  golden.run(model, image)[0])


@pytest.fixture(scope="module")
def small_net(tmp_path_factory):
    """(package, model, model path, network path, network) on the small config."""
    tmp = tmp_path_factory.mktemp("small")
    model = random_resnet18(11, input_shape=(3, 16, 16), width=0.125, ratio="60:35:5")
    pkg = make_package(tmp / "pkg", SMALL)
    model_path, net_path, net = compiled(model, pkg, tmp)
    return pkg, model, model_path, net_path, net


def test_window_is_the_networks_own_buffer(small_net) -> None:
    pkg, _, _, _, net = small_net
    acc = _emu(pkg, net)
    regs = {name: run_sync(acc.driver.read(name)) for name in ("WINDOW_BASE", "WINDOW_SIZE")}
    assert regs == {"WINDOW_BASE": acc.backend.memory.phys_addr, "WINDOW_SIZE": net.size}


def test_relocation_moves_every_address(small_net) -> None:
    """The same network at two bus addresses: identical except the relocated words, each
    moved by the difference."""
    *_, net = small_net
    a = np.frombuffer(net.relocated(0x1000_0000), "<u4")
    b = np.frombuffer(net.relocated(0x2000_0000), "<u4")
    moved = np.flatnonzero(a != b)
    np.testing.assert_array_equal(moved, np.sort(net.relocs // 4))
    assert np.all(b[moved] - a[moved] == 0x1000_0000)


# ---- bring-up refusals ---------------------------------------------------------------------

def test_bitstream_from_another_config_is_refused(tmp_path, small_net) -> None:
    pkg = small_net[0]
    other = make_package(tmp_path / "other", dataclasses.replace(SMALL, pot_rows=6))
    with pytest.raises(BitstreamMismatchError, match=(
            r"^the bitstream was built from configuration [0-9a-f]{8}, but this register map "
            r"is for 'engine-sim' \([0-9a-f]{8}\); rebuild with 'python build.py --board "
            r"engine-sim' or load the matching build \(package .*pkg; rebuild with 'python "
            r"build.py --board engine-sim'\)$")):
        Accelerator(EmuBackend(other), pkg)


def test_clock_above_the_build_is_refused(small_net) -> None:
    pkg = small_net[0]
    with pytest.raises(ClockError, match=(
            r"^the fabric clock runs at 125 MHz, faster than the 100 MHz this bitstream was "
            r"built and timed for; set FCLK0 to the package's fclk0_mhz")):
        Accelerator(EmuBackend(pkg, clock_mhz=125.0), pkg)


def test_buffer_too_small(small_net) -> None:
    pkg, *_, net = small_net
    acc = Accelerator(EmuBackend(pkg, memory_size=net.size - 64), pkg)
    mib = -(-net.size // (1 << 20))
    with pytest.raises(BufferTooSmallError, match=(
            rf"^the network needs {net.size:,} bytes of DMA memory, the buffer has "
            rf"{net.size - 64:,}; give it at least {mib} MiB \(u-dma-buf: 'insmod u-dma-buf.ko "
            rf"udmabuf0={mib << 20}'")):
        acc.load(net)
    assert not any(acc.backend.memory.data), "nothing may be written before the check"


def test_network_for_another_config_is_refused(tmp_path, small_net) -> None:
    *_, net = small_net
    other = make_package(tmp_path / "z", preset("zc706"))
    with pytest.raises(CompileError, match=(
            rf"^the network was compiled for configuration {SMALL.config_hash_hex} "
            rf"\(engine-sim\), but the package .* is {preset('zc706').config_hash_hex}; "
            r"compile it for this package with 'python -m firmware.compile --package")):
        Accelerator(EmuBackend(other), other).load(net)


# ---- the compiled network file -------------------------------------------------------------

def test_compiled_file_round_trip(small_net) -> None:
    *_, net_path, net = small_net
    again = CompiledNetwork.load(net_path)
    np.testing.assert_array_equal(again.image, net.image)
    assert again.manifest == net.manifest


def test_modelled_image_is_the_whole_chain(small_net) -> None:
    """The estimate of an image is the cycle model of the whole descriptor table as one
    chain, which overlaps layers and so beats the layers' sum."""
    from rtl.cycle_model import DdrTiming, chain_cycles
    from rtl.interface.descriptor import descriptor_bytes, split_descriptors

    *_, net = small_net
    offset, count = net.chain
    table = net.image[offset:offset + count * descriptor_bytes()].tobytes()
    want = chain_cycles(net.cfg, split_descriptors(table), DdrTiming.zynq_hp(),
                        memory=[(0, net.image)])
    assert net.modelled_cycles == want
    assert want < sum(layer["modelled_cycles"] for layer in net.manifest["layers"])


def test_damaged_compiled_files(tmp_path, small_net) -> None:
    *_, net_path, _ = small_net
    raw = net_path.read_bytes()
    with pytest.raises(CompileError, match=r"^.*missing\.npz: no such file; make it with"):
        CompiledNetwork.load(tmp_path / "missing.npz")
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CompileError, match=r"^.*cut\.npz: not a readable compiled network"):
        CompiledNetwork.load(tmp_path / "cut.npz")
    # A flipped byte of the stored image: the zip's CRC catches it.
    with np.load(net_path) as z:
        arrays = {k: z[k] for k in z.files}
    pos = raw.find(arrays["image"][1000:1064].tobytes()) + 8
    flipped = bytearray(raw)
    flipped[pos] ^= 0x40
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    with pytest.raises(CompileError, match=(r"^.*flip\.npz: not a readable compiled network "
                                            r"\(Bad CRC-32 for file 'image\.npy'\)")):
        CompiledNetwork.load(tmp_path / "flip.npz")
    # An image changed and stored again with a valid zip: the manifest's checksum catches it.
    arrays["image"] = arrays["image"].copy()
    arrays["image"][1000] ^= 1
    np.savez(tmp_path / "edited.npz", **arrays)
    with pytest.raises(CompileError, match=(r"^.*edited\.npz: the image does not match its "
                                            r"checksum \(the file is damaged\)")):
        CompiledNetwork.load(tmp_path / "edited.npz")


def test_changed_model_is_refused(tmp_path, small_net) -> None:
    *_, net = small_net
    other = random_resnet18(12, input_shape=(3, 16, 16), width=0.125).save(tmp_path / "o.npz")
    with pytest.raises(CompileError, match=(
            r"^.*o\.npz is not the model this network was compiled from \(model\.npz, sha256 "
            r"[0-9a-f]{12}\.\.\.\): it changed or is another model; compile it again")):
        net.check_model(other)


# ---- runs that fail -------------------------------------------------------------------------

def test_timeout_soft_resets_and_names_the_layer(small_net) -> None:
    pkg, model, *_, net = small_net
    hang = 5
    layer, tile, tiles = net.layer_of(hang)
    acc = _emu(pkg, net, hang_at=hang)
    image = random_images(np.random.default_rng(0), 1, model.input_shape)[0]
    with pytest.raises(AcceleratorTimeout, match=(
            rf"^layer {layer} \(tile {tile + 1} of {tiles}\) did not finish within [0-9.]+ s "
            r"\(many times the cycle model's estimate\); the accelerator was soft-reset$")):
        acc.infer(image)
    assert run_sync(acc.driver.fields("ERROR_CODE"))["code"] == ErrorCode.ABORTED
    # The accelerator is usable again after the soft reset.
    np.testing.assert_array_equal(acc.infer(image).logits, golden.run(model, image[None])[0])


_WORD = {name: i for i, (name, _) in enumerate(FIELDS)}


def _tampered(net: CompiledNetwork, descriptor: int, **fields: int) -> CompiledNetwork:
    image = net.image.copy()
    words = image.view("<u4")
    start = (net.chain[0] + descriptor * descriptor_bytes()) // 4
    for name, value in fields.items():
        words[start + _WORD[name]] = value + (words[start + _WORD[name]]
                                              if name in ("in_h", "out_h") else 0)
    return CompiledNetwork(image, net.relocs, net.manifest)


@pytest.mark.parametrize("code, fields", [
    ("BAD_DESCRIPTOR", {"magic": 0x12345678}),
    ("MISALIGNED_ADDR", {"out_addr": 0x104}),
    ("ADDR_OUT_OF_WINDOW", {"out_addr": 0x7FFF_0000}),
    ("LAYER_TOO_LARGE", {"in_h": 40, "out_h": 40}),        # added: a band past the buffer
])
def test_error_codes_from_bad_descriptors(small_net, code, fields) -> None:
    """A damaged descriptor in DDR: the emulated engine refuses it with the engine's code,
    and the driver names the code, the layer and the tile."""
    pkg, model, *_, net = small_net
    d = 3
    layer, tile, tiles = net.layer_of(d)
    acc = _emu(pkg, _tampered(net, d, **fields))
    image = random_images(np.random.default_rng(0), 1, model.input_shape)[0]
    with pytest.raises(AcceleratorError, match=(
            rf"^the accelerator stopped with {code} at descriptor {d} \(layer {layer}, tile "
            rf"{tile + 1} of {tiles}\): ")) as info:
        acc.infer(image)
    assert (info.value.code, info.value.layer, info.value.tile) == (code, layer, tile)


def test_unsupported_format_and_axi_response(tmp_path) -> None:
    """Fixed-8 pair flags on a build without Fixed-8; a window reaching past the memory."""
    cfg = dataclasses.replace(SMALL, weight_formats=("pot4", "fixed4"))
    pkg = make_package(tmp_path / "pkg", cfg)
    model = random_resnet18(3, input_shape=(3, 8, 8), width=0.125, ratio="60:40:0")
    _, _, net = compiled(model, pkg, tmp_path)
    conv = next(layer for layer in net.layers if layer["op"] == "conv")
    words = net.image.view("<u4")
    d = conv["desc_offset"] // 4
    weight_addr = int(words[d + _WORD["weight_addr"]])
    image = net.image.copy()
    image.view("<u8")[weight_addr // 8] = 1            # the first pass's Fixed-8 flags
    acc = _emu(pkg, CompiledNetwork(image, net.relocs, net.manifest))
    x = random_images(np.random.default_rng(0), 1, model.input_shape)[0]
    with pytest.raises(AcceleratorError, match=r"^the accelerator stopped with "
                       r"UNSUPPORTED_FORMAT at descriptor 0 \(layer conv1, tile 1 of 1\)"):
        acc.infer(x)
    acc = _emu(pkg, net)
    run_sync(acc.driver.write("WINDOW_SIZE", 1 << 30))      # a window past the buffer
    bad = _tampered(net, 0, out_addr=acc.backend.memory.phys_addr + (1 << 29))
    acc.backend.memory.write(0, bad.relocated(acc.backend.memory.phys_addr))
    with pytest.raises(AcceleratorError, match=r"^the accelerator stopped with AXI_RESPONSE"):
        run_sync(acc.driver.run_chain(net.chain[0], net.chain[1], 0, 1.0))


class _Forced(EmuBackend):
    """An emulator whose engine stops every run at descriptor ``at`` with ``code``."""

    def __init__(self, *args, code: ErrorCode, at: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.code, self.at = code, at

    def _run(self) -> None:
        self._finish(self.code, self.at)


@pytest.mark.parametrize("code", [c for c in ErrorCode if c != ErrorCode.NONE],
                         ids=lambda c: c.name)
def test_every_error_code_is_decoded_by_name(small_net, code) -> None:
    pkg, model, *_, net = small_net
    at = net.chain[1] - 1
    layer, tile, tiles = net.layer_of(at)
    backend = _Forced(pkg, memory_size=net.size, code=code, at=at)
    acc = Accelerator(backend, pkg)
    acc.load(net)
    image = random_images(np.random.default_rng(0), 1, model.input_shape)[0]
    with pytest.raises(AcceleratorError, match=(
            rf"^the accelerator stopped with {code.name} at descriptor {at} \(layer {layer}, "
            rf"tile {tile + 1} of {tiles}\): \S")):
        acc.infer(image)


def test_driver_reads_offsets_from_the_map(small_net) -> None:
    """A map whose registers sit elsewhere changes where the driver writes: nothing typed."""
    pkg = small_net[0]
    driver = Driver(EmuBackend(pkg), pkg)
    assert driver.regmap is pkg.regmap
    writes = []

    class Spy(EmuBackend):
        async def write_reg(self, offset, value):
            writes.append(offset)
            await super().write_reg(offset, value)

    Accelerator(Spy(pkg), pkg)
    assert set(writes) == {pkg.regmap.offset(n) for n in
                           ("WINDOW_BASE", "WINDOW_SIZE", "IRQ_ENABLE", "IRQ_STATUS")}


# ---- the command --------------------------------------------------------------------------

def test_run_command_digits_check(tmp_path, capsys) -> None:
    model = random_resnet18(6, input_shape=(1, 8, 8), width=0.125)
    pkg = make_package(tmp_path / "pkg", preset("zc706"))
    _, net_path, _ = compiled(model, pkg, tmp_path)
    rc = run_cli.main(["--package", str(pkg.path), "--network", str(net_path), "--digits", "12",
                       "--backend", "emu", "--per-layer", "--check"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "check against the golden model: 0 mismatching image(s) of 12, bit-exact" in out
    assert "top-1: " in out and "images/s" in out and "layer4.1.conv2" in out
    assert out.count("top-5") == 12


def test_run_command_reports_a_mismatch(tmp_path, capsys) -> None:
    """A network whose weights changed after compiling: --check finds it and exits 1."""
    model = random_resnet18(6, input_shape=(1, 8, 8), width=0.125)
    pkg = make_package(tmp_path / "pkg", preset("pynq-z2"))
    _, net_path, net = compiled(model, pkg, tmp_path)
    conv = next(layer for layer in net.layers if layer["op"] == "fc")
    w_addr = int(net.image.view("<u4")[conv["desc_offset"] // 4 + _WORD["weight_addr"]])
    image = net.image.copy()
    image[w_addr + 8 * 200:w_addr + 8 * 260] ^= 0x11     # inside the fc's weight rows
    CompiledNetwork(image, net.relocs, net.manifest).save(net_path)
    rc = run_cli.main(["--package", str(pkg.path), "--network", str(net_path), "--digits", "4",
                       "--backend", "emu", "--check"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "check against the golden model: " in out and "mismatching image(s) of 4 (first" in out


def test_run_command_errors_are_one_line(tmp_path, capsys) -> None:
    rc = run_cli.main(["--package", str(tmp_path / "nope"), "--network", "x", "--digits", "1",
                       "--backend", "emu"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {tmp_path / 'nope'}: no build package here; build one with")
    pkg = make_package(tmp_path / "pkg", SMALL)
    model = random_resnet18(6, input_shape=(3, 8, 8), width=0.125)
    _, net_path, _ = compiled(model, pkg, tmp_path)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    rc = run_cli.main(["--package", str(pkg.path), "--network", str(net_path), "--image",
                       str(tmp_path / "bad.npy"), "--backend", "emu"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"error: {tmp_path / 'bad.npy'}: ")


def test_images_from_files(tmp_path) -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 7      # (H, W, C)
    (tmp_path / "a.ppm").write_bytes(b"P6\n# made by hand\n3 2\n255\n" + rgb.tobytes())
    np.testing.assert_array_equal(run_cli.load_image(tmp_path / "a.ppm"), rgb.transpose(2, 0, 1))
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.save(tmp_path / "g.npy", gray)
    np.testing.assert_array_equal(run_cli.load_image(tmp_path / "g.npy"), gray[None])
    with pytest.raises(run_cli.InputError, match=r"^.*x\.png: unknown image type '\.png'"):
        run_cli.load_image(tmp_path / "x.png")


@pytest.mark.slow
def test_emulator_on_a_trained_model(tmp_path, capsys) -> None:
    """A model trained and exported by ``python -m quant.train`` (a short run on the digits),
    compiled and run by the command on the emulator over the whole test split: 0 mismatches."""
    import subprocess
    import sys

    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "quant.train", "--out", str(out), "--root",
                    str(tmp_path), "--float-epochs", "2", "--epochs", "1", "--max-steps", "10",
                    "--eval-limit", "50", "--no-progress"], check=True)
    pkg = make_package(tmp_path / "pkg", preset("pynq-z2"))
    from firmware.compile import main as compile_main
    assert compile_main(["--package", str(pkg.path), "--model", str(out / "model.npz"),
                         "--out", str(tmp_path / "net.npz")]) == 0
    rc = run_cli.main(["--package", str(pkg.path), "--network", str(tmp_path / "net.npz"),
                       "--digits", "359", "--backend", "emu", "--check", "--model",
                       str(out / "model.npz")])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "0 mismatching image(s) of 359, bit-exact" in text
