"""--continue_train takes every option its command line leaves out from the run's train_opt.txt
(QA: a requeued `--continue_train` of a 2-epoch run with --lr 0.0002 trained to epoch 24 at
the quick profile's lr 1e-3, and rewrote train_opt.txt with those, so a second requeue said
nothing; the networks' options had to be given again, or the load refused them)."""
import csv
import re

import pytest

from fastp2p.cli import build_parser, main
from fastp2p.train import train_command
from fastp2p.train.trainer import Trainer
from fastp2p.train.saved_options import (END_LINE, RESUME_COMPARED, WORKING_DIR,
                                         changed_options, command_parser, given_options,
                                         read_options, take_saved_options, write_options)
from helpers.train_helpers import one_line, parsed_options, train_argv

# The reference's train_opt.txt (BaseOptions.print_options: '{:>25}: {:<30}{}', the default
# after a tab where the value is not it), cut to a few lines of each kind.
REFERENCE_OPTIONS = """\
----------------- Options ---------------
               batch_size: 4                             \t[default: 1]
          checkpoints_dir: ./checkpoints                 
           continue_train: False                         
               display_id: 1                             
                  gpu_ids: 0                             
                  isTrain: True                          \t[default: None]
                       lr: 0.0005                        \t[default: 0.0002]
         max_dataset_size: inf                           
                     name: facades_pix2pix               \t[default: experiment_name]
                     netG: unet_256                      
                  no_flip: True                          \t[default: False]
                     norm: batch                         
                   suffix:                               
----------------- End -------------------
"""


def _resume_argv(checkpoints, *extra):
    """A --continue_train of train_argv's run "tiny" that names nothing but the run."""
    return ["train", "--checkpoints_dir", str(checkpoints), "--name", "tiny", "--continue_train",
            "--num_threads", "0", *extra]


def _saved(folder) -> dict:
    return read_options(folder / "train_opt.txt")


def _lrs(folder) -> list:
    with open(folder / "loss_log.csv", newline="") as handle:
        return [(int(row["epoch"]), float(row["lr"])) for row in csv.DictReader(handle)]


@pytest.fixture
def run_of_lr(data, tmp_path):
    """A 1-epoch run "tiny" trained at --lr 0.0005, with unet_32, ngf 4 and a dataroot that
    no later command line names."""
    checkpoints = tmp_path / "ckpt"
    assert main(train_argv(data, checkpoints, "--n_epochs_decay", "0", "--no_html",
                           "--lr", "0.0005")) == 0
    return checkpoints


def test_a_resume_trains_with_the_runs_options(run_of_lr, capsys):
    """The networks, the data, the schedule: the run's, with one line naming them."""
    capsys.readouterr()
    assert main(_resume_argv(run_of_lr, "--n_epochs", "2")) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    taken = [line for line in out.splitlines() if line.startswith("--continue_train: took")]
    assert len(taken) == 1, out
    for option in ("--netG unet_32", "--ngf 4", "--lr 0.0005", "--dataroot"):
        assert option in taken[0], taken[0]
    assert "--n_epochs " not in taken[0]            # given: this command line's
    folder = run_of_lr / "tiny"
    assert {epoch for epoch, _ in _lrs(folder)} == {1, 2}
    assert {lr for _, lr in _lrs(folder)} == {0.0005}   # constant lr: n_epochs_decay 0 taken
    saved = _saved(folder)
    assert (saved["lr"], saved["n_epochs"], saved["n_epochs_decay"]) == ("0.0005", "2", "0")


def test_a_resume_stopped_before_its_first_save_leaves_the_options_file(run_of_lr, monkeypatch):
    """A --continue_train with changed options that failed (out of memory, killed) before it
    saved had rewritten train_opt.txt already: the next plain --continue_train took its
    --batch_size, which no saved set was trained with."""
    options = run_of_lr / "tiny" / "train_opt.txt"
    before = options.read_bytes()

    def stopped(self, loader, progress_bar=None):
        raise MemoryError("injected: stopped before the first save")
    monkeypatch.setattr(Trainer, "fit", stopped)
    with pytest.raises(MemoryError, match="injected"):
        main(_resume_argv(run_of_lr, "--n_epochs", "3", "--batch_size", "2"))
    assert options.read_bytes() == before


