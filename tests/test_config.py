"""HwConfig: presets, derived values, JSON round trips, pinned validation messages, hash."""

import hashlib
import json
import subprocess
import sys

import pytest

from rtl.config import PRESETS, HwConfig, preset, preset_names

BASE = dict(name="t", part="xc7z020clg400-1", clock_mhz=100.0,
            pot_rows=4, pot_cols=8, dsp_rows=4, dsp_cols=8)


def make(**changes):
    return HwConfig(**{**BASE, **changes})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_json_round_trip(name):
    cfg = preset(name)
    text = cfg.to_json()
    back = HwConfig.from_json(text)
    assert back == cfg
    assert back.to_json() == text
    assert back.config_hash == cfg.config_hash


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_file_round_trip(tmp_path, name):
    path = tmp_path / "cfg.json"
    path.write_text(preset(name).to_json())
    assert HwConfig.load(path) == preset(name)


def test_preset_parts_and_sizes_fit_devices():
    z20, z45 = preset("pynq-z2"), preset("zc706")
    assert z20.part == "xc7z020clg400-1" and z45.part == "xc7z045ffg900-2"
    for cfg in (z20, z45):
        assert cfg.dsp_count <= cfg.resources["dsp"]
        assert cfg.vec_len == cfg.pot_cols == cfg.dsp_cols


def test_derived_values():
    cfg = make(pot_rows=6, pot_cols=8, dsp_rows=4, dsp_cols=8, max_reduction=100)
    assert cfg.pot_macs == 48
    assert cfg.dsp_lanes == 32
    assert cfg.dsp_count == 16
    assert make(dsp_pack=1).dsp_count == 32
    assert cfg.max_abs_weight == 128
    assert cfg.max_activation == 255
    # |bias + dot| <= 2 * 100 * 128 * 255 = 6_528_000 < 2**23, so 23 bits + sign.
    assert cfg.max_abs_dot == 3_264_000
    assert cfg.acc_bits == 24
    assert make(weight_formats=("pot4", "fixed4"), max_reduction=100).max_abs_weight == 64


def test_preset_accumulator_width():
    # ResNet-18's longest dot product is 512 * 3 * 3 = 4608; 2 * 4608 * 128 * 255 = 300_810_240,
    # which needs 29 magnitude bits and a sign bit.
    assert preset("zc706").max_reduction == 4608
    assert preset("zc706").acc_bits == 30


def test_unknown_board_lists_valid_ones():
    with pytest.raises(ValueError, match=r"^unknown board 'zc702'; valid boards: pynq-z2, zc706$"):
        preset("zc702")
    assert preset_names() == ["pynq-z2", "zc706"]


@pytest.mark.parametrize(("changes", "exc", "message"), [
    (dict(pot_rows=-1), ValueError, r"^HwConfig.pot_rows must be between 1 and 1024, not -1$"),
    (dict(pot_cols="16"), TypeError, r"^HwConfig.pot_cols must be an integer, not '16'$"),
    (dict(pot_cols=True), TypeError, r"^HwConfig.pot_cols must be an integer, not True$"),
    (dict(act_bits=6), ValueError, r"^HwConfig.act_bits must be one of 4, 5, not 6$"),
    (dict(input_bits=9), ValueError, r"^HwConfig.input_bits must be between 4 and 8, not 9$"),
    (dict(clock_mhz="fast"), TypeError, r"^HwConfig.clock_mhz must be a number, not 'fast'$"),
    (dict(clock_mhz=900.0), ValueError,
     r"^HwConfig.clock_mhz must be between 10 and 500 MHz, not 900.0$"),
    (dict(part="xc7a35t"), ValueError,
     r"^HwConfig.part must be one of xc7z020clg400-1, xc7z045ffg900-2, not 'xc7a35t'$"),
    (dict(name="a b"), ValueError, r"^HwConfig.name must be a non-empty string of letters, "
                                   r"digits, '-' and '_', not 'a b'$"),
    (dict(weight_formats=("pot4", "fixed2")), ValueError,
     r"^HwConfig.weight_formats holds unknown format 'fixed2'; allowed: pot4, fixed4, fixed8$"),
    (dict(dsp_pack=5), ValueError, r"^HwConfig.dsp_pack must be one of 1, 2, 3, 4, not 5$"),
    # Values every config must have to be built, elaborated and run (refused at once, not
    # deep inside the RTL or the firmware).
    (dict(axi_data_width=32), ValueError, r"^HwConfig.axi_data_width must be 64 \(the DDR "
                                          r"layouts are built from 64-bit words\), not 32$"),
    (dict(axi_data_width="64"), TypeError, r"^HwConfig.axi_data_width must be an integer, "
                                           r"not '64'$"),
    (dict(pot_cols=6, dsp_cols=6), ValueError, r"^HwConfig.pot_cols \(the vector length\) "
     r"must be a power of two: a channel's lane is its low bits, not 6$"),
    (dict(fixed8_lanes=1), ValueError, r"^HwConfig.fixed8_lanes must be one of 2, not 1$"),
    (dict(dsp_pack=4, dsp_rows=8), ValueError, r"^HwConfig.dsp_pack must be at most 3 with "
     r"8-bit array inputs \(the top lane must end within the DSP48E1's 25-bit operand\), not 4$"),
    (dict(act_buf_depth=1000), ValueError,
     r"^HwConfig.act_buf_depth must be a power of two \(BRAM depth\), not 1000$"),
    (dict(weight_ports=4), ValueError, r"^HwConfig.weight_ports must be between 1 and 3, "
                                       r"not 4$"),
    (dict(weight_ports=0), ValueError, r"^HwConfig.weight_ports must be between 1 and 3, "
                                       r"not 0$"),
    # Contradictory combinations.
    (dict(dsp_cols=16), ValueError,
     r"^HwConfig.pot_cols \(8\) and HwConfig.dsp_cols \(16\) must be equal: both arrays take "
     r"the same activation vector each cycle$"),
    (dict(dsp_rows=5), ValueError,
     r"^HwConfig.dsp_rows must be even when dsp_pack is 2 \(two filters share a DSP48E1\), not 5$"),
    (dict(pot_rows=0), ValueError, r"^HwConfig.pot_rows must be at least 1: the engine builds "
                                   r"both arrays \(a ratio may still leave one idle\), not 0$"),
    (dict(dsp_rows=0, weight_formats=("pot4",)), ValueError,
     r"^HwConfig.dsp_rows must be at least 1: the engine builds both arrays"),
    (dict(max_reduction=1 << 20), ValueError,
     r"^HwConfig.max_reduction 1048576 needs a 37-bit accumulator; at most 32 bits are "
     r"supported \(accumulators and biases are 32-bit words in memory\); lower max_reduction$"),
])
def test_validation_messages(changes, exc, message):
    with pytest.raises(exc, match=message):
        make(**changes)


