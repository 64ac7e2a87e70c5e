"""`fastp2p pack` refuses what it cannot do before it writes anything, in one line:

- `--synthetic 10**30` built a list of every chunk of pairs before writing the first and ran out
  of memory, in a line about --load_size; N is now at most the 10**7 pairs its 7-digit file
  names number, nothing held per pair or chunk before the writing, and a count whose pairs (or
  their pack) cannot fit on the disk is refused up front, from the sizes they take;
- `--seed -1` was a numpy traceback: the seed is 0 .. 2**63-1, as train's;
- a file given as DATAROOT or OUT, and a --phase folder DATAROOT lacks, were found only after
  the synthetic pairs were written, or after the phases before it were packed;
- out of memory said a pair at --load_size 286 takes "0 MiB".
"""
import argparse
import io
import shutil
import tracemalloc
from types import SimpleNamespace

import pytest
from PIL import Image

import fastp2p.data.pack as pack_module
import fastp2p.data.synthetic as synthetic
from fastp2p import cpu_info
from fastp2p.cli import main
from fastp2p.option_types import pack_workers
from helpers.data_helpers import make_aligned, synthetic_pack


def _refused(argv, capsys) -> str:
    """The one error line of ``fastp2p pack ARGV``, which must stop while parsing (exit 2)."""
    capsys.readouterr()
    assert main(["pack", *argv]) == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("count", [str(10 ** 7 + 1), str(10 ** 30)])
def test_a_synthetic_count_past_its_file_names_is_an_option_error(tmp_path, capsys, count,
                                                                  monkeypatch):
    def no_writing(job):    # were it let through: fail at once, not after millions of files
        raise AssertionError(f"pairs {job[2]} .. {job[3] - 1} written")

    monkeypatch.setattr(synthetic, "_write_range", no_writing)
    line = _refused(["--synthetic", count, str(tmp_path / "d"), str(tmp_path / "o"),
                     "--workers", "1"], capsys)
    assert line.endswith(f"--synthetic must be >= 1 and <= 10000000 pairs (pair files are "
                         f"numbered with 7 digits), got {count}")
    assert not (tmp_path / "d").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize("seed, why", [("-1", "must be >= 0, got -1"),
                                       (str(2 ** 63), f"must be <= {2 ** 63 - 1}")])
def test_a_seed_out_of_range_is_an_option_error(tmp_path, capsys, seed, why):
    line = _refused(["--synthetic", "2", "--seed", seed, str(tmp_path / "d")], capsys)
    assert f"argument --seed: {why}" in line
    assert not (tmp_path / "d").exists()


def test_nothing_is_held_per_chunk_of_pairs_before_the_first_is_written(tmp_path, monkeypatch):
    """The largest set (156250 chunks of 64 pairs) starts writing without a list of them."""
    class FirstWrite(Exception):
        pass

    def first_write(job):
        raise FirstWrite(tracemalloc.get_traced_memory()[1])

    monkeypatch.setattr(synthetic, "_write_range", first_write)
    tracemalloc.start()
    try:
        with pytest.raises(FirstWrite) as stop:
            synthetic.write_synthetic(tmp_path / "d", 10 ** 7, workers=1, progress=False)
    finally:
        tracemalloc.stop()
    assert stop.value.args[0] < 1 << 20     # bytes allocated at the peak, up to the first write


def test_the_workers_write_every_chunk_the_range_numbers(tmp_path, capsys):
    """65 pairs: two chunks of the range, written on two workers; the bar counts each pair."""
    folder = synthetic.write_synthetic(tmp_path / "d", 65, workers=2, progress=True)
    assert sorted(path.name for path in folder.iterdir()) == [synthetic.pair_name(index)
                                                              for index in range(65)]
    assert "65/65" in capsys.readouterr().err


def _free_space(monkeypatch, free: int) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=free))