def test_the_record_stays_for_the_next_resume(run_of_lr, capsys):
    """A finished run resumed twice: each time the same options, nothing trained."""
    for _ in range(2):
        assert main(_resume_argv(run_of_lr)) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert ("is done up to epoch 1, and this run would end at epoch 1 (--n_epochs 1 + "
                "--n_epochs_decay 0)") in out, out
    assert _saved(run_of_lr / "tiny")["lr"] == "0.0005"


def test_an_option_given_at_its_default_value_is_given(run_of_lr, capsys):
    """--lr 0.0002 is the default with --dataroot: given, it is this command line's."""
    assert main(_resume_argv(run_of_lr, "--lr", "0.0002", "--n_epochs", "2")) == 0, \
        capsys.readouterr().err
    out = capsys.readouterr().out
    assert "trains on with options the run did not use so far" in out, out
    assert "--lr 0.0005 -> 0.0002" in out, out
    assert _saved(run_of_lr / "tiny")["lr"] == "0.0002"


def test_without_an_options_file_one_line_on_stderr_says_the_defaults_apply(run_of_lr, data,
                                                                            capsys):
    (run_of_lr / "tiny" / "train_opt.txt").unlink()
    argv = train_argv(data, run_of_lr, "--n_epochs_decay", "0", "--no_html", "--continue_train")
    assert main(argv) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "--continue_train:" not in captured.out, captured.out
    lines = [line for line in captured.err.splitlines() if line.startswith("--continue_train:")]
    assert len(lines) == 1 and "train_opt.txt cannot be read (No such file" in lines[0], lines


def test_a_value_the_options_file_lost_is_a_warning_on_stderr(run_of_lr, capsys):
    """The warning went to stdout among the progress lines, joined to the options taken (test
    and train's other warnings say theirs on stderr)."""
    options = run_of_lr / "tiny" / "train_opt.txt"
    options.write_text(options.read_text().replace("beta1: 0.5\n", "beta1: x\n"))
    assert main(_resume_argv(run_of_lr)) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "warning" not in captured.out, captured.out
    # (the run has nothing to train: the default standing in is also said as not applied)
    taken = [line for line in captured.out.splitlines()
             if line.startswith("--continue_train: took ")]
    assert len(taken) == 1, captured.out
    warned = [line for line in captured.err.splitlines() if line.startswith("--continue_train:")]
    assert warned == [f"--continue_train: warning: {options} holds values this fastp2p cannot "
                      "read, so the defaults are used in their place: --beta1 'x' (the default "
                      "0.5 used)"], captured.err


def test_the_resume_comparison_covers_the_schedule_and_the_batch():
    assert {"n_epochs", "n_epochs_decay", "lr_decay_iters", "batch_size"} <= set(RESUME_COMPARED)


def test_the_references_options_file_is_read_and_taken(tmp_path):
    path = tmp_path / "train_opt.txt"
    path.write_text(REFERENCE_OPTIONS)
    assert _saved(tmp_path)["lr"] == "0.0005" and _saved(tmp_path)["suffix"] == ""
    parser = command_parser(train_command.register)
    args = build_parser().parse_args(["train", "--lr", "0.001", "--continue_train"])
    given = given_options(parser, ["--lr", "0.001", "--continue_train"])
    assert given == {"lr", "continue_train"}
    taken = take_saved_options(args, parser, given, path)
    assert (args.batch_size, args.no_flip, args.max_dataset_size) == (4, True, float("inf"))
    assert args.lr == 0.001                           # given
    assert args.name == "experiment_name" and args.gpu_ids is None   # the invocation's own
    assert "display_id" not in vars(args)             # an ignored option stays ungiven
    assert {dest for dest, _, _ in taken.taken} == {"batch_size", "max_dataset_size", "netG",
                                                    "no_flip", "norm"}
    line = taken.summary()
    assert line.startswith(f"took 5 option(s) the command line leaves out from {path}"), line
    assert "--batch_size 4" in line and "--no_flip --netG" in line and "--norm" not in line
    assert changed_options(args, path, ["lr"]) == "--lr 0.0005 -> 0.001"


