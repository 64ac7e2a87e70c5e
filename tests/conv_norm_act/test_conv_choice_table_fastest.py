"""The conv choice table's record of the fastest provider per layer and direction
(benchmarks/conv_choice_table.py: fastest_provider, fastest_by_layer), with the third provider
cudnn_graph timed, unsupported or not installed — and that only cudnn and fused are routed: a
layer the cuDNN graphs win still gets the rule's choice between the other two."""
import json

from fastp2p.ops.backends import conv_choice
from helpers.benchmark_scripts import load_benchmark_script

TABLE = load_benchmark_script("conv_choice_table")
DOWN2, UP6 = TABLE.UNET[2], TABLE.UNET[9]
INNER_DOWN = TABLE.UNET[7]   # one key under both norms


def _ms(median):
    return dict(median_ms=median, p20_ms=median * 0.95, p80_ms=median * 1.05)


def _row(layer, norm, cudnn, fused, graph=None, graph_error=None, mode="forward+backward"):
    row = dict(layer=layer[0], network_norm=norm, batch=64, mode=mode,
               entry=TABLE.layer_entry(layer, 64, norm, "bfloat16"), cudnn=cudnn, fused=fused,
               cudnn_graph=graph)
    if graph_error:
        row["cudnn_graph_error"] = graph_error
    return row


def test_the_fastest_provider_of_a_row_is_the_lowest_median_of_those_timed():
    assert TABLE.fastest_provider(_row(DOWN2, "batch", _ms(2), _ms(1), _ms(0.5))) == \
        "cudnn_graph"
    assert TABLE.fastest_provider(_row(DOWN2, "batch", _ms(2), _ms(1), None,
                                       "unsupported: forward graph: ...")) == "fused"
    assert TABLE.fastest_provider(_row(DOWN2, "batch", _ms(2), None, None,
                                       "not installed: ...")) == "cudnn"
    assert TABLE.fastest_provider(_row(DOWN2, "batch", None, None)) is None
    old_row = _row(DOWN2, "batch", _ms(2), _ms(3))
    del old_row["cudnn_graph"]  # a row written before the third provider existed
    assert TABLE.fastest_provider(old_row) == "cudnn"


def test_fastest_per_layer_and_direction_needs_every_row_to_agree():
    rows = [_row(DOWN2, "batch", _ms(2), _ms(1), _ms(0.5)),
            _row(DOWN2, "batch", _ms(2), _ms(1), _ms(3), mode="forward"),
            _row(INNER_DOWN, "batch", _ms(2), _ms(1), _ms(0.5)),
            _row(INNER_DOWN, "instance", _ms(2), _ms(1), None, "unsupported: instance norm"),
            _row(UP6, "batch", _ms(1), _ms(2), None, "unsupported: transposed")]
    fastest = {(TABLE.entry_key(f["entry"]), f["mode"]): f["provider"]
               for f in TABLE.fastest_by_layer(rows)}
    key = TABLE.entry_key
    assert fastest == {
        (key(rows[0]["entry"]), "forward+backward"): "cudnn_graph",
        (key(rows[1]["entry"]), "forward"): "fused",
        (key(rows[2]["entry"]), "forward+backward"): None,  # graph (batch) vs fused (instance)
        (key(rows[4]["entry"]), "forward+backward"): "cudnn",
    }


def test_the_cuDNN_graphs_are_recorded_never_routed(tmp_path):
    """DOWN2: the graphs fastest, fused beyond the noise against cuDNN: the table lists it as
    fused (routed), and names cudnn_graph as the measured fastest."""
    rows = [_row(DOWN2, "batch", _ms(2), _ms(1), _ms(0.5)),
            _row(UP6, "batch", _ms(1), _ms(2), None, "not installed: nvidia-cudnn-frontend")]
    path = tmp_path / "conv_choice.json"
    TABLE.write_table(TABLE.choice_table(rows, "GPU X"), path)
    written = json.loads(path.read_text())
    assert written["routed"] == ["cudnn", "fused"]
    assert "never routed" in written["not_routed"]
    assert {TABLE.entry_key(f["entry"]): f["provider"] for f in written["fastest"]} == {
        TABLE.entry_key(rows[0]["entry"]): "cudnn_graph",
        TABLE.entry_key(rows[1]["entry"]): "cudnn"}
    assert written["measured"][1]["cudnn_graph_error"].startswith("not installed")
    assert conv_choice.fused_layers(path) == {
        conv_choice.routed_key("GPU X", "forward+backward", TABLE.entry_key(rows[0]["entry"]))}
