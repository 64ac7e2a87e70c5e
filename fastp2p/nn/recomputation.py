"""The fused U-Net's dropout under activation checkpointing (``torch.utils.checkpoint``).

Checkpointing runs a forward again in the backward and needs that second run to draw the same
dropout masks as the first: it stashes torch's generators before the first run and restores them
for the second. The fused forward draws its masks from the module's own counter
(``dropout_rng``), which the first run advanced, so a recomputation would draw other masks and
the gradients would silently belong to another network. A training forward with dropout
therefore runs the reference forward (dropout from torch's generator, as in the reference
module) under checkpointing: recognised by the saved-tensor hooks the non-reentrant variant
installs around both runs. The reentrant variant leaves no mark on its first run (it only
turns gradients off); its recomputation, a forward inside a running backward, is refused in one
line rather than answered with wrong gradients.
"""
import torch

# torch.utils.checkpoint's hook classes (the non-reentrant variant): the first run under
# _checkpoint_hook, the recomputation under _recomputation_hook (torch >= 2.1).
_CHECKPOINT_HOOK_CLASSES = ("_checkpoint_hook.", "_recomputation_hook.")


def _under_nonreentrant_checkpoint() -> bool:
    hooks = torch._C._autograd._top_saved_tensors_default_hooks(False)
    if hooks is None:
        return False
    pack = hooks[0]
    return (getattr(pack, "__module__", None) == "torch.utils.checkpoint"
            and getattr(pack, "__qualname__", "").startswith(_CHECKPOINT_HOOK_CLASSES))


def dropout_needs_torch_generator(module_name: str) -> bool:
    """For a training forward that applies dropout: whether it runs under non-reentrant
    checkpointing (then dropout must draw from torch's generator, which checkpointing restores).
    Raises RuntimeError for a forward run inside a backward (reentrant checkpointing's
    recomputation, or a checkpoint under saved-tensor hooks of the caller's own), whose masks
    could not match the first run's."""
    if _under_nonreentrant_checkpoint():
        return True
    if torch._C._current_graph_task_id() != -1:
        raise RuntimeError(
            f"fastp2p.{module_name}: a training forward with dropout ran inside a backward pass "
            "(torch.utils.checkpoint's recomputation with use_reentrant=True, or under "
            "saved-tensor hooks of your own): its dropout masks would differ from the first "
            "run's and the gradients would be wrong. Use torch.utils.checkpoint(..., "
            "use_reentrant=False) directly around the module, or checkpoint the reference "
            "module (fastp2p.reference) loaded with this module's state_dict")
    return False
