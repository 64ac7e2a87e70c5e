"""Shared set-up of the `fastp2p bench` tests: a folder of micro-benchmark modules, and the
options and settings a command line gives."""
import argparse
import uuid


def micro_folder(tmp_path, **sources):
    """A fresh benchmarks folder holding ``bench_<name>.py`` for each source; its package
    name is unique, so no earlier test's import of the same name is found instead."""
    folder = tmp_path / f"micro_{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    for name, source in sources.items():
        (folder / f"bench_{name}.py").write_text(source)
    return folder


def bench_args(*argv):
    """The options of `fastp2p bench ARGV` (paths may be given as Path), parsed by the
    command's own parser, so that every option is there with its true default; with the
    ``given_options`` that fastp2p.cli adds."""
    from fastp2p.bench import command
    from fastp2p.train.saved_options import given_options

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    words = [str(item) for item in argv]
    args = parser.parse_args(words)
    args.given_options = given_options(parser, words)
    return args


def quick_settings(*argv):
    """The SuiteSettings of `fastp2p bench --quick ARGV`."""
    from fastp2p.bench import command

    return command.settings_from_args(bench_args("--quick", *argv))