def test_a_value_this_fastp2p_does_not_read_is_left_and_named(tmp_path):
    path = tmp_path / "train_opt.txt"
    path.write_text("netD: cyclegan\nngf: 8\n")
    parser = command_parser(train_command.register)
    args = build_parser().parse_args(["train", "--continue_train"])
    taken = take_saved_options(args, parser, frozenset(), path)
    assert (args.netD, args.ngf) == ("basic", 8)
    assert ("the defaults are used in their place: --netD 'cyclegan' (the default basic used)"
            in taken.warnings()[0]), taken.warnings()


def test_the_runs_mode_flags_are_not_taken(tmp_path):
    """A run started with --overwrite (or --resume_or_start) records it: a resume that took it
    would wipe the run it resumes, or change how the next one starts."""
    path = tmp_path / "train_opt.txt"
    path.write_text("overwrite: True\nresume_or_start: True\nname: other\nngf: 8\n")
    parser = command_parser(train_command.register)
    args = build_parser().parse_args(["train", "--continue_train"])
    take_saved_options(args, parser, frozenset({"continue_train"}), path)
    assert (args.overwrite, args.resume_or_start, args.name, args.ngf) == (
        False, False, "experiment_name", 8)


def test_a_seed_an_older_fastp2p_took_above_32_bits_is_resumed_as_it_was(tmp_path):
    """--seed 2**40 was valid before --seed was bounded for new runs: it was refused when read,
    and the run resumed with seed 0, changing its crop and flip draws partway through."""
    path = tmp_path / "train_opt.txt"
    older = parsed_options("train", "--continue_train")
    older.seed = 2 ** 40
    write_options(older, path)
    parser = command_parser(train_command.register)
    args = build_parser().parse_args(["train", "--continue_train"])
    taken = take_saved_options(args, parser, frozenset(["continue_train"]), path)
    assert args.seed == 2 ** 40, taken.warnings()
    assert taken.warnings() == [] and "--seed 1099511627776" in taken.summary()
    assert changed_options(args, path, RESUME_COMPARED) == ""


def test_a_reference_run_folder_resumes(data, tmp_path, capsys):
    """The reference's checkpoints and options file: its options taken, its networks loaded."""
    from test_continue_reference_checkpoints import write_reference_checkpoints
    run = tmp_path / "ckpt" / "tiny"
    write_reference_checkpoints(run)   # unet_32, ngf and ndf 4, batch norm, dropout
    options = dict(dataroot=data, netG="unet_32", ngf=4, ndf=4, load_size=32, crop_size=32,
                   n_epochs=1, n_epochs_decay=0, gpu_ids=0, isTrain=True)
    (run / "train_opt.txt").write_text(
        "----------------- Options ---------------\n"
        + "".join(f"{key:>25}: {str(value):<30}\n" for key, value in options.items())
        + "----------------- End -------------------\n")
    assert main(_resume_argv(tmp_path / "ckpt", "--no_html")) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "--netG unet_32" in out and "no training state" in out, out


def test_a_relative_dataroot_is_taken_from_the_folder_the_run_started_in(data, tmp_path,
                                                                        monkeypatch, capsys):
    """A run started in A with --dataroot data, resumed from B: "data" read B/data (folder not
    found, or another dataset of that name)."""
    (tmp_path / "A").mkdir()
    (tmp_path / "B" / "data").mkdir(parents=True)   # a folder of that name, not the dataset
    (tmp_path / "A" / "data").symlink_to(data)
    checkpoints = tmp_path / "ckpt"
    monkeypatch.chdir(tmp_path / "A")
    argv = train_argv("data", checkpoints, "--n_epochs_decay", "0", "--no_html")
    assert main(argv) == 0, capsys.readouterr().err
    monkeypatch.chdir(tmp_path / "B")
    capsys.readouterr()
    assert main(_resume_argv(checkpoints, "--n_epochs", "2")) == 0, capsys.readouterr().err
    assert f"--dataroot {tmp_path / 'A' / 'data'}" in capsys.readouterr().out


