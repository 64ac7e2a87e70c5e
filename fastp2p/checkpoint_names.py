"""The names of a checkpoint set's files: ``CHECKPOINTS/NAME/LABEL_SUFFIX`` for each suffix here.

Apart from the modules that read and write them (``fastp2p.nn.checkpoint_sets``,
``fastp2p.train.checkpoints``), which import torch, so that ``fastp2p train`` can look for a
run's checkpoints before torch loads (seconds)."""

MANIFEST_SUFFIX = "checkpoint.json"
NETWORK_SUFFIXES = {"G": "net_G.pth", "D": "net_D.pth"}
TRAIN_STATE_SUFFIX = "train_state.pth"
# the files of a set that a manifest lists, by the suffix after "LABEL_"
SET_FILE_SUFFIXES = (NETWORK_SUFFIXES["G"], NETWORK_SUFFIXES["D"], TRAIN_STATE_SUFFIX)
