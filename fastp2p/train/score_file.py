"""``RESULTS_DIR/NAME/PHASE_EPOCH/scores.json``: what ``fastp2p test`` prints of a run's scores,
for a script that collects a sweep's results (the printed lines are for people to read).

One JSON object (``"format": 1``):
- ``name``, ``phase``, ``epoch``: the run, the split translated and the checkpoint set loaded
  (``iter_N`` with ``--load_iter N``); ``checkpoint``: the generator's file, as an absolute path;
- ``saved_at``: where in its run that file was saved, as the end line names it: ``{"step": N,
  "epoch": E, "epoch_complete": B}`` (in epoch E, or after it when B), epoch and epoch_complete
  null where its training state does not say; null without a manifest (the reference's files,
  ``--model_suffix``); ``run_training``: whether a training held the run folder's lock as the
  translation began (latest_* then moves on);
- ``images``: how many images were translated and written whole, ``of``: how many were asked
  for (``--num_test``, at most the split's), ``complete``: whether the run wrote them all (false
  after a stop request; index.html is then titled partial);
- ``l1``: the mean L1 of fake_B to real_B in [-1, 1] units, as printed (``model``) and of the
  two baselines (``constant``: the train split's mean image; ``identity``: real_A), each null
  where not computed: no targets (``--dataset_mode single``: all three), A and B of other
  channels (identity), no usable train split (constant); ``constant_note``: what the constant
  baseline averages, or why there is none (null without targets). Full precision; the printed
  ratios are ``model / baseline``;
- ``options``: the options that decide the scores (``SCORED_OPTIONS``), as the run used them;
  ``dataroot`` as an absolute path, or ``"embedded"`` for the embedded dataset.

Written when the images and index.html are, renamed into place; an earlier run's file is removed
before the first image is written, so a run that fails leaves none.
"""
import json
import os

SCORES_FILE = "scores.json"
FORMAT = 1
EMBEDDED = "embedded"   # options.dataroot of a test of the embedded dataset (no --dataroot)

# The options a collector tells runs' scores apart by: the data and how it is read, the
# generator (taken from the run's train_opt.txt where the command line leaves them out), its
# mode and the images scored.
SCORED_OPTIONS = ("dataroot", "direction", "dataset_mode", "preprocess", "load_size",
                  "crop_size", "netG", "ngf", "norm", "no_dropout", "input_nc", "output_nc",
                  "model_suffix", "eval", "num_test", "seed")


def scores_record(args, translated, weights, saved_point: dict) -> dict:
    """The content of scores.json for ``translated`` (``triplet_writing.Translated``) of
    the generator's file ``weights``, saved at ``saved_point`` ({"saved_at", "run_training"})
    of its run, with options ``args``."""
    record = {"format": FORMAT, "name": args.name, "phase": args.phase, "epoch": args.epoch,
              "checkpoint": os.path.abspath(weights), **saved_point,
              "images": translated.count, "of": translated.total,
              "complete": translated.stopped_by is None}
    if translated.scores is None:   # no targets: nothing scored
        record.update(l1=dict.fromkeys(("model", "constant", "identity")), constant_note=None)
    else:
        record.update(translated.scores.record())
    record["options"] = {key: getattr(args, key) for key in SCORED_OPTIONS}
    record["options"]["dataroot"] = _recorded_dataroot(args.dataroot)
    return record


def _recorded_dataroot(dataroot) -> str:
    """``dataroot`` as an absolute path (a relative one names another dataset from another
    folder), or "embedded" for the embedded dataset (no --dataroot), which no absolute path
    can be taken for."""
    return EMBEDDED if dataroot is None else os.path.abspath(dataroot)


def write_scores(path, record: dict) -> None:
    """``record`` as JSON into ``path``, renamed into place (a link planted there replaced)."""
    from fastp2p.atomic_files import replace_text

    replace_text(path, json.dumps(record, indent=1) + "\n")

