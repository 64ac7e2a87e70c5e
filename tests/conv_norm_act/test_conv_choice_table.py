"""The conv choice table from benchmark rows (benchmarks/conv_choice_table.py): the rule (fused
in a direction only where its p80 beats cuDNN + norm-act's p20 in every row of the layer in that
direction), the entries conv_choice reads back for the device the table names (transposed
decoder convs included), the record of every row, and the atomic write."""
import json

import pytest

from fastp2p.ops.backends import conv_choice
from helpers.benchmark_scripts import load_benchmark_script

TABLE = load_benchmark_script("conv_choice_table")
DOWN2, UP6 = TABLE.UNET[2], TABLE.UNET[9]          # a down conv, a two-source decoder conv
INNER_DOWN = TABLE.UNET[7]                          # no norm after it, the previous one's before


def _ms(median, p20, p80):
    return dict(median_ms=median, p20_ms=p20, p80_ms=p80)


def _row(layer, norm, fused, cudnn, mode="forward+backward", batch=64):
    return dict(layer=layer[0], network_norm=norm, batch=batch, mode=mode,
                entry=TABLE.layer_entry(layer, batch, norm, "bfloat16"), cudnn=cudnn,
                fused=fused)


FAST, SLOW = _ms(1.0, 0.95, 1.05), _ms(2.0, 1.9, 2.1)
GPU = "GPU X"


def _fused_keys(rows, mode="forward+backward"):
    return {TABLE.entry_key(e) for e in TABLE.choice_table(rows, GPU)["fused"][mode]}


def test_a_layer_is_fused_only_beyond_the_noise():
    overlapping = _ms(1.7, 1.4, 2.0)          # median faster, but p80 above the peer's p20
    touching = _ms(1.0, 0.9, 1.9)             # p80 equal to the peer's p20
    rows = [_row(DOWN2, "batch", FAST, SLOW), _row(DOWN2, "instance", overlapping, SLOW),
            _row(UP6, "batch", touching, SLOW), _row(UP6, "instance", SLOW, FAST)]
    assert _fused_keys(rows) == {TABLE.entry_key(rows[0]["entry"])}


def test_each_direction_is_decided_by_its_own_rows():
    """Training (forward+backward) and inference (forward) each by their rows only: a forward
    win does not route a training call, nor a forward+backward win an inference call."""
    rows = [_row(DOWN2, "batch", FAST, SLOW, mode="forward"),
            _row(UP6, "batch", SLOW, FAST, mode="forward"), _row(UP6, "batch", FAST, SLOW)]
    assert _fused_keys(rows) == {TABLE.entry_key(rows[2]["entry"])}
    assert _fused_keys(rows, "forward") == {TABLE.entry_key(rows[0]["entry"])}


def test_a_key_shared_by_both_norms_must_win_under_each():
    """The innermost down conv has no norm after it (key norm "none") but applies the previous
    layer's batch or instance norm in its prologue: one key, two measurements."""
    batch, instance = _row(INNER_DOWN, "batch", FAST, SLOW), _row(INNER_DOWN, "instance", SLOW,
                                                                      FAST)
    assert batch["entry"] == instance["entry"] and batch["entry"]["norm"] == "none"
    assert _fused_keys([batch, instance]) == set()
    assert _fused_keys([batch]) == {TABLE.entry_key(batch["entry"])}


def test_a_failed_provider_never_wins():
    rows = [_row(DOWN2, "batch", None, SLOW), _row(UP6, "batch", FAST, None)]
    assert _fused_keys(rows) == set()


def test_the_written_table_is_what_conv_choice_reads(tmp_path):
    rows = [_row(DOWN2, "batch", FAST, SLOW), _row(UP6, "instance", FAST, SLOW, batch=1),
            _row(INNER_DOWN, "batch", SLOW, FAST), _row(DOWN2, "batch", FAST, SLOW, "forward")]
    environment = dict(device="recorded elsewhere", commit="abc", torch="2", triton="3")
    path = tmp_path / "conv_choice.json"
    TABLE.write_table(TABLE.choice_table(rows, GPU, environment), path)
    written = json.loads(path.read_text())
    assert written["rule"] == TABLE.RULE and written["device"] == GPU
    assert written["format"] == conv_choice.FORMAT and written["commit"] == "abc"
    assert written["measured"] == rows  # every row's timings, for the record
    up6 = dict(norm="instance", dtype="bfloat16", input=[1, 1024, 2, 2],
               weight=[1024, 512, 4, 4], stride=2, padding=1, transposed=True)
    down2 = dict(norm="batch", dtype="bfloat16", input=[64, 128, 64, 64],
                 weight=[256, 128, 4, 4], stride=2, padding=1)
    assert sorted(written["fused"]["forward+backward"], key=str) == sorted([up6, down2], key=str)
    assert written["fused"]["forward"] == [down2]
    up6_key = conv_choice.layer_key("instance", "bfloat16", (1, 1024, 2, 2), (1024, 512, 4, 4),
                                    2, 1, True)
    down2_key = conv_choice.layer_key("batch", "bfloat16", (64, 128, 64, 64), (256, 128, 4, 4),
                                      2, 1)
    assert conv_choice.fused_layers(path) == {
        conv_choice.routed_key(GPU, "forward+backward", up6_key),
        conv_choice.routed_key(GPU, "forward+backward", down2_key),
        conv_choice.routed_key(GPU, "forward", down2_key)}


def test_writing_replaces_the_table_atomically(tmp_path):
    path = tmp_path / "conv_choice.json"
    TABLE.write_table(TABLE.choice_table([_row(DOWN2, "batch", FAST, SLOW)], GPU), path)
    before = path.read_text()
    unwritable = TABLE.choice_table([_row(DOWN2, "batch", FAST, SLOW)], GPU)
    unwritable["measured"].append(object())  # json cannot write it: the old table must stay
    with pytest.raises(TypeError):
        TABLE.write_table(unwritable, path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["conv_choice.json"]
    TABLE.write_table(TABLE.choice_table([], GPU), path)
    assert json.loads(path.read_text())["fused"] == {"forward": [], "forward+backward": []}
