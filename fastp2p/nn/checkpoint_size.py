"""What a loaded checkpoint expands to, bounded by what its file holds.

A pickle stores each object once and refers to it again by a few bytes, and torch.save stores a
view's storage, not its elements. So a file of kilobytes can describe far more than it holds:
``torch.zeros(1).expand(2**40)`` (2**40 elements over 4 bytes), one 16 MiB tensor under
200,000 names, lists nested 40 deep that each hold their inner list twice (2**40 entries to any
walk that does not remember what it saw), or a list that holds itself (a walk that never ends).
Every later step visits what it is given entry by entry and element by element: the NaN / Inf
check, the key and shape checks, the training state's checks, a copy into a module. Each of
those took hours, or forever, on such a file; here it is refused as it loads, in time linear in
the file's objects.

A network's or optimizer's state is a tree of names and tensors, with at most a little sharing:
torch.optim's param_groups share their defaults' tuples, tied weights appear twice, and
MasterWeightsAdam's weights are views into one flat buffer that do not overlap.
"""
from collections.abc import Mapping

import torch

# Entries of the expanded tree (containers, tensors and other values, each time it is referred
# to): real states have a few hundred to a few thousand.
MAX_ENTRIES = 1_000_000
# The tensor bytes the expanded tree refers to, against the bytes of its distinct storages: a
# tied weight counts twice; the slack covers files of small tensors.
MAX_BYTES_RATIO, BYTES_SLACK = 2, 1 << 20


def refuse_amplified(loaded, name) -> None:
    """Raise ValueError (one line naming ``name``) if ``loaded`` holds a container that holds
    itself, a tensor with more elements than its storage holds (a stride-0 or overlapping
    view), more than MAX_ENTRIES entries once shared containers are counted at each reference,
    or refers to more than MAX_BYTES_RATIO times the tensor bytes it stores."""
    storages = {}
    entries, referenced = _expanded(loaded, name, storages)
    if entries > MAX_ENTRIES:
        raise ValueError(f"{name}: refused, it holds {entries:,} entries counted at each "
                         f"reference (at most {MAX_ENTRIES:,}): containers shared over and over, "
                         "which no state_dict is; save a network's state_dict with torch.save")
    stored = sum(storages.values())
    if referenced > MAX_BYTES_RATIO * stored + BYTES_SLACK:
        raise ValueError(f"{name}: refused, its tensors refer to {referenced:,} bytes over "
                         f"{stored:,} stored (the same tensors under many names); save a "
                         "network's state_dict with torch.save")


def _is_container(value) -> bool:
    return isinstance(value, (Mapping, list, tuple))


def _children(container):
    return container.values() if isinstance(container, Mapping) else container


def _expanded(root, name, storages: dict) -> tuple[int, int]:
    """(entries, tensor bytes) of the tree ``root`` expands to, each shared container counted
    at each reference but walked once (a memo by identity); ``storages``: data pointer ->
    bytes of every distinct storage seen. A loop, not recursion: a hostile file may nest
    containers deeply."""
    if not _is_container(root):
        return _leaf(root, name, storages)
    memo, on_path = {}, set()   # id -> (entries, bytes); the containers being expanded
    stack = [(root, False)]
    while stack:
        value, children_done = stack.pop()
        key = id(value)
        children = _children(value)  # each container is popped twice: expand, then sum
        if children_done:
            on_path.discard(key)
            entries, referenced = 1, 0
            for child in children:
                counts = memo[id(child)] if _is_container(child) else \
                    _leaf(child, name, storages)
                entries, referenced = entries + counts[0], referenced + counts[1]
            memo[key] = (min(entries, MAX_ENTRIES + 1), referenced)  # no need to count on
            continue
        if key in memo:
            continue
        if key in on_path:
            raise ValueError(f"{name}: refused, a container in it holds itself; a state_dict is "
                             "a tree of names and tensors: save it with torch.save")
        on_path.add(key)
        stack.append((value, True))
        stack.extend((child, False) for child in children
                     if _is_container(child) and id(child) not in memo)
    return memo[id(root)]


def _leaf(value, name, storages: dict) -> tuple[int, int]:
    """(1, the bytes of a dense tensor's elements, else 0); refuses a view with more elements
    than its storage holds."""
    if not isinstance(value, torch.Tensor) or value.layout != torch.strided or value.is_meta:
        return 1, 0
    storage = value.untyped_storage()
    elements = value.numel() * value.element_size()
    if elements > storage.nbytes():
        raise ValueError(f"{name}: refused, it holds a tensor of {value.numel():,} elements over "
                         f"{storage.nbytes():,} stored bytes (a stride-0 or overlapping view); a "
                         "network's state_dict holds none: save its state_dict with torch.save")
    storages[storage.data_ptr()] = storage.nbytes()
    return 1, elements