def test_a_relative_dataroot_taken_is_no_change_and_written_normalised(data, tmp_path,
                                                                      monkeypatch, capsys):
    """`--dataroot ./data`, resumed without it: the resume said "--dataroot ./data ->
    /.../A/./data" (the path taken, against the file's text) and wrote "/.../A/./data"."""
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "data").symlink_to(data)
    checkpoints = tmp_path / "ckpt"
    monkeypatch.chdir(tmp_path / "A")
    assert main(train_argv("./data", checkpoints, "--n_epochs_decay", "0", "--no_html")) == 0
    capsys.readouterr()
    assert main(_resume_argv(checkpoints, "--n_epochs", "2")) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "did not use so far (its train_opt.txt): --n_epochs 1 -> 2\n" in out, out
    assert _saved(checkpoints / "tiny")["dataroot"] == str(tmp_path / "A" / "data")


def test_the_taken_line_writes_options_as_a_command_line_gives_them(tmp_path):
    """It wrote `--no_html True` and `--skip_bad True`: neither is a command line's."""
    path = tmp_path / "train_opt.txt"
    path.write_text("no_html: True\nskip_bad: True\nlr: 0.0005\n"
                    "----------------- End -------------------\n")
    parser = command_parser(train_command.register)
    taken = take_saved_options(parser.parse_args([]), parser, frozenset(), path)
    assert taken.summary().endswith("not the defaults: --skip-bad --lr 0.0005 --no_html")


@pytest.mark.parametrize("line, refused", [
    ("precision: bf16", "--precision bf16"),        # refused with the device, after torch loads
    ("netG: unet_4096", "unet_4096"),               # refused at once, before torch loads
    ("n_epochs: 0", "cosine"),                      # refused with the other options
])
def test_a_refused_taken_value_follows_the_line_naming_where_it_came_from(run_of_lr, capsys,
                                                                          line, refused):
    """QA: a run trained with --precision bf16 resumed on a CPU was refused for an option the
    command line did not give, without saying it came from the run's train_opt.txt."""
    options = run_of_lr / "tiny" / "train_opt.txt"
    key = line.split(":")[0]
    kept = [old for old in options.read_text().splitlines()
            if old.split(":")[0].strip() != key]
    options.write_text("\n".join(kept + [line]) + "\n")
    extra = ("--lr_policy", "cosine") if key == "n_epochs" else ()
    assert main(_resume_argv(run_of_lr, *extra)) in (1, 2)
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("fastp2p train: error:") and refused in err[-1], err
    assert err[-2].startswith("--continue_train: took") and str(options) in err[-2], err
    assert f"--{key} {line.split(': ')[1]}" in err[-2], err


def test_a_resume_with_nothing_to_train_keeps_the_runs_options(run_of_lr, capsys):
    """A finished run resumed with a smaller --n_epochs trains nothing: its options file keeps
    the run's --n_epochs, which its next plain resume takes (it was overwritten with the
    command line's, so every later resume had nothing to train)."""
    assert main(_resume_argv(run_of_lr, "--n_epochs", "2")) == 0, capsys.readouterr().err
    assert main(_resume_argv(run_of_lr, "--n_epochs", "1")) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "is done up to epoch 2, and this run would end at epoch 1" in out, out
    assert _saved(run_of_lr / "tiny")["n_epochs"] == "2"


def test_a_resume_with_nothing_to_train_names_the_changes_it_did_not_apply(run_of_lr, capsys):
    """QA: a finished run resumed with another --lambda_L1 said "nothing to train, nothing
    changed", exit 0, without the `--lambda_L1 100.0 -> 10.0` a resume that trains says."""
    assert main(_resume_argv(run_of_lr, "--lambda_L1", "10")) == 0, capsys.readouterr().err
    lines = capsys.readouterr().out.splitlines()
    done = [line for line in lines if "nothing to train" in line]
    assert len(done) == 1, lines
    changes = lines[lines.index(done[0]) + 1]
    assert changes == ("--continue_train: not applied, as nothing is trained (give them again "
                       "with a later --n_epochs or --n_epochs_decay): options the run did not "
                       "use so far (its train_opt.txt): --lambda_L1 100.0 -> 10.0"), lines
    assert _saved(run_of_lr / "tiny")["lambda_L1"] == "100.0"


