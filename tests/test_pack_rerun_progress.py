"""A re-run of `fastp2p pack` reads every kept shard whole for its checksums before it packs
anything (minutes on a large pack): a `check PHASE` bar shows that pass from its start. It used
to run without any output, the pack's bar appearing only after it, or not at all when every
shard was kept."""
import fastp2p.data.pack as pack_module
from helpers.data_helpers import make_aligned


def test_a_rerun_shows_a_bar_while_it_checks_the_kept_shards(tmp_path, capsys, monkeypatch):
    data, out = tmp_path / "data", tmp_path / "out"
    make_aligned(data, count=6)
    pack_module.pack_phase(data, out, "train", load_size=16, pairs_per_shard=2, progress=False)
    shown_before_each_check = []
    checksums = pack_module.file_checksums

    def noting_the_bar(path):
        shown_before_each_check.append(capsys.readouterr().err)
        return checksums(path)

    monkeypatch.setattr(pack_module, "file_checksums", noting_the_bar)
    capsys.readouterr()
    pack_module.pack_phase(data, out, "train", load_size=16, pairs_per_shard=2, progress=True)
    assert len(shown_before_each_check) == 3       # each kept shard checked once
    assert "check train:" in shown_before_each_check[0]
    assert "3/3" in capsys.readouterr().err       # and the bar ends at every shard
