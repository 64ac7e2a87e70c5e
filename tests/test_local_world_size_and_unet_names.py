"""Two inputs a mutation audit found answered wrong: a LOCAL_WORLD_SIZE set by hand to a value
that is no process count (0 divided the cores by zero; "abc" ended in int()'s traceback), and
--netG's size in digits other than ASCII ones ("unet_٣٢" was taken for unet_32, "unet_²" ended in
int()'s message)."""
import pytest

from fastp2p.cli import main
from fastp2p.train.cpu_threads import choose_threads, local_processes
from fastp2p.train.unet_names import unet_levels
from helpers.train_helpers import tiny_test_argv, train_argv, write_aligned_dataset
from helpers.train_helpers import trained  # noqa: F401 (fixture)


@pytest.mark.parametrize("value, processes", [(None, 1), ("", 1), (" ", 1), ("1", 1),
                                              ("3", 3), (" 2 ", 2)])
def test_local_processes_of_torchruns_values(value, processes):
    environ = {} if value is None else {"LOCAL_WORLD_SIZE": value}
    assert local_processes(environ) == processes


@pytest.mark.parametrize("value", ["0", "-2", "abc", "1.5", "٣"])
def test_a_local_world_size_that_is_no_count_is_refused_by_name(value):
    with pytest.raises(ValueError, match=f"LOCAL_WORLD_SIZE='{value}' is not a number of "
                                         "processes"):
        local_processes({"LOCAL_WORLD_SIZE": value})
    with pytest.raises(ValueError, match="LOCAL_WORLD_SIZE="):
        choose_threads("cpu", None, environ={"LOCAL_WORLD_SIZE": value})


def test_train_and_test_refuse_it_in_one_line(tmp_path, monkeypatch, capsys, trained):
    data, checkpoints = trained
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "0")
    argv = train_argv(write_aligned_dataset(tmp_path / "data"), tmp_path / "run")
    assert main(argv) == 2
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results")) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"fastp2p {command}: error: LOCAL_WORLD_SIZE='0' is not a number of "
                   "processes (torchrun sets it to a whole number >= 1): unset it, or set the "
                   "processes of this job on this machine" for command in ("train", "test")]


@pytest.mark.parametrize("name", ["unet_٣٢", "unet_²", "unet_３２"])
def test_netg_sizes_in_other_digits_are_refused(name):
    with pytest.raises(ValueError, match="--netG must be unet_256, unet_128 or unet_N"):
        unet_levels(name)
    assert unet_levels("unet_32") == 5
