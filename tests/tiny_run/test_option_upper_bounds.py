"""Every integer option of `fastp2p train` and `fastp2p test` has an upper bound, refused while
parsing (exit 2, one line naming the option, nothing written), up to which the value works
downstream. Without them, --n_epochs 10**30 --epoch_count 10**30 failed in the first epoch,
"Overflow when unpacking long long" (the loader's seed + epoch), after the run folder was
written; --batch_size 2**63 failed in itertools.islice, --load_size 100000 ran out of memory,
--ngf 2**25 overflowed torch's byte count, --n_layers_D 2**62 built layers until memory
ran out. --num_threads's bound is this machine's (test_option_machine_limits.py)."""
import pytest

from fastp2p.cli import _subcommand_parser, build_parser, main
from fastp2p.cpu_info import most_loader_workers, usable_cpus
from fastp2p.patchgan_sizes import patch_logits_size
from fastp2p.option_types import MAX_LOAD_SIZE
from fastp2p.train.reference_options import IGNORED
from helpers.train_helpers import tiny_test_argv, train_argv

SEED_MAX = 2 ** 32 - 1   # torch's generators keep 32 bits (fastp2p.option_types.run_seed)
INT64_MAX = 2 ** 63 - 1
MAX_COUNT = 2 ** 62 - 1   # two of them add up to an int64 (fastp2p.option_types)
FILTERS_MAX = 2 ** 25 - 1
PATCH_LAYERS_MAX = 13
WORKERS_MAX = most_loader_workers(usable_cpus())  # loader workers: this machine's cores, or 4
COUNTS = ("--n_epochs", "--n_epochs_decay", "--epoch_count", "--lr_decay_iters",
          "--save_epoch_freq", "--save_latest_freq", "--display_freq", "--log-every",
          "--print_freq", "--batch_size", "--load_iter")
BOUNDS = {
    "train": {**dict.fromkeys(COUNTS, MAX_COUNT), "--seed": SEED_MAX,
              "--num_threads": WORKERS_MAX,
              "--load_size": MAX_LOAD_SIZE, "--crop_size": MAX_LOAD_SIZE,
              "--ngf": FILTERS_MAX, "--ndf": FILTERS_MAX, "--n_layers_D": PATCH_LAYERS_MAX},
    "test": {"--num_test": MAX_COUNT, "--num_threads": WORKERS_MAX, "--load_iter": MAX_COUNT,
             "--seed": SEED_MAX, "--load_size": MAX_LOAD_SIZE, "--crop_size": MAX_LOAD_SIZE,
             "--ngf": FILTERS_MAX, "--ndf": FILTERS_MAX, "--n_layers_D": PATCH_LAYERS_MAX},
}
BOUNDED = [(command, option, bound) for command, bounds in BOUNDS.items()
           for option, bound in bounds.items()]


def _integer_options(command):
    """The options of ``command`` that take an integer (the reference's ignored options, which
    take any int as the reference does, and --input_nc and --output_nc, 1 or 3, excepted)."""
    ignored = {option.flag for option in IGNORED if command in option.phases}
    return {action.option_strings[-1]
            for action in _subcommand_parser(build_parser(), command)._actions
            if getattr(action.type, "__name__", None) == "int" and not action.choices
            and not set(action.option_strings) & ignored}


@pytest.mark.parametrize("command", BOUNDS)
def test_every_integer_option_has_a_bound_here(command):
    assert _integer_options(command) == set(BOUNDS[command])


@pytest.mark.parametrize("command", BOUNDS)
def test_a_seed_past_32_bits_says_what_would_repeat(capsys, command):
    """Not "a smaller one's run": the crop and flip draws use the whole seed. A user resuming
    an older run saved with such a seed is told to leave --seed out (its own seed is kept)."""
    with pytest.raises(SystemExit):
        build_parser().parse_known_args([command, "--seed", str(SEED_MAX + 2)])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.endswith("so its weight init, data order and dropout would repeat a smaller "
                         "seed's (a run saved with a larger seed keeps it at --continue_train "
                         "when --seed is left out)"), line


@pytest.mark.parametrize("command,option,bound", BOUNDED)
@pytest.mark.parametrize("past", [1, 10 ** 30], ids=["one_past", "1e30"])
def test_a_value_past_the_bound_is_refused_while_parsing(capsys, command, option, bound, past):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_known_args([command, option, str(bound + past)])
    assert stop.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {option}: must be <= {bound}, got {bound + past}" in line, line


@pytest.mark.parametrize("command,option,bound", BOUNDED)
def test_the_bound_itself_parses(command, option, bound):
    args, _ = build_parser().parse_known_args([command, option, str(bound)])
    assert vars(args)[option.lstrip("-").replace("-", "_")] == bound


def test_the_bounds_of_sizes_and_layers_are_what_the_networks_take():
    """The largest crop keeps a 1x1 logit map through PATCH_LAYERS_MAX layers, not one more;
    the U-Net's widest weight (16 * ngf x 8 * ngf x 4 x 4 float32s) has an int64 byte count at
    FILTERS_MAX filters, not one more."""
    assert patch_logits_size(MAX_LOAD_SIZE, PATCH_LAYERS_MAX) >= 1
    assert patch_logits_size(MAX_LOAD_SIZE, PATCH_LAYERS_MAX + 1) < 1
    widest_bytes = [16 * ngf * 8 * ngf * 4 * 4 * 4 for ngf in (FILTERS_MAX, FILTERS_MAX + 1)]
    assert widest_bytes[0] <= INT64_MAX < widest_bytes[1]


def test_huge_epochs_are_refused_before_anything_is_written(data, tmp_path, capsys):
    """The reported command: exit 1 in the first epoch, the run folder written."""
    assert main(train_argv(data, tmp_path / "ckpt", "--n_epochs", str(10 ** 30),
                           "--epoch_count", str(10 ** 30))) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument --n_epochs: must be <= {MAX_COUNT}" in line, line
    assert not (tmp_path / "ckpt").exists()


def test_a_run_at_the_bounds_trains_resumes_and_translates(data, tmp_path, capsys):
    """Epochs MAX_COUNT and MAX_COUNT + 1 with the largest seed (the loader's seed + epoch past
    2**62), every frequency, the batch size and the step decay at their bounds; then one more
    epoch resumed; then `fastp2p test` at its bounds."""
    at_bounds = ["--seed", str(SEED_MAX), "--n_epochs", str(MAX_COUNT),
                 "--epoch_count", str(MAX_COUNT), "--lr_policy", "step"]
    at_bounds += [item for option in ("--lr_decay_iters", "--save_epoch_freq",
                                      "--save_latest_freq", "--display_freq", "--batch_size")
                  for item in (option, str(MAX_COUNT))]
    checkpoints = tmp_path / "ckpt"
    assert main(train_argv(data, checkpoints, *at_bounds, "--no_html")) == 0
    assert f"epoch {MAX_COUNT + 1} done" in capsys.readouterr().out
    assert main(train_argv(data, checkpoints, *at_bounds, "--n_epochs_decay", "2",
                           "--continue_train", "--no_html")) == 0
    assert f"epoch {MAX_COUNT + 2} done" in capsys.readouterr().out
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results", "--num_test",
                               str(MAX_COUNT), "--seed", str(SEED_MAX))) == 0


@pytest.mark.parametrize("command,option,bound", BOUNDED)
def test_text_that_is_no_integer_reads_as_argparse_int_says(capsys, command, option, bound):
    with pytest.raises(SystemExit):
        build_parser().parse_known_args([command, option, "x"])
    assert f"argument {option}: invalid int value: 'x'" in capsys.readouterr().err
