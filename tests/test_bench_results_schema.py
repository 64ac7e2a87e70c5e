"""`fastp2p bench --plot FILE.json` on a results file that lacks what the table and chart read
(or holds it with the wrong type, or a number that is not finite or past a float's range) is
refused in one line naming the file, before anything is written: a file without "config"
stopped with KeyError, the check having looked at "training" and "environment" only."""
import copy
import json

import pytest

from fastp2p.bench import render, results_files
from fastp2p.cli import main

OK_ROW = {"status": "ok", "images_per_s": 10.0, "images_per_s_p20": 9.0,
          "images_per_s_p80": 11.0}
RESULTS = {
    "mode": "quick",
    "environment": {"device": "cpu", "date_utc": "2026-12-02 10:00", "date": "20261202",
                    "commit": "abc1234", "python": "3.11.9", "torch": "2.13.0",
                    "load_average": 0.5, "usable_cpus": 2},
    "load_at_end": {"load_average": 0.7, "usable_cpus": 2},
    "config": {"network_description": "unet_32 ngf 4", "steps": 3, "warmup": 1},
    "ceilings": {"matmul": {"dtype": "float32", "tflops": 0.5, "size": 512},
                 "copy": {"gbps": 10.0}},
    "flop_model": {"train_step_gflop_per_image": 1.0, "generator_forward_gflop": 0.2,
                   "discriminator_forward_gflop": 0.1, "design_estimate_gflop_per_image": 1.1},
    "peers": {"fastp2p": "this library"},
    "training": [{"peer": "fastp2p", "batch_size": 1, **OK_ROW, "step_ms": 100.0,
                  "mfu": 0.1, "fastp2p_ratio": 1.0, "precision": "fp32", "channels_last": False},
                 {"peer": "reference", "batch_size": 1, "status": "error", "error": "boom"}],
    "inference": [{"module": "UNet", "device": "cpu", "precision": "fp32",
                   "channels_last": False, "batch_size": 1, **OK_ROW, "ms": 5.0,
                   "threads": 2, "mode": "eval", "setup_seconds": 0.5}],
    "end_to_end": [{"batch_size": 1, "processes": 1, "device": "cpu", "precision": "fp32",
                    **OK_ROW, "per_rank_images_per_s": [10.0],
                    **{f"{stage}_{figure}": 1 for stage in ("data", "log", "sample",
                                                            "checkpoint")
                       for figure in ("share", "ms_per_call", "calls")}}],
    "micro": [{"module": "norm_act", "name": "fwd", "status": "ok", "median_ms": 0.1,
               "p20_ms": 0.09, "p80_ms": 0.11}],
}


def _without(path):
    def edit(results):
        *parents, last = path
        target = results
        for key in parents:
            target = target[key]
        del target[last]
    return edit


def _setting(path, value):
    def edit(results):
        *parents, last = path
        target = results
        for key in parents:
            target = target[key]
        target[last] = value
    return edit


BROKEN = {
    "no-config": _without(["config"]),
    "no-config-steps": _without(["config", "steps"]),
    "steps-as-text": _setting(["config", "steps"], "3"),
    "no-environment-date": _without(["environment", "date"]),
    "no-mode": _without(["mode"]),
    "training-not-a-list": _setting(["training"], {"peer": "x"}),
    "training-row-no-peer": _without(["training", 0, "peer"]),
    "ok-training-row-no-step-ms": _without(["training", 0, "step_ms"]),
    "mfu-as-text": _setting(["training", 0, "mfu"], "10%"),
    "error-as-number": _setting(["training", 1, "error"], 3),
    "inference-row-no-ms": _without(["inference", 0, "ms"]),
    "end-to-end-no-data-calls": _without(["end_to_end", 0, "data_calls"]),
    "micro-row-a-list": _setting(["micro", 0], [1, 2]),
    "matmul-no-tflops": _without(["ceilings", "matmul", "tflops"]),
    "flop-model-no-estimate": _without(["flop_model", "design_estimate_gflop_per_image"]),
    "peers-a-list": _setting(["peers"], ["fastp2p"]),
    "a-list": lambda results: results.clear(),
    # NaN and Infinity (which json reads) reached matplotlib: "Axis limits cannot be NaN or
    # Inf", naming no file, the table already replaced; an int past a float's range stopped
    # the table in an OverflowError traceback
    "images-per-s-nan": _setting(["training", 0, "images_per_s"], float("nan")),
    "images-per-s-infinite": _setting(["training", 0, "images_per_s"], float("inf")),
    "images-per-s-near-float-max": _setting(["training", 0, "images_per_s"], 1.7e308),
    "peak-memory-past-a-float": _setting(["training", 0, "peak_memory_bytes"], 10**400),
    "flop-model-past-a-float": _setting(["flop_model", "generator_forward_gflop"], 10**400),
    "per-rank-nan": _setting(["end_to_end", 0, "per_rank_images_per_s"], [float("nan")]),
}


def _write(tmp_path, results):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    return path