@pytest.mark.parametrize("kept, warned", [
    (None, False),                         # as written
    (-1, False),                           # ending with working_dir, as fastp2p wrote it before
    (20, True),                            # cut short at a line's end (not fsynced: power loss)
    (0, True),                             # empty
])
def test_an_options_file_cut_short_is_said_with_the_options_it_lacks(tmp_path, kept, warned):
    """A cut or empty file was taken as whole: the options past the cut went back to their
    defaults in silence (--save_epoch_freq 1 -> 5), and the file was rewritten so."""
    parser = command_parser(train_command.register)
    path = tmp_path / "train_opt.txt"
    write_options(parsed_options("train", "--batch_size", "3", "--save_epoch_freq", "1"), path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:kept]))
    args = parser.parse_args([])
    line = "; ".join(take_saved_options(args, parser, frozenset(["lr"]), path).warnings())
    assert ("ends before its last line" in line) == warned, line
    assert (args.batch_size == 3) == (kept != 0)   # what the file holds is taken
    if warned:   # named as a command line gives them; never one given, nor one not inherited
        missing = line.split("warning: ")[1]
        assert " --save_epoch_freq " in missing and " --wandb_project_name" in missing, line
        assert ("--batch_size" in missing) == (kept == 0), line
        assert " --lr " not in missing and "--verbose" not in missing, line


def _said(taken) -> str:
    """What train says of ``taken`` (a TakenOptions) in one line: its summary, then its
    warnings (train prints them apart, on stdout and stderr)."""
    return "; ".join((taken.summary(), *taken.warnings()))


def _taken_from(path, parser) -> tuple:
    """(the options file at ``path`` as read_options reads it, the options a command line
    that gives none takes from it, the line saying so)."""
    args = parser.parse_args([])
    line = _said(take_saved_options(args, parser, frozenset(), path))
    return read_options(path), vars(args), line


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["windows", "old-mac"])
def test_an_options_file_with_other_line_ends_is_read_as_written(tmp_path, newline):
    """A train_opt.txt whose line ends an editor or a copy through Windows changed reads as
    the file fastp2p wrote, for a resume and for `fastp2p test`: no value ends in a carriage
    return, and the file is whole (mutation audit: no test read one)."""
    parser = command_parser(train_command.register)
    path = tmp_path / "train_opt.txt"
    write_options(parsed_options("train", "--lr", "0.0005", "--dataroot", "data"), path)
    written = _taken_from(path, parser)
    path.write_bytes(path.read_bytes().replace(b"\n", newline.encode()))
    saved, taken, line = _taken_from(path, parser)
    assert (saved, taken, line) == written
    assert not [value for value in saved.values() if "\r" in value], saved
    assert taken["lr"] == 0.0005 and "warning" not in line, line


@pytest.mark.parametrize("separator", ["\u2028", "\x85", "\x0c"],
                         ids=["line-separator", "next-line", "form-feed"])
def test_a_value_holding_what_splitlines_breaks_at_reads_back_whole(tmp_path, monkeypatch,
                                                                    separator):
    """A --dataroot and a working_dir holding a character that str.splitlines breaks lines at
    (but "\\n" does not) read back as written: the relative --dataroot is the folder's, and
    the file is whole (its --dataroot /data/a\\u2028b read back as /data/a, and a working_dir
    line so broken was taken as cut short)."""
    parser = command_parser(train_command.register)
    path = tmp_path / "train_opt.txt"
    started_in = tmp_path / f"started{separator}in"
    started_in.mkdir()
    monkeypatch.chdir(started_in)
    write_options(parsed_options("train", "--dataroot", f"data{separator}set"), path)
    monkeypatch.chdir(tmp_path)
    saved, taken, line = _taken_from(path, parser)
    assert saved["dataroot"] == f"data{separator}set", saved
    assert saved[WORKING_DIR] == str(started_in), saved
    assert taken["dataroot"] == str(started_in / f"data{separator}set"), line
    assert "warning" not in line, line


@pytest.mark.parametrize("separator", ["\u2028", "\x85", "\x0c"],
                         ids=["line-separator", "next-line", "form-feed"])
