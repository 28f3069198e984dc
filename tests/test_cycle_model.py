"""The engine's cycle model on ResNet-18 at full size (its agreement with the RTL is checked
by the whole-network bench, sim/test_network.py)."""

import pytest

from rtl.config import preset
from rtl.cycle_model import (
    DdrTiming,
    descriptor_cycles,
    markdown,
    resnet18_cycles,
    resnet18_latency,
)
from rtl.interface.ddr import pass_block_words
from rtl.interface.descriptor import Op


@pytest.mark.parametrize(("board", "ratio"), [("pynq-z2", "60:35:5"), ("zc706", "65:30:5")])
def test_resnet18_on_the_presets(board, ratio):
    cfg = preset(board)
    layers, chain = resnet18_latency(cfg, ratio, timing=DdrTiming.zynq_hp())
    assert layers == resnet18_cycles(cfg, ratio, timing=DdrTiming.zynq_hp())
    assert len(layers) == 31 and layers[0].name == "conv1" and layers[-1].op == "fc"
    assert layers[0].tiles > 1                       # 112 x 112 x 64 does not fit at once
    for layer in layers:
        assert layer.cycles >= layer.mac_cycles > 0 or layer.mac_cycles == 0
    text = markdown(cfg, ratio, layers, DdrTiming.zynq_hp(), chain)
    total = sum(layer.cycles for layer in layers)
    # As one chain a layer's last tile overlaps the next layer's start: a few % sooner.
    assert 0.9 * total < chain < total
    assert f"**{total:,}**" in text and f"**{chain:,}**" in text
    assert f"Modelled latency: **{chain / (cfg.clock_mhz * 1e3):.2f} ms** per image" in text


def _conv(cfg, *, passes, steps, pixels):
    return dict(op=Op.CONV, in_c=cfg.vec_len, in_h=1, in_w=pixels, out_c=cfg.vec_len,
                out_h=1, out_w=pixels, kernel_h=1, kernel_w=1, stride=1, in_bits=4, out_bits=4,
                passes=passes, steps=steps)


def test_weights_load_while_the_core_computes():
    """Double-buffered weights: a pass's load hides behind the previous pass's compute,
    so each extra pass costs the longer of the two, not their sum."""
    cfg = preset("pynq-z2").replace(weight_ports=1)     # a pass loads a word a cycle
    steps = 20                    # more than the 17 result beats of a pixel (68 slots / 4)
    load = pass_block_words(cfg, steps)
    compute_bound = _conv(cfg, passes=1, steps=steps, pixels=load)
    one = descriptor_cycles(cfg, compute_bound)
    three = descriptor_cycles(cfg, {**compute_bound, "passes": 3})
    compute = load * steps
    assert 2 * compute <= three - one < 2 * compute + 100
    load_bound = _conv(cfg, passes=1, steps=steps, pixels=2)
    one = descriptor_cycles(cfg, load_bound)
    three = descriptor_cycles(cfg, {**load_bound, "passes": 3})
    assert 2 * load <= three - one < 2 * load + 100


def test_ddr_latency_is_hidden_by_bursts_in_flight():
    cfg = preset("zc706")
    layer = _conv(cfg, passes=4, steps=144, pixels=49)
    fast = descriptor_cycles(cfg, layer, DdrTiming(read_latency=2, write_latency=2))
    slow = descriptor_cycles(cfg, layer, DdrTiming(read_latency=40, write_latency=20))
    assert fast < slow < fast * 1.05


