"""The training chart of `fastp2p bench` fits its figure: with one batch size the title ran
off both edges, and with two the batch-1 panel's p80 whisker ran past its axis (the x-limit
was 1.4 × the largest median, whiskers ignored) and its value label was drawn inside the
next panel. Checked on the Agg renderer's window extents, not by eye."""
import pytest

from fastp2p.bench import render

pytest.importorskip("matplotlib")


def _row(peer, batch, median, p20, p80):
    return {"peer": peer, "batch_size": batch, "status": "ok", "images_per_s": median,
            "images_per_s_p20": p20, "images_per_s_p80": p80}


def _results(training):
    return {"mode": "quick", "training": training,
            "environment": {"device": "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz",
                            "date": "20261204", "commit": "7cda584"}}


ONE_BATCH = [_row("reference", 1, 3.1, 3.0, 3.3), _row("eager-tuned", 1, 4.2, 4.0, 4.5),
             _row("fastp2p", 1, 9.8, 9.5, 10.1)]
# batch 1's fastp2p has a long p80 tail: its whisker ends at 3.2 × the largest median
TWO_BATCHES = [_row("reference", 1, 3.0, 2.9, 3.1), _row("fastp2p", 1, 5.0, 4.0, 16.0),
               _row("fastp2p-split-conv-backward", 1, 4.0, 3.9, 4.1),
               _row("reference", 2, 5.0, 4.9, 5.1), _row("fastp2p", 2, 9.0, 8.8, 9.3),
               {"peer": "fastp2p-split-conv-backward", "batch_size": 2, "status": "failed",
                "error": "out of memory"}]


def _inside(inner, outer, slack=0.5):
    return (inner.x0 >= outer.x0 - slack and inner.x1 <= outer.x1 + slack
            and inner.y0 >= outer.y0 - slack and inner.y1 <= outer.y1 + slack)


@pytest.mark.parametrize("training", [ONE_BATCH, TWO_BATCHES], ids=["one-batch", "two-batches"])
def test_the_chart_shows_every_whisker_label_and_the_title_inside_their_bounds(training):
    import matplotlib.pyplot as plt

    figure = render.training_figure(_results(training))
    try:
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        (title,) = figure.texts  # the suptitle
        assert title.get_text().replace("\n", " ").startswith("pix2pix training throughput")
        assert _inside(title.get_window_extent(renderer), figure.bbox), "title clipped"
        batches = sorted({row["batch_size"] for row in training})
        for axis, batch in zip(figure.axes, batches):
            ends = [row["images_per_s_p80"] for row in training
                    if row["batch_size"] == batch and row["status"] == "ok"]
            assert axis.get_xlim()[1] >= max(ends), f"batch {batch}: a whisker runs past"
            labels = [text for text in axis.texts]
            assert len(labels) == sum(row["batch_size"] == batch for row in training)
            for label in labels:
                assert _inside(label.get_window_extent(renderer), axis.bbox), (
                    f"batch {batch}: label {label.get_text()!r} outside its panel")
    finally:
        plt.close(figure)


def test_plot_training_writes_the_png(tmp_path):
    path = tmp_path / "chart.png"
    render.plot_training(_results(TWO_BATCHES), path)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_the_title_carries_the_tables_markers_and_the_network():
    """Uncommitted changes, a busy machine, an incomplete run and the networks were said above
    the table only: a chart shared alone looked like a clean run's."""
    import matplotlib.pyplot as plt

    results = _results(ONE_BATCH)
    results = {**results, "complete": False, "config": {"network_description": "64x64, U-Net"},
               "environment": {**results["environment"], "commit_dirty": True,
                               "load_average": 4.5, "usable_cpus": 2}}
    figure = render.training_figure(results)
    try:
        figure.canvas.draw()
        (title,) = figure.texts
        text = " ".join(title.get_text().split())
        assert text.startswith("pix2pix training throughput (64x64, U-Net): ")
        for marker in ("7cda584 (uncommitted changes)", "BUSY MACHINE", "INCOMPLETE RUN",
                       "QUICK CPU SMOKE TEST"):
            assert marker in text, marker
        assert _inside(title.get_window_extent(figure.canvas.get_renderer()), figure.bbox)
    finally:
        plt.close(figure)