def test_json_unknown_and_missing_keys():
    data = json.loads(preset("zc706").to_json())
    with pytest.raises(ValueError, match=r"^HwConfig has no field 'pot_row'; known fields: "):
        HwConfig.from_dict({**data, "pot_row": 3})
    del data["part"]
    with pytest.raises(ValueError, match=r"^HwConfig is missing required field 'part'$"):
        HwConfig.from_dict(data)
    with pytest.raises(TypeError, match=r"^HwConfig JSON must be an object, not list$"):
        HwConfig.from_json("[1, 2]")
    with pytest.raises(ValueError, match=r"^HwConfig JSON is malformed: "):
        HwConfig.from_json("{nope")


def test_load_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(preset("zc706").to_json()), "pot_rows": -2}))
    with pytest.raises(ValueError, match=r"bad\.json: HwConfig.pot_rows must be between"):
        HwConfig.load(bad)
    with pytest.raises(ValueError, match=r"^cannot read HwConfig file .*missing\.json"):
        HwConfig.load(tmp_path / "missing.json")


def test_config_is_frozen():
    cfg = preset("pynq-z2")
    with pytest.raises(AttributeError):
        cfg.pot_rows = 3


def test_hash_is_sha256_of_canonical_json_and_stable_across_processes():
    cfg = preset("zc706")
    canonical = json.dumps(json.loads(cfg.to_json()), sort_keys=True, separators=(",", ":"))
    expected = int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:4], "big")
    assert cfg.config_hash == expected
    assert cfg.config_hash_hex == f"{expected:08x}"
    out = subprocess.run(
        [sys.executable, "-c", "from rtl.config import preset; print(preset('zc706').config_hash)"],
        capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123"}, cwd=".")
    assert int(out.stdout) == cfg.config_hash


def test_hash_changes_with_every_field():
    cfg = preset("pynq-z2")
    hashes = {cfg.config_hash}
    for change in (dict(pot_rows=cfg.pot_rows + 2), dict(clock_mhz=100.0),
                   dict(act_bits=5, dsp_pack=3), dict(axi_addr_width=30), dict(name="other"),
                   dict(dsp_rows=cfg.dsp_rows - 2)):
        hashes.add(cfg.replace(**change).config_hash)
    assert len(hashes) == 7


def test_weight_formats_list_from_json_is_canonical():
    cfg = make(weight_formats=["fixed8", "pot4", "fixed4"])
    assert cfg.weight_formats == ("pot4", "fixed4", "fixed8")
    assert cfg == make()


def test_hash_is_canonical_for_equal_values() -> None:
    """A clock written 100 or 100.0 (JSON from another tool) is the same hardware."""
    a = preset("pynq-z2").replace(clock_mhz=100.0)
    as_int = a.to_dict() | {"clock_mhz": 100}
    b = HwConfig.from_dict(as_int)
    assert b == a and b.config_hash == a.config_hash and b.to_json() == a.to_json()


def test_readme_preset_table_is_current() -> None:
    from pathlib import Path

    from rtl.config import preset_table
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert preset_table() in readme, (
        "README.md's preset table is stale: paste the output of "
        "'./run python -c \"from rtl.config import preset_table; print(preset_table())\"'")