def test_a_synthetic_set_that_cannot_fit_is_refused_before_it_is_written(tmp_path, capsys,
                                                                         monkeypatch):
    # 50 pair files take 400 KiB at the least, and their pack 50 x 32 x 64 x 3 bytes = 300 KiB
    _free_space(monkeypatch, 600 << 10)
    data, out = tmp_path / "d", tmp_path / "o"
    assert main(["pack", "--synthetic", "50", str(data), str(out), "--load_size", "32",
                 "--no-progress", "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert err == (f"fastp2p pack: error: {data / 'train'}: --synthetic 50 needs at least "
                   "700.0 KiB on this disk (400.0 KiB for the pair files, 300.0 KiB for their "
                   "pack at --load_size 32), which has 600.0 KiB free; pass a smaller N, or "
                   "make room\n")
    assert not data.exists() and not out.exists()


def test_a_rerun_needs_no_room_for_the_pairs_and_shards_already_there(tmp_path, monkeypatch):
    data, out = synthetic_pack(tmp_path, pairs=4)
    _free_space(monkeypatch, 0)
    assert main(["pack", "--synthetic", "4", str(data), str(out), "--load_size", "20",
                 "--pairs-per-shard", "2", "--no-progress"]) == 0


def test_no_pair_file_is_smaller_than_the_room_the_check_asks_for_it():
    """MIN_PAIR_FILE_BYTES is a lower bound, so the check refuses only sets that cannot fit."""
    for seed in (0, 1, 2 ** 63 - 1):
        for index in range(12):
            data = io.BytesIO()
            Image.fromarray(synthetic.synthetic_pair(seed, index)).save(
                data, format="JPEG", quality=synthetic.QUALITY)
            assert data.tell() > synthetic.MIN_PAIR_FILE_BYTES


@pytest.mark.parametrize("file_is", ["DATAROOT", "OUT"])
def test_a_file_as_dataroot_or_out_is_refused_before_pairs_are_written(tmp_path, capsys,
                                                                        file_is):
    data, out = tmp_path / "d", tmp_path / "o"
    (data if file_is == "DATAROOT" else out).write_text("not a folder")
    assert main(["pack", "--synthetic", "3", str(data), str(out), "--no-progress"]) == 1
    folder = data if file_is == "DATAROOT" else out
    assert capsys.readouterr().err == (f"fastp2p pack: error: {folder}: {file_is} is a file, "
                                       "not a folder\n")
    assert not (tmp_path / "d").is_dir() and not (tmp_path / "o").is_dir()


@pytest.mark.parametrize("synthetic_pairs", [None, "3"], ids=["folders", "synthetic"])
def test_a_missing_phase_folder_is_refused_before_any_phase_is_packed(tmp_path, capsys,
                                                                      synthetic_pairs):
    data, out = tmp_path / "d", tmp_path / "o"
    if synthetic_pairs is None:
        make_aligned(data)
    argv = ["pack", str(data), str(out), "--load_size", "16", "--no-progress", "--workers", "1",
            "--phase", "train", "nope"]
    if synthetic_pairs is not None:
        argv[1:1] = ["--synthetic", synthetic_pairs]
    assert main(argv) == 1
    assert capsys.readouterr().err == (f"fastp2p pack: error: {data / 'nope'}: folder not "
                                       "found; --phase names folders of DATAROOT to pack\n")
    assert not out.exists()
    assert (data / "train").is_dir() == (synthetic_pairs is None)  # no synthetic pair written


def test_out_of_memory_says_what_a_pair_takes(tmp_path, capsys, monkeypatch):
    make_aligned(tmp_path / "d")

    def out_of_memory(job):
        raise MemoryError()

    monkeypatch.setattr(pack_module, "write_shard", out_of_memory)
    assert main(["pack", str(tmp_path / "d"), str(tmp_path / "o"), "--no-progress",
                 "--workers", "1"]) == 1
    # 286 x 572 x 3 bytes
    assert "a pair at --load_size 286 takes 479.3 KiB," in capsys.readouterr().err


@pytest.mark.parametrize("workers", ["0", "-1", "1000"])
def test_workers_past_the_usable_cores_are_an_option_error(tmp_path, capsys, monkeypatch,
                                                           workers):
    """--workers 1000 started 1000 processes: at most one per usable core now, or 4 (as
    --num_threads) on fewer cores, where `--workers 2` stays accepted on one core."""
    monkeypatch.setattr(cpu_info, "usable_cpus", lambda: 8)
    line = _refused([str(tmp_path / "d"), str(tmp_path / "o"), "--synthetic", "4",
                     "--workers", workers], capsys)
    assert "argument --workers:" in line, line
    assert ("must be <= 8" in line and "8 core(s)" in line) if workers == "1000" else (
        "must be >= 1" in line), line
    assert not (tmp_path / "d").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize("cores,most", [(1, 4), (2, 4), (8, 8)])
def test_the_most_pack_workers_are_as_many_as_loader_workers(monkeypatch, cores, most):
    monkeypatch.setattr(cpu_info, "usable_cpus", lambda: cores)
    assert pack_workers(str(most)) == most
    with pytest.raises(argparse.ArgumentTypeError, match=f"must be <= {most}"):
        pack_workers(str(most + 1))