def test_a_whole_results_file_renders(tmp_path):
    files = render.render_files(_write(tmp_path, RESULTS))
    text = files["markdown"].read_text()
    assert "unet_32 ngf 4" in text and "norm_act" in text


def test_a_stage_without_calls_renders(tmp_path):
    """The end-to-end section writes no time per call (None) for a stage that did not run in
    the timed steps; the check took it for a damaged file and the run ended in a traceback."""
    results = copy.deepcopy(RESULTS)
    results["end_to_end"][0].update(checkpoint_calls=0, checkpoint_ms_per_call=None)
    assert results_files.load_results(_write(tmp_path, results))["end_to_end"][0][
        "checkpoint_ms_per_call"] is None
    assert "unet_32 ngf 4" in render.render_files(tmp_path / "results.json")["markdown"].read_text()


def test_a_null_per_rank_figure_renders(tmp_path):
    """An optional field may be null: a null per_rank_images_per_s passed the check, then
    stopped the end-to-end table in a TypeError traceback (len of None)."""
    results = copy.deepcopy(RESULTS)
    results["end_to_end"][0]["per_rank_images_per_s"] = None
    assert "## End to end" in render.render_files(_write(tmp_path, results))["markdown"].read_text()


def test_dollar_signs_in_the_charted_text_are_drawn_as_typed(tmp_path):
    """A device, peer or status holding two '$' started matplotlib's mathtext: its parse
    error stopped --plot in a traceback, after the table was written."""
    results = copy.deepcopy(RESULTS)
    results["environment"]["device"] = "cpu $\\frac$"
    results["training"][0]["peer"] = "peer $\\frac{$"
    results["training"][1]["status"] = "$x^$"
    assert render.render_files(_write(tmp_path, results))["chart"].stat().st_size > 0


# Fields the check left out (optional ones, and text that is not UTF-8): the table or chart
# stopped in a traceback, or showed them as they were. Each: the edit, then the field the
# message names.
UNCHECKED = {
    "load-average-as-text": (_setting(["environment", "load_average"], "high"),
                             "environment['load_average']"),
    "load-average-past-a-float": (_setting(["environment", "load_average"], 10**400),
                                  "environment['load_average']"),
    "usable-cpus-past-a-float": (_setting(["environment", "usable_cpus"], 10**400),
                                 "environment['usable_cpus']"),
    "load-at-end-a-list": (_setting(["load_at_end"], [1]), "load_at_end is not an object"),
    "load-at-end-cpus-as-text": (_setting(["load_at_end"], {"usable_cpus": "2"}),
                                 "load_at_end['usable_cpus']"),
    "training-precision-as-int": (_setting(["training", 1, "precision"], 5),
                                  "training[1]['precision']"),
    "training-channels-last-as-text": (_setting(["training", 0, "channels_last"], "yes"),
                                       "training[0]['channels_last']"),
    "inference-threads-as-text": (_setting(["inference", 0, "threads"], "4"),
                                  "inference[0]['threads']"),
    "inference-mode-as-number": (_setting(["inference", 0, "mode"], 1), "inference[0]['mode']"),
    "inference-setup-seconds-as-text": (_setting(["inference", 0, "setup_seconds"], "1 s"),
                                        "inference[0]['setup_seconds']"),
    "lone-surrogate-in-device": (_setting(["environment", "device"], "cpu \udcff"),
                                 "environment['device'] is not UTF-8 text"),
    "lone-surrogate-in-date": (_setting(["environment", "date"], "\udcff"),
                               "environment['date'] is not UTF-8 text"),
    "lone-surrogate-in-micro-name": (_setting(["micro", 0, "name"], "f\ud800wd"),
                                     "micro[0]['name'] is not UTF-8 text"),
    "lone-surrogate-in-a-key": (_setting(["peers", "\udcff"], "a peer"),
                                "peers has a key that is not UTF-8 text"),
}


def _refused(tmp_path, capsys, results) -> str:
    """The one-line error that load_results and `--plot` give for ``results``, both before
    anything is written."""
    path = _write(tmp_path, results if results else [])
    with pytest.raises(ValueError) as caught:
        results_files.load_results(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path} is not a fastp2p bench results file (")
    assert main(["bench", "--plot", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err
    assert not path.with_suffix(".md").exists() and not path.with_suffix(".png").exists()
    return message


@pytest.mark.parametrize("edit", BROKEN.values(), ids=BROKEN.keys())
def test_a_results_file_missing_what_the_report_reads_is_refused_in_one_line(tmp_path, capsys,
                                                                           edit):
    results = copy.deepcopy(RESULTS)
    edit(results)
    _refused(tmp_path, capsys, results)


@pytest.mark.parametrize("edit, field", UNCHECKED.values(), ids=UNCHECKED.keys())
def test_a_bad_optional_field_or_text_is_refused_naming_the_field(tmp_path, capsys, edit,
                                                                  field):
    results = copy.deepcopy(RESULTS)
    edit(results)
    assert field in _refused(tmp_path, capsys, results)