def test_command_line_prints_the_model_per_layer_and_in_total(capsys):
    """``python -m rtl.cycle_model``: the same figures as ``resnet18_cycles`` (the build report
    and docs read that function too), as a table or JSON."""
    import json

    from rtl.cycle_model import main

    assert main(["--board", "zc706", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    layers = resnet18_cycles(preset("zc706"), "65:30:5", timing=DdrTiming.zynq_hp())
    assert [(row["name"], row["cycles"]) for row in got["layers"]] == \
        [(layer.name, layer.cycles) for layer in layers]
    assert got["total_cycles"] == sum(layer.cycles for layer in layers)
    assert got["total_ms"] == pytest.approx(got["total_cycles"] / 150e3)
    assert got["chain_cycles"] == resnet18_latency(preset("zc706"), "65:30:5",
                                                   timing=DdrTiming.zynq_hp())[1]
    assert main(["--board", "pynq-z2", "--ratio", "pot"]) == 0
    table = capsys.readouterr().out
    pot = resnet18_cycles(preset("pynq-z2"), "pot", timing=DdrTiming.zynq_hp())
    assert f"**{sum(layer.cycles for layer in pot):,}**" in table and "| conv1 |" in table
    with pytest.raises(SystemExit):
        main(["--board", "no-such-board"])
    assert "invalid choice" in capsys.readouterr().err


def test_late_layers_run_as_one_tile_on_the_presets():
    """layer4 (7 x 7 x 512) in one row tile on both presets, layer3 (14 x 14 x 256) too on
    zc706; pynq-z2's out buffer (2048 vectors of 16) holds layer3 in two tiles (its
    stride-2 layers in more: a layer of several tiles gets bands of half the act buffer)."""
    for board, ratio in (("pynq-z2", "60:35:5"), ("zc706", "65:30:5")):
        tiles = {layer.name: layer.tiles
                 for layer in resnet18_cycles(preset(board), ratio, timing=DdrTiming.zynq_hp())}
        # (the residual adds run inside the conv before them: no tile of their own)
        assert all(n == 1 for name, n in tiles.items()
                   if name.startswith("layer4") and not name.endswith("add")), tiles
        for name, n in tiles.items():
            if name.startswith("layer3.") and not name.endswith("add"):
                stride2 = name in ("layer3.0.conv1", "layer3.0.downsample.0")
                assert (n >= 2 if stride2 else n == 2) if board == "pynq-z2" else n == 1, \
                    (name, tiles)


def test_phases_add_up_to_the_cycles():
    """Every layer's phases (descriptor, maps in, compute, weights, vector units, write-back)
    sum to its cycles; convs compute, vector layers do not; weights wait only in convs."""
    from rtl.cycle_model import PHASES

    for board, ratio in (("pynq-z2", "60:35:5"), ("zc706", "65:30:5")):
        for layer in resnet18_cycles(preset(board), ratio, timing=DdrTiming.zynq_hp()):
            phases = dict(layer.phases)
            assert tuple(phases) == PHASES and sum(phases.values()) == layer.cycles
            assert min(phases.values()) >= 0
            if layer.tiles == 0:        # an add (Op.CONV_ADD) or max-pool run inside its conv
                assert layer.op in ("add", "maxpool") and layer.cycles == 0
                assert (layer.op == "maxpool") == (board == "zc706" and layer.name == "maxpool")
                continue
            is_mac = layer.op in ("conv", "fc")
            assert (phases["compute"] >= layer.mac_cycles > 0) if is_mac else (
                phases["compute"] == phases["weights"] == 0 < phases["vector units"])


def test_groups_that_share_a_lane_cost_a_beat_per_slot():
    """A result group whose valid slots share an out-buffer lane goes one slot a beat
    (``result_lanes`` beats); the model reads the slots from the DDR image it is given, and
    on a pass with fewer steps than beats they set the pace of a pixel."""
    from rtl.cycle_model import chain_cycles, result_beats
    from rtl.interface.ddr import PASS_HEADER_WORDS, SLOT_WORDS, pack_slot
    from rtl.interface.descriptor import pack_descriptor

    cfg = preset("pynq-z2")                 # 46 slots, 4 a group, 16 lanes
    v, lanes, groups = cfg.vec_len, cfg.result_lanes, cfg.result_groups
    distinct = list(range(cfg.slots))
    assert result_beats(cfg, distinct) == groups
    assert result_beats(cfg, [None] * cfg.slots) == groups      # an empty group: a beat too
    shared = [v if s == 1 else s for s in distinct]     # slot 1's channel: slot 0's lane
    assert result_beats(cfg, shared) == groups + lanes - 1
    assert result_beats(cfg, [None, *shared[1:]]) == groups  # only valid slots count
    two = list(distinct)
    two[0], two[4] = 2 * v + 1, 3 * v + 5   # lanes 1 and 5: shared in groups 0 and 1
    assert result_beats(cfg, two) == groups + 2 * (lanes - 1)
    # A logits layer sends every group one slot a beat, its empty groups included.
    assert result_beats(cfg, distinct, logits=True) == groups * lanes
    assert result_beats(cfg, [None] * cfg.slots, logits=True) == groups * lanes

    pixels, weight_addr = 64, 0x1000
    desc = pack_descriptor(op=Op.CONV, in_c=v, in_h=1, in_w=pixels, out_c=v, out_h=1,
                           out_w=pixels, kernel_h=1, kernel_w=1, stride=1, in_bits=4, out_bits=4,
                           passes=1, steps=1, weight_addr=weight_addr, out_addr=0x8000)

    def block(channels):
        words = [0] * PASS_HEADER_WORDS
        for c in channels:
            words += ([0] * SLOT_WORDS if c is None
                      else pack_slot(channel=c, bias=0, mult=0, shift=0))
        return b"".join(w.to_bytes(8, "little") for w in words)

    plain = chain_cycles(cfg, [desc], memory=[(weight_addr, block(distinct))])
    assert plain == chain_cycles(cfg, [desc])
    assert chain_cycles(cfg, [desc], memory=[(weight_addr, block(two))]) == \
        plain + pixels * 2 * (lanes - 1)
    with pytest.raises(ValueError, match="does not hold"):
        chain_cycles(cfg, [desc], memory=[(0, b"")])


def test_a_pass_longer_than_the_weight_banks_is_refused(capsys, monkeypatch):
    """layer4's 3x3 convs reduce 512 x 9 = 4608 values, 288 weight rows of 16 lanes: two banks
    of 128 rows cannot hold their passes, not even as long passes that span both (the engine's
    check refuses such a descriptor), so the model refuses the network instead of timing
    it."""
    import rtl.config
    from rtl.cycle_model import main
    from rtl.interface.tiling import TilingError

    cfg = preset("pynq-z2").replace(weight_buf_depth=128)
    with pytest.raises(TilingError, match=r"layer4\.0\.conv2: a pass needs 288 weight rows, "
                                          r"the two weight banks hold 256 \(2 x "
                                          r"weight_buf_depth 128\); raise weight_buf_depth to "
                                          r"256"):
        resnet18_cycles(cfg, "60:35:5", timing=DdrTiming.zynq_hp())
    monkeypatch.setitem(rtl.config.PRESETS, "pynq-z2", cfg)
    assert main(["--board", "pynq-z2"]) == 1
    err = capsys.readouterr().err
    assert "cannot run on pynq-z2: layer4.0.conv2: a pass needs 288 weight rows" in err
