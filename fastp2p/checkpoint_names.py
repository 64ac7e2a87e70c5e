"""The names of a checkpoint set's files: ``CHECKPOINTS/NAME/LABEL_SUFFIX`` for each suffix here.

Apart from the modules that read and write them (``fastp2p.nn.checkpoint_sets``,
``fastp2p.train.checkpoints``), which import torch, so that ``fastp2p train`` can look for a
run's checkpoints before torch loads (seconds)."""

MANIFEST_SUFFIX = "checkpoint.json"
NETWORK_SUFFIXES = {"G": "net_G.pth", "D": "net_D.pth"}
TRAIN_STATE_SUFFIX = "train_state.pth"
# the files of a set that a manifest lists, by the suffix after "LABEL_"
SET_FILE_SUFFIXES = (NETWORK_SUFFIXES["G"], NETWORK_SUFFIXES["D"], TRAIN_STATE_SUFFIX)


def loadable_sets(folder, suffix: str) -> str:
    """The sets of ``folder`` (a Path) holding a ``suffix`` file, as the options that load them
    (``--epoch 5, --epoch latest, --load_iter 400``); "" when there is none."""
    labels = [path.name[:-len(suffix) - 1] for path in folder.glob(f"*_{suffix}")]
    options = [("--load_iter", label[5:]) if label.startswith("iter_") else ("--epoch", label)
               for label in labels]
    # epochs in their order, then named ones (latest), then iterations in theirs
    options.sort(key=lambda option: (option[0] == "--load_iter", not option[1].isdigit(),
                                     int(option[1]) if option[1].isdigit() else 0, option[1]))
    return ", ".join(f"{flag} {value}" for flag, value in options)


def nothing_to_resume(folder, label: str) -> str:
    """The error line of --continue_train where ``folder`` (a Path) holds no training state of
    ``label`` to resume, with the sets it holds one of. Here, beside the names, so that both
    the check before torch loads (``fastp2p.train.resuming``) and the loader
    (``fastp2p.train.checkpoints``) say it without importing each other."""
    saved = loadable_sets(folder, TRAIN_STATE_SUFFIX)
    return (f"no checkpoint {folder / f'{label}_{TRAIN_STATE_SUFFIX}'} to resume from; start "
            "without --continue_train" + (f", or resume a saved set ({saved})" if saved else ""))


def holds_networks_only(folder, label: str) -> bool:
    """Whether ``label``'s set in ``folder`` (a Path) is networks without a training state or
    manifest: the reference implementation's checkpoints (its --continue_train loads the
    networks and starts fresh optimizers and schedule at --epoch_count). Here, beside the
    names, so that the check before torch loads and the loader ask the same."""
    return ((folder / f"{label}_{NETWORK_SUFFIXES['G']}").is_file()
            and not (folder / f"{label}_{TRAIN_STATE_SUFFIX}").exists()
            and not (folder / f"{label}_{MANIFEST_SUFFIX}").exists())
