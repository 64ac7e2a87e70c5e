"""`fastp2p test` builds the options' generator on the meta device once, before it loads: the
check of the file against the model options and the --ngf memory check each built one (a1b7866
added the first beside the second); the memory check now counts the one built for the file."""
from fastp2p.cli import main
from fastp2p.train import networks
from helpers.train_helpers import tiny_test_argv


def test_the_generator_is_built_on_the_meta_device_once(data, trained, tmp_path, monkeypatch):
    built = []
    build = networks.build_generator

    def counted(*args, **kwargs):
        generator = build(*args, **kwargs)
        built.append(next(generator.parameters()).device.type)
        return generator
    monkeypatch.setattr(networks, "build_generator", counted)
    assert main(tiny_test_argv(data, trained, tmp_path / "results", "--num_test", "1")) == 0
    assert built == ["meta", "cpu"], built  # the file's check (and memory's), then the load's
