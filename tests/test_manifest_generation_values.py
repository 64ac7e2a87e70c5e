"""A manifest's generation must be an int from 0 to 2**62-1 (``read_manifest``):
``"generation": Infinity`` (which Python's json reads as a float) in any ``*_checkpoint.json``
of the run folder made every save fail after a whole epoch (OverflowError where the next
generation was counted, which read the number unchecked), and so did a 4300-digit one (the
next generation had too many digits for json.dumps to write). Such a manifest is now damaged
like any other: skipped when the next generation is counted, refused in one line when its set
is loaded. The step, which messages print as it is, has the same bounds. A manifest at the
bound itself makes the next save refuse, naming it: its generation would be past the bound."""
import json
import re

import pytest

from fastp2p.nn.checkpoint_sets import MANIFEST_FORMAT, MAX_GENERATION, read_manifest
from fastp2p.train.checkpoints import CheckpointFolder, CheckpointWriteError
from helpers.train_helpers import tiny_networks

# "huge": the most digits Python's json reads; the next generation, one digit more, could not be
# written (ValueError in json.dumps), so every save failed after an epoch, naming no file
ODD_GENERATIONS = {"infinity": float("inf"), "true": True, "negative": -1, "float": 2.0,
                   "huge": int("9" * 4300), "past_bound": 2**62}


@pytest.mark.parametrize("generation", ODD_GENERATIONS)
def test_an_odd_generation_neither_breaks_saves_nor_loads(tmp_path, generation):
    folder = CheckpointFolder(tmp_path, "run", advice="resume another")
    folder.prepare()
    odd = folder.file("7", "checkpoint.json")
    odd.write_text(json.dumps({"format": MANIFEST_FORMAT, "step": 0, "files": {},
                               "generation": ODD_GENERATIONS[generation]}))
    netG, netD = tiny_networks()
    folder.save(["latest"], netG, netD, {}, step=1)
    assert folder.manifest("latest")["generation"] == 1
    with pytest.raises(ValueError, match=rf"^{re.escape(str(odd))}: not a fastp2p checkpoint "
                                         r"manifest; resume another$"):
        read_manifest(odd, "resume another")


# a step that messages would print as it is: text, a float, a 4300-digit int, a negative one
ODD_STEPS = {"text": "3", "float": 3.0, "true": True, "negative": -1, "huge": int("9" * 4300),
             "past_bound": 2**62, "missing": None}


@pytest.mark.parametrize("step", ODD_STEPS)
def test_an_odd_step_makes_the_manifest_not_a_checkpoint_manifest(tmp_path, step):
    manifest = {"format": MANIFEST_FORMAT, "generation": 1, "files": {}}
    if step != "missing":
        manifest["step"] = ODD_STEPS[step]
    odd = tmp_path / "7_checkpoint.json"
    odd.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(odd))}: (not a fastp2p|unreadable) "
                                         r"checkpoint manifest.*; resume another$"):
        read_manifest(odd, "resume another")
    manifest["step"] = 2**62 - 1
    odd.write_text(json.dumps(manifest))
    assert read_manifest(odd, "resume another")["step"] == 2**62 - 1


def test_a_manifest_at_the_bound_makes_the_next_save_refuse_naming_it(tmp_path):
    """The next generation, one past the bound, was written without a word, and every set the
    run saved was then "not a fastp2p checkpoint manifest": a run that could not be resumed."""
    folder = CheckpointFolder(tmp_path, "run", advice="resume another")
    folder.prepare()
    at_bound = folder.file("7", "checkpoint.json")
    at_bound.write_text(json.dumps({"format": MANIFEST_FORMAT, "step": 0, "files": {},
                                    "generation": MAX_GENERATION}))
    netG, netD = tiny_networks()
    with pytest.raises(CheckpointWriteError, match=rf"^could not write the checkpoint: "
                                                   rf"{at_bound} records generation "
                                                   rf"{MAX_GENERATION}, the highest"):
        folder.save(["latest"], netG, netD, {}, step=1)
    assert not folder.file("latest", "checkpoint.json").exists()
    assert read_manifest(at_bound, "resume another")["generation"] == MAX_GENERATION


def test_a_manifest_at_the_bound_is_said_before_the_run_trains(tmp_path):
    """The refusal came at the first save, after an epoch of training that was then lost: the
    folder's preparation, before any step, says it."""
    folder = CheckpointFolder(tmp_path, "run", advice="resume another")
    folder.prepare()
    folder.file("7", "checkpoint.json").write_text(json.dumps(
        {"format": MANIFEST_FORMAT, "step": 0, "files": {}, "generation": MAX_GENERATION}))
    with pytest.raises(CheckpointWriteError, match="the next save's manifest could not be read"):
        folder.prepare()
