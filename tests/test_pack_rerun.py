"""Re-running `fastp2p pack` over a pack: the repack hint of a damaged pack is the command that
made it (run as printed, it repairs the same pack), the hint of an unreadable index names what it
cannot know, and a pack (finished or interrupted) of another --load_size is refused unless
--overwrite."""
import json
import random
import re
import shlex

import pytest

from fastp2p.cli import main
from fastp2p.data.errors import DataError
from fastp2p.data.packed import PackedDataset
from fastp2p.data.packed_index import read_index
from fastp2p.data.transforms import Preprocess


def _synthetic_pack(tmp_path, capsys, *extra):
    data, out = tmp_path / "data", tmp_path / "packed"
    assert main(["pack", "--synthetic", "6", str(data), str(out), "--load_size", "20",
                 "--pairs-per-shard", "2", "--no-progress", *extra]) == 0
    capsys.readouterr()
    return data, out


def _shard_bytes(phase_dir):
    return {path.name: path.read_bytes() for path in sorted(phase_dir.glob("shard-*.u8"))}


def test_the_repack_hint_run_as_printed_repairs_the_same_pack(tmp_path, capsys, monkeypatch):
    data, out = _synthetic_pack(tmp_path, capsys, "--skip-bad")
    good = _shard_bytes(out / "train")
    shard = out / "train" / "shard-00001.u8"
    damaged = bytearray(shard.read_bytes())
    damaged[5] ^= 1
    shard.write_bytes(bytes(damaged))
    monkeypatch.chdir(tmp_path / "data")        # the hint's paths are absolute
    dataset = PackedDataset(out / "train", Preprocess(load_size=20, crop_size=16), swap=False)
    with pytest.raises(DataError) as caught:
        for i in range(len(dataset)):
            dataset.load(i, random.Random(i))
    hint = str(caught.value).split("re-run `")[1].split("`")[0]
    assert hint == (f"fastp2p pack {shlex.join([str(data.resolve()), str(out.resolve())])} "
                    "--phase train --load_size 20 --dataset_mode aligned --pairs-per-shard 2 "
                    "--skip-bad")
    words = shlex.split(hint)
    assert words[:2] == ["fastp2p", "pack"]
    dataset.close()     # as the training ends: pack refuses to rewrite a pack being read
    assert main(words[1:] + ["--no-progress"]) == 0
    assert read_index(out / "train")["load_size"] == 20
    assert _shard_bytes(out / "train") == good


def test_the_hint_of_an_unreadable_index_names_what_it_cannot_know(tmp_path, capsys):
    _, out = _synthetic_pack(tmp_path, capsys)
    (out / "train" / "index.json").write_text("{ torn")
    packed = re.escape(shlex.quote(str(out)))    # the temporary folder may hold a space
    with pytest.raises(DataError, match=rf"re-run `fastp2p pack DATAROOT {packed} --phase train "
                                        "--load_size SIZE_IT_WAS_PACKED_AT"):
        read_index(out / "train")


def test_pack_refuses_to_replace_a_pack_of_another_load_size(tmp_path, capsys):
    data, out = _synthetic_pack(tmp_path, capsys)
    before = _shard_bytes(out / "train")
    index_before = (out / "train" / "index.json").read_bytes()
    assert main(["pack", str(data), str(out), "--no-progress"]) == 1    # default 286
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out / "train") in err[0]
    assert "--load_size 20" in err[0] and "--overwrite" in err[0]
    assert _shard_bytes(out / "train") == before
    assert (out / "train" / "index.json").read_bytes() == index_before
    # the same load size resumes (nothing to do); --overwrite replaces
    assert main(["pack", str(data), str(out), "--load_size", "20", "--no-progress"]) == 0
    assert main(["pack", str(data), str(out), "--load_size", "24", "--overwrite",
                 "--no-progress"]) == 0
    assert read_index(out / "train")["load_size"] == 24


def test_an_interrupted_pack_of_another_load_size_is_refused_too(tmp_path, capsys):
    data, out = _synthetic_pack(tmp_path, capsys)
    index = out / "train" / "index.json"
    index.unlink()      # as a run killed while packing: only its state file describes it
    (out / "train" / "pack-state.json").write_text(json.dumps({"load_size": 20, "shards": {}}))
    assert main(["pack", str(data), str(out), "--load_size", "24", "--no-progress"]) == 1
    assert "--load_size 20" in capsys.readouterr().err
