"""`fastp2p test` names the point of the run its checkpoint was saved at (the epoch and step
its training state and manifest record) and says when the run is still training (QA r63: the
only line was "translated 4 image(s) with ck10/live/latest_net_G.pth", in a sweep that tested
runs still training, whose latest_* moves on)."""
import json
import shutil
import zipfile

import torch

from fastp2p.cli import main
from fastp2p.train.run_lock import RunFolderLock
from helpers.train_helpers import tiny_test_argv, write_train_state_with_manifest


def _translated_line(capsys) -> str:
    out = capsys.readouterr().out
    return next(line for line in out.splitlines() if line.startswith("translated "))


def _copied_run(trained, tmp_path):
    """A copy of the run "tiny" to change, and its manifest's step."""
    checkpoints = shutil.copytree(trained, tmp_path / "ckpt")
    manifest = json.loads((checkpoints / "tiny" / "latest_checkpoint.json").read_text())
    return checkpoints, manifest["step"]


def test_the_epoch_and_step_are_named(tmp_path, data, trained, capsys):
    step = json.loads((trained / "tiny" / "latest_checkpoint.json").read_text())["step"]
    assert main(tiny_test_argv(data, trained, tmp_path / "results")) == 0
    assert _translated_line(capsys) == (f"translated 4 image(s) with {trained}/tiny/"
                                        f"latest_net_G.pth (after epoch 1, step {step})")


def test_a_save_within_an_epoch_is_named_so(tmp_path, data, trained, capsys):
    checkpoints, step = _copied_run(trained, tmp_path)
    folder = checkpoints / "tiny"
    state = torch.load(folder / "latest_train_state.pth", weights_only=True)
    state["progress"].update(epoch=2, epoch_batches=1, epoch_images=1)
    write_train_state_with_manifest(folder, state)
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results")) == 0
    assert _translated_line(capsys).endswith(f"(in epoch 2, step {step})")


def test_a_state_of_another_save_names_the_step_alone(tmp_path, data, trained, capsys):
    """A state whose generation is not its manifest's (a save's rename pending) says no
    epoch."""
    checkpoints, step = _copied_run(trained, tmp_path)
    folder = checkpoints / "tiny"
    state = torch.load(folder / "latest_train_state.pth", weights_only=True)
    state["generation"] += 1
    write_train_state_with_manifest(folder, state)
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results")) == 0
    assert _translated_line(capsys).endswith(f"latest_net_G.pth (step {step})")


def _damage_storage_type(path):
    """Rewrite the torch zip at ``path`` so that its pickle names OrderedDict where a tensor's
    storage type is expected, as a flipped byte did in a review (torch's load then raised
    AttributeError: "'collections.OrderedDict' ... has no attribute 'dtype'")."""
    records = {}
    with zipfile.ZipFile(path) as original:
        for info in original.infolist():
            records[info.filename] = original.read(info)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as damaged:
        for name, data in records.items():
            if name.endswith("/data.pkl"):
                data = data.replace(b"ctorch\nFloatStorage\n", b"ccollections\nOrderedDict\n")
            damaged.writestr(name, data)


def test_a_damaged_state_names_the_step_alone(tmp_path, data, trained, capsys):
    """The state only names the epoch: whatever a damaged one raises, the test goes on."""
    checkpoints, step = _copied_run(trained, tmp_path)
    _damage_storage_type(checkpoints / "tiny" / "latest_train_state.pth")
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results")) == 0
    assert _translated_line(capsys).endswith(f"latest_net_G.pth (step {step})")


def test_a_save_after_the_load_is_not_named(tmp_path, data, trained, capsys, monkeypatch):
    """A training run that saves again once the generator was loaded (latest_* moves on while
    test translates): the point named is the loaded weights', not the newer save's."""
    from fastp2p.train import translate_command

    checkpoints, step = _copied_run(trained, tmp_path)
    folder = checkpoints / "tiny"
    set_up = translate_command._set_up

    def set_up_then_a_newer_save(*args):
        loaded = set_up(*args)
        state = torch.load(folder / "latest_train_state.pth", weights_only=True)
        state["generation"] += 1
        state["progress"].update(epoch=3, epoch_batches=1, epoch_images=1)
        write_train_state_with_manifest(folder, state)
        manifest_path = folder / "latest_checkpoint.json"
        manifest = json.loads(manifest_path.read_text())
        manifest.update(generation=state["generation"], step=step + 10)
        manifest_path.write_text(json.dumps(manifest))
        return loaded

    monkeypatch.setattr(translate_command, "_set_up", set_up_then_a_newer_save)
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results")) == 0
    assert _translated_line(capsys).endswith(f"latest_net_G.pth (step {step})")


def test_the_reference_files_name_no_point(tmp_path, data, trained, capsys):
    checkpoints, _ = _copied_run(trained, tmp_path)
    for manifest in (checkpoints / "tiny").glob("*_checkpoint.json"):
        manifest.unlink()
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results")) == 0
    assert _translated_line(capsys).endswith("latest_net_G.pth")


def test_a_run_still_training_is_said(tmp_path, data, trained, capsys):
    """The run folder's lock held, as a training holds it while it runs."""
    checkpoints, step = _copied_run(trained, tmp_path)
    lock = RunFolderLock(checkpoints / "tiny")
    assert lock.acquire() is None
    try:
        assert main(tiny_test_argv(data, checkpoints, tmp_path / "results")) == 0
    finally:
        lock.release()
    assert _translated_line(capsys).endswith(
        f"(after epoch 1, step {step}; its run is still training)")