def test_a_value_ending_in_what_str_strip_strips_reads_back_whole(tmp_path, separator):
    """Only the spaces the reference pads a value with are taken off its end: a --dataroot
    /data/a\u2028 read back as /data/a (str.rstrip strips those characters too)."""
    path = tmp_path / "train_opt.txt"
    write_options(parsed_options("train", "--dataroot", f"/data/a{separator}"), path)
    assert read_options(path)["dataroot"] == f"/data/a{separator}"


# train's options for a run refused before it trains (no epoch to train), where nothing else
# refuses it first
NO_EPOCH = ("--n_epochs", "0", "--n_epochs_decay", "0")


@pytest.mark.parametrize("option, value", [
    ("--dataroot", "data "), ("--name", "x\nlr: 5"), ("--name", "x\rlr: 5"),
    ("--phase", "train\r"), ("--wandb_project_name", "p\t[default: q]")],
    ids=["dataroot-space", "name-newline", "name-return", "phase-return", "default-note"])
def test_a_value_the_options_file_reads_back_otherwise_is_refused_before_the_run(
        data, tmp_path, capsys, monkeypatch, option, value):
    """A value that train_opt.txt would read back as another one is refused in one line naming
    the option, before the run writes anything: a --dataroot "data " resumed on ./data in
    silence, and a line break in --name wrote a line of its own (``lr: 5``, taken by a resume)."""
    path = tmp_path / "train_opt.txt"
    write_options(parsed_options("train", option, value), path)
    assert read_options(path).get(option[2:]) != value   # why: it reads back otherwise
    if "lr: 5" in value:
        assert read_options(path)["lr"] == "5"   # a line of its own, which a resume takes
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data ").symlink_to(data)
    assert main(train_argv(data, tmp_path / "ckpt", option, value, *NO_EPOCH)) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"fastp2p train: error: {option} {value!r} "), line
    assert "train_opt.txt cannot record it" in line, line
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("value", ["tiny ", "tiny\t[default: x]"],
                         ids=["trailing-space", "default-note"])
def test_a_run_named_what_the_options_file_reads_back_otherwise_trains_and_resumes(
        data, tmp_path, capsys, value):
    """--continue_train never takes --name from the file, so a name it would read back as
    another is no harm: "--name 'x '" was refused ("--continue_train would read another
    value", untrue of --name), and a run folder so named could no longer be resumed."""
    checkpoints = tmp_path / "ckpt"
    assert main(train_argv(data, checkpoints, "--n_epochs_decay", "0", "--no_html",
                           "--name", value)) == 0, capsys.readouterr().err
    assert main(_resume_argv(checkpoints, "--name", value, "--n_epochs", "2")) == 0, \
        capsys.readouterr().err
    assert {epoch for epoch, _ in _lrs(checkpoints / value)} == {1, 2}


@pytest.mark.parametrize("value", [" run", "a run", "run\t", "run\t[default", "run\u2028"],
                         ids=["leading-space", "inner-space", "tab", "half-note", "separator"])
def test_a_value_the_options_file_reads_back_as_written_is_taken(data, tmp_path, capsys,
                                                                 monkeypatch, value):
    """Spaces before or inside a value, and a tab or a line separator after it, read back as
    written: neither refused nor changed. Train is given it as --dataroot too, an option a
    resume reads back (mutation audit: a --dataroot ending in a tab, or begun with a space,
    could be refused with no test failing)."""
    path = tmp_path / "train_opt.txt"
    write_options(parsed_options("train", "--name", value, "--dataroot", value), path)
    parser = command_parser(train_command.register)
    saved, taken, line = _taken_from(path, parser)
    assert saved["name"] == saved["dataroot"] == value, saved
    assert taken["dataroot"] == str(tmp_path.cwd() / value), line
    monkeypatch.chdir(tmp_path)
    (tmp_path / value).symlink_to(data)
    assert main(train_argv(data, tmp_path / "ckpt", "--name", value, "--dataroot", value,
                           *NO_EPOCH)) == 2
    assert "no epoch to train" in one_line(capsys.readouterr().err)


