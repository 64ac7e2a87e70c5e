"""--num_threads sets the reader threads of a packed dataset (PackedDeviceLoader), and the
printed thread line says what the run does: it used to print "N loader worker(s)" while the
packed loader started one reader per CPU (up to 8) next to torch's compute threads."""
import pytest

import fastp2p.data.packed_loader as packed_loader
from fastp2p.cli import main
from fastp2p.data.pack import pack_phase
from fastp2p.train.cpu_threads import choose_threads
from helpers.train_helpers import train_argv, write_aligned_dataset


def test_packed_data_turns_the_workers_into_reader_threads():
    cpu = choose_threads("cpu", None, packed=True, cores=2, busy=False, environ={})
    assert (cpu.torch_threads, cpu.loader_workers, cpu.packed_readers) == (2, 0, 1)
    assert "1 packed-data reader thread(s) (auto, at least one)" in cpu.summary
    assert "loader worker" not in cpu.summary
    given = choose_threads("cpu", 3, packed=True, cores=8, busy=False, environ={})
    assert (given.torch_threads, given.loader_workers, given.packed_readers) == (5, 0, 3)
    assert "3 packed-data reader thread(s) (--num_threads)" in given.summary
    zero = choose_threads("cuda", 0, packed=True, cores=8, busy=False, environ={})
    assert zero.packed_readers == 1 and "(--num_threads, at least one)" in zero.summary
    cuda = choose_threads("cuda", None, packed=True, cores=8, busy=False, environ={})
    assert cuda.packed_readers == packed_loader.default_readers()
    folders = choose_threads("cpu", 3, cores=8, busy=False, environ={})
    assert (folders.loader_workers, folders.packed_readers) == (3, 0)


@pytest.fixture(scope="module")
def packed_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("packed_threads")
    data = write_aligned_dataset(root / "data", pairs=2, phases=("train",))
    pack_phase(data, root / "packed", "train", load_size=32, progress=False)
    return root / "packed"


@pytest.mark.parametrize("num_threads,readers", [("2", 2), ("0", 1)])
def test_train_on_packed_data_starts_the_readers_it_prints(packed_data, tmp_path, monkeypatch,
                                                           capsys, num_threads, readers):
    started = []

    class Recording(packed_loader.PackedDeviceLoader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self.readers)
    monkeypatch.setattr(packed_loader, "PackedDeviceLoader", Recording)
    argv = train_argv(packed_data, tmp_path / "ckpt", "--n_epochs_decay", "0", "--no_html")
    argv[argv.index("--num_threads") + 1] = num_threads
    assert main(argv) == 0
    assert started == [readers]
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("threads: "))
    assert f"{readers} packed-data reader thread(s) (--num_threads" in line, line
    assert "loader worker" not in line, line