def test_a_resume_from_an_options_file_with_windows_line_ends_trains_with_the_runs(run_of_lr,
                                                                                    capsys):
    """Nothing said changed since the run (each value compared with its text) nor lost."""
    options = run_of_lr / "tiny" / "train_opt.txt"
    options.write_bytes(options.read_bytes().replace(b"\n", b"\r\n"))
    capsys.readouterr()
    assert main(_resume_argv(run_of_lr, "--n_epochs", "2")) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "warning" not in captured.err, captured.err
    changed = [line for line in captured.out.splitlines() if "did not use so far" in line]
    assert [line.split(": ")[-1] for line in changed] == ["--n_epochs 1 -> 2"], captured.out
    assert {lr for _, lr in _lrs(run_of_lr / "tiny")} == {0.0005}


@pytest.mark.parametrize("earliest", [False, True], ids=["ending-at-working_dir", "earliest"])
def test_an_older_options_file_ending_at_its_working_dir_line_is_whole(tmp_path, monkeypatch,
                                                                       earliest):
    """fastp2p wrote working_dir last before the End line: such a file is whole, so an option
    added since, which it lacks, is the command line's default without a warning, and its
    relative --dataroot is read from the folder it records. Its earliest builds' files end
    with neither line and are taken as cut short (mutation audit: the older file held every
    option, which a file taken as cut short also reads without a warning)."""
    parser = command_parser(train_command.register)
    path = tmp_path / "train_opt.txt"
    (tmp_path / "started_in").mkdir()
    monkeypatch.chdir(tmp_path / "started_in")
    write_options(parsed_options("train", "--dataroot", "data", "--lr_step_at", "epoch_start"),
                  path)
    monkeypatch.chdir(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    assert lines[-2].startswith(f"{WORKING_DIR}: ") and lines[-1].strip() == END_LINE
    kept = [line for line in lines[:-1 - earliest] if not line.startswith("lr_step_at: ")]
    path.write_text("".join(kept))
    args = parser.parse_args([])
    line = _said(take_saved_options(args, parser, frozenset(), path))
    assert args.lr_step_at == parser.get_default("lr_step_at"), line
    assert ("ends before its last line" in line) == earliest, line
    assert re.search(r"not the run's: [^;]*--lr_step_at\b", line) if earliest else True, line
    assert args.dataroot == ("data" if earliest else str(tmp_path / "started_in" / "data"))


def test_a_file_cut_in_its_working_dir_line_is_said_cut_short(tmp_path, monkeypatch):
    """Its relative --dataroot is read from the current folder, as the warning says, and why:
    the file is cut short (it said the file was an older fastp2p's, or the reference's)."""
    parser = command_parser(train_command.register)
    path = tmp_path / "train_opt.txt"
    write_options(parsed_options("train", "--dataroot", "data"), path)
    text = path.read_text()
    path.write_text(text[:text.index(f"\n{WORKING_DIR}: ") + len(f"\n{WORKING_DIR}: /t")])
    args = parser.parse_args([])
    line = _said(take_saved_options(args, parser, frozenset(), path))
    warned = re.search(r"warning: [^;]* does not record the folder the run was started in "
                       r"\(([^)]*)\)", line)
    assert warned and warned[1].startswith("it ends before its last line: cut short"), line
    assert args.dataroot == "data", line


@pytest.mark.parametrize("after_end", [False, True], ids=["cut-in-its-lr-line", "after-end"])
def test_a_last_line_without_its_newline_is_named_not_read(tmp_path, after_end):
    """A file cut in its lr line (`lr: 0.00` of `lr: 0.0005`) resumed at --lr 0.0, listed
    under "not the defaults" (QA); a half line typed after the end line was read too."""
    parser = command_parser(train_command.register)
    path = tmp_path / "train_opt.txt"
    write_options(parsed_options("train", "--lr", "0.0005"), path)
    lines = path.read_text().splitlines(keepends=True)
    at = next(index for index, line in enumerate(lines) if line.startswith("lr: "))
    before = lines[:at] + (lines[at + 1:] if after_end else [])
    path.write_text("".join(before) + "lr: 0.00")
    args = parser.parse_args([])
    line = "; ".join(take_saved_options(args, parser, frozenset(), path).warnings())
    assert args.lr == parser.get_default("lr"), line
    assert re.search(r"not the run's: [^;]*--lr\b", line), line
