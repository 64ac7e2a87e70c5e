"""Eval-mode BatchNorm folded into the convolution before it, for inference.

A BatchNorm that normalizes with its running statistics is a per-channel affine map,
``y = (x - running_mean) * weight / sqrt(running_var + eps) + bias``, so after a convolution it
is the same convolution with each output channel's weights scaled and its bias shifted. The
fused forward then runs that convolution and the fused op with norm "none": bias + activation
(+ the skip concatenation's write) and no normalization pass.

The folded weights live in a stand-in module (a copy of the convolution's settings whose
parameters are the folded tensors), never registered on the network: ``state_dict``,
``parameters()`` and training are untouched. It is cached per norm module and layout, and
rebuilt when the convolution's settings (stride, padding, padding mode, ...) or any tensor it
is computed from change: the key holds the settings and each tensor's storage address
and version counter (bumped by every in-place change: an optimizer step, ``load_state_dict``,
``bn.running_var.mul_(2)``; not by a write through ``.data``, nor through a tensor a
parameter's ``.data`` was set to, as ``torch.nn.utils.vector_to_parameters`` sets it:
``forget_cached_weights``), with the norm's ``num_batches_tracked`` (torch's training batch norm
updates the running statistics without bumping their counters, but counts the batch: a norm
without the counter is not folded), and the cache keeps the old tensors alive so that a
replaced tensor (``.to()``, ``.half()``, ``.data = ...``) cannot reuse an address it
remembers. Checking a key
costs a few microseconds per layer. A layer with a CPU tensor in shared memory
(``share_memory()``, a network handed to torch.multiprocessing workers) is not cached at all:
another process's write moves neither address nor counter; it computes from its own tensors
every call (``_any_in_shared_memory``, asked where an entry would be built). torch's fused
optimizers (``fused=True``) write the parameters in one kernel that bumps no version counter:
once a cache entry is built, a global
optimizer step post-hook registered here bumps the counters of the cached tensors such a step
wrote, and only theirs (``see_fused_steps_on``). A conversion of
a whole public network (``.to()``, ``.cuda()``, ``.double()``: ``nn.Module._apply``) drops the
entries whose tensors it replaced (``ReleasesReplacedWeights``), so the old tensors and their
copies do not outlive it; an entry is dropped with its key, so no remembered address is left to
be reused.

Folding applies only where no gradient is wanted (``torch.no_grad()``, ``torch.inference_mode()``,
or nothing requiring grad): the folded weights carry no autograd history, and train-mode or
batch-statistics norms (and InstanceNorm) always keep the statistics path.

The same cache serves a convolution's weights in another layout (``conv_in_layout``): CPU
inference computes channels-last whatever the module's layout (fastp2p.nn.fused), with each
weight either packed once for oneDNN (``PACKED``, fastp2p.ops.onednn_packed: oneDNN would
otherwise reorder it on every call; packed per input size, the layout oneDNN picks depending
on it, and kept for up to ``MAX_STAND_INS`` layouts and sizes per module; sizes beyond those
run from one channels-last copy: ``_Kept``), or for a
transposed convolution, whichever of its forms was measured faster
(fastp2p.ops.conv_transpose): packed for oneDNN, as its four phases' packed convolution
(``PHASES``, fastp2p.ops.deconv_phases) or a channels-last copy for the GEMM form; folds are
then built in that layout too. A layout is ``torch.preserve_format`` (the
module's own), another memory format, ``PACKED`` or ``PHASES``.
"""
import collections
import functools
import itertools
import weakref
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from fastp2p.fork_safe import ForkSafeLock
from fastp2p.nn.batch_statistics import uses_running_stats
from fastp2p.nn.tracing import compiler_tracing
from fastp2p.ops.stand_ins import OPAQUE_LAYOUTS, conv_settings, require_input_size, stand_in
from fastp2p.ops.switches import Switch

_FOLDABLE_CONVS = (nn.Conv2d, nn.ConvTranspose2d)
_folding = Switch()


def folding_disabled():
    """``with folding_disabled():`` keeps every norm on the statistics path inside the block,
    in this thread (what the benchmarks compare folding against); folding resumes after it."""
    return _folding.off()


def gradient_wanted(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether this forward of ``module`` on ``x`` records autograd history."""
    if not torch.is_grad_enabled():
        return False
    return x.requires_grad or any(p.requires_grad for p in module.parameters())


def can_fold(conv: nn.Module, norm: nn.Module) -> bool:
    """Whether ``norm`` normalizes with its running statistics right after ``conv`` (the caller
    checks that no gradient is wanted): an eval BatchNorm with its buffers, as torch decides
    (fastp2p.nn.batch_statistics; track_running_stats set to False after construction does not
    stop it), and with its batch counter: without one (``num_batches_tracked`` set to None), a
    training forward updates the running statistics and changes nothing the cache key sees, so
    such a norm keeps the statistics path, which reads them every call."""
    # not under torch.compile / export: the fold's cached stand-in builds Parameters, which
    # they cannot trace (the traced BatchNorm is as fast once compiled)
    buffers = norm._buffers
    return (_folding.on and not compiler_tracing() and type(norm) is nn.BatchNorm2d
            and uses_running_stats(norm)
            and buffers.get("running_mean") is not None
            and buffers.get("running_var") is not None
            and buffers.get("num_batches_tracked") is not None
            and type(conv) in _FOLDABLE_CONVS and conv.groups == 1
            and conv.out_channels == norm.num_features)


@dataclass
class _StandIn:
    key: tuple
    conv: nn.Module        # the stand-in with the folded (or re-laid-out) weight and bias
    held: tuple            # the source tensors, kept so that their addresses stay unique
    used: int = 0          # the module's lookup count (``_Kept.calls``) when last returned


# Stand-ins kept per module (``_cached``): two batch sizes by turns, or a transposed
# convolution's two measured forms, each at two.
MAX_STAND_INS = 4
# A kept input size's packing gives way to a new size's only once it has gone unused for this
# many of the module's lookups, and the new size has missed within as many (``_Kept.admits``).
STALE_AFTER = 16
# The layout that input sizes without a packing of their own run from (``_Kept.plain``).
PLAIN_LAYOUT = torch.channels_last


class _Kept(collections.OrderedDict):
    """One module's stand-ins by slot (``_slot``), least recently used first, and what choosing
    which input sizes keep a packing needs.

    A packing is per input size (oneDNN's layout depends on it), and packing costs about as much
    as the call it serves. So a new size is packed at once only while fewer than
    ``MAX_STAND_INS`` stand-ins are kept; after that it takes the place of the least recently
    used one only when that one has gone unused for ``STALE_AFTER`` lookups and the new size
    recurs (it missed within as many). Until then it runs from ``plain``, one stand-in in
    ``PLAIN_LAYOUT`` shared by all such sizes: inputs of five sizes by turns keep four packings
    and run the fifth plain, inputs of ever new sizes run plain after the first four, instead of
    packing every layer again on every call (1.12-1.25x slower than never packing; benchmarks/
    NOTES.md, "Stop 47"), and a size that replaces the old ones for good is packed after
    ``STALE_AFTER`` calls.

    Threads that share a network (a web server's) go through ``lock``: an OrderedDict read
    while another thread reorders or drops its entries raised KeyError (QA r55: 16 threads
    calling one eval U-Net), and could be left so for later calls. A stand-in is built under the
    lock and stored once whole, and a forked child gets the lock free (fastp2p.fork_safe): a
    child forked while another thread was building one builds its own (it hung on the lock)."""

    def __init__(self):
        super().__init__()
        self.calls = 0                          # lookups of this module's stand-ins
        self.missed: dict = {}                  # slot -> the lookup that last ran it plain
        self.plain: Optional[_StandIn] = None
        # re-entrant: a collection run in this thread may free a module whose entries go
        self.lock = ForkSafeLock(reentrant=True)

    def admits(self, slot) -> bool:
        """Whether a packing for ``slot`` (an opaque slot not kept) is to be built now; under
        ``lock``."""
        if len(self) < MAX_STAND_INS:
            return True
        kept = next(iter(self.values()))    # the least recently used
        stale = self.calls - kept.used > STALE_AFTER
        recurs = self.calls - self.missed.get(slot, -STALE_AFTER - 1) <= STALE_AFTER
        if stale and recurs:
            self.missed.pop(slot, None)
            return True
        self.missed[slot] = self.calls
        if len(self.missed) > 2 * STALE_AFTER:     # at most one a lookup: half are too old
            for old, at in list(self.missed.items()):
                if self.calls - at > STALE_AFTER:
                    self.missed.pop(old, None)
        return False

    def entries(self) -> list:
        """Every stand-in kept, the plain one included (a snapshot)."""
        with self.lock:
            return list(self.values()) + ([self.plain] if self.plain is not None else [])


# Per norm module, per slot (``_slot``: its layout, and the input size it is packed for): the
# stand-in of its fold.
_cache: "weakref.WeakKeyDictionary[nn.Module, _Kept]" = weakref.WeakKeyDictionary()


def _sources(conv, norm):
    """The tensors a fold is computed from (read from the modules' dicts: nn.Module's
    __getattr__ costs about a microsecond per lookup, and this runs per layer per call), and
    the batch counter: torch's training batch norm (nn.BatchNorm2d, F.batch_norm) updates the
    running statistics without bumping their version counters, but counts the batch."""
    weights, params, buffers = conv._parameters, norm._parameters, norm._buffers
    return (weights["weight"], weights.get("bias"), params.get("weight"), params.get("bias"),
            buffers["running_mean"], buffers["running_var"], buffers.get("num_batches_tracked"))


def _watch(tensors) -> Optional[tuple]:
    """(address, version) of every tensor (None for a missing one); None when one is an
    inference tensor (created under inference_mode), which has no version counter to watch. A
    dtype or device change shows as a new address: the cache holds the old tensors, so theirs
    stay taken."""
    try:
        return tuple(None if t is None else (t.data_ptr(), t._version) for t in tensors)
    except RuntimeError:  # "Inference tensors do not track version counter"
        return None


def _any_in_shared_memory(tensors) -> bool:
    """Whether a CPU tensor of ``tensors`` is in shared memory. Asked only when a cache entry
    would be built: moving a tensor there (``share_memory_()``) gives it a new address, so a
    key built before no longer matches and the next call asks again."""
    # CUDA storages always say they are shared (torch's is_shared): only a CPU one can tell.
    return any(t is not None and t.is_cpu and t.untyped_storage().is_shared() for t in tensors)


def _key(conv, norm) -> Optional[tuple]:
    """eps, the convolution's settings and what ``_watch`` sees of every source tensor of the
    fold (None: unwatchable)."""
    watched = _watch(_sources(conv, norm))
    return None if watched is None else (norm.eps, conv_settings(conv)) + watched


def _slot(layout, input_size):
    """Where a module's cache keeps its stand-in for ``layout``: one per layout, and for an
    opaque layout one per input size, since oneDNN's packed layout depends on it
    (fastp2p.ops.onednn_packed)."""
    if layout not in OPAQUE_LAYOUTS:
        return layout
    require_input_size(layout, input_size)
    return layout, tuple(input_size)


@torch.no_grad()
def fold_batchnorm(conv: nn.Module, norm: nn.BatchNorm2d):
    """(weight, bias) of ``conv`` followed by eval-mode ``norm``, in conv's dtype and memory
    format, computed in at least float32 (for inference: no autograd history)."""
    compute = torch.promote_types(conv.weight.dtype, torch.float32)
    var = norm.running_var.to(compute)
    scale = torch.rsqrt(var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.to(compute)
    shift = -norm.running_mean.to(compute) * scale
    if conv.bias is not None:
        shift = shift + conv.bias.to(compute) * scale
    if norm.bias is not None:
        shift = shift + norm.bias.to(compute)
    # Output channels are dim 0 of a Conv2d weight and dim 1 of a ConvTranspose2d's.
    shape = (1, -1, 1, 1) if isinstance(conv, nn.ConvTranspose2d) else (-1, 1, 1, 1)
    weight = torch.empty_like(conv.weight)  # keeps the weight's memory format
    # One pass, rounded once into conv's dtype (a product then a copy read the weight twice: a
    # third of a U-Net-256's first eval call once the forms are remembered, NOTES)
    torch.mul(conv.weight.to(compute), scale.view(shape), out=weight)
    return weight, shift.to(conv.weight.dtype)


def folded_conv(conv: nn.Module, norm: nn.BatchNorm2d, layout=torch.preserve_format,
                input_size=None) -> Optional[nn.Module]:
    """The cached stand-in for ``norm(conv(x))`` (rebuilt if a source tensor changed), its weight
    in ``layout`` (preserve_format: conv's; an opaque layout packed for x's ``input_size``), or
    None when the sources cannot be watched (inference tensors): then the caller keeps the
    norm."""
    key = _key(conv, norm)
    if key is None:
        return None

    def build(layout, input_size):
        weight, bias = fold_batchnorm(conv, norm)
        held = tuple(t.detach() for t in _sources(conv, norm) if t is not None)
        return _StandIn(key, stand_in(conv, weight, bias, layout, input_size), held)

    return _cached(_cache, norm, layout, input_size, key, _sources(conv, norm), build)


def _cached(cache, module: nn.Module, layout, input_size, key: tuple, sources, build
            ) -> Optional[nn.Module]:
    """The stand-in ``cache`` holds for ``module`` in ``layout`` for inputs of ``input_size``,
    built anew by ``build(layout, input_size)`` unless its key is ``key``, computed from the
    tensors ``sources`` (``see_fused_steps_on``); None, building nothing, where a source is in
    shared memory (``_any_in_shared_memory``). One entry per slot (``_slot``): a layer whose
    layout depends on the input (the measured transposed-convolution form), or inputs of two
    sizes by turns, keep each instead of rebuilding by turns; at most ``MAX_STAND_INS`` per
    module, the least recently used dropped first, so that inputs of ever new sizes do not add
    up copies of the weights, and those sizes run from a plain layout instead of packing again
    and again (``_Kept``)."""
    kept = cache.get(module)
    if kept is None:
        # two threads may both make one here: the other's is dropped, with what it built
        kept = cache.setdefault(module, _Kept())
    slot = _slot(layout, input_size)
    with kept.lock:
        kept.calls += 1
        entry = kept.get(slot)
        if entry is None and layout in OPAQUE_LAYOUTS and not kept.admits(slot):
            return _plain(kept, key, sources, build)
        if entry is None or entry.key != key:
            if _any_in_shared_memory(sources):
                return None
            entry = kept[slot] = _built(build, layout, input_size, sources)
        entry.used = kept.calls
        kept.move_to_end(slot)
        while len(kept) > MAX_STAND_INS:
            kept.popitem(last=False)            # the least recently used
        return entry.conv


def _plain(kept: _Kept, key: tuple, sources, build) -> Optional[nn.Module]:
    """The stand-in in ``PLAIN_LAYOUT`` for sizes without a packing of their own: a kept entry
    in that layout where there is one (a transposed convolution's GEMM form), rather than a
    second copy of the same weights; else ``kept.plain``, built anew unless its key is ``key``.
    Under ``kept.lock``."""
    same = kept.get(PLAIN_LAYOUT)
    if same is not None and same.key == key:
        return same.conv
    plain = kept.plain
    if plain is None or plain.key != key:
        if _any_in_shared_memory(sources):
            return None
        plain = kept.plain = _built(build, PLAIN_LAYOUT, None, sources)
    return plain.conv


def _built(build, layout, input_size, sources) -> _StandIn:
    # Normal tensors even inside inference_mode: the cache outlives this call.
    with torch.inference_mode(False), torch.no_grad():
        entry = build(layout, input_size)
    see_fused_steps_on(sources)
    return entry


# Per convolution, per slot: its stand-in with the weight in that layout (conv_in_layout).
_layout_cache: "weakref.WeakKeyDictionary[nn.Module, _Kept]" = weakref.WeakKeyDictionary()


def conv_in_layout(conv: nn.Module, layout, input_size=None) -> nn.Module:
    """``conv``, or where its weight is not in ``layout`` a cached stand-in with a copy of the
    weight in that layout (and the same bias; an opaque layout packed for x's ``input_size``),
    rebuilt when the weight or bias changes. A weight that cannot be watched (an inference
    tensor) is not copied: conv itself. Keyed, as a fold, on conv's settings too."""
    weight = conv._parameters["weight"]
    if layout == torch.preserve_format or (
            layout not in OPAQUE_LAYOUTS and weight.is_contiguous(memory_format=layout)):
        return conv
    bias = conv._parameters.get("bias")
    watched = _watch((weight, bias))
    if watched is None:
        return conv
    key = (conv_settings(conv),) + watched

    def build(layout, input_size):
        held = tuple(t.detach() for t in (weight, bias) if t is not None)
        return _StandIn(key, stand_in(conv, held[0], None if bias is None else held[1], layout,
                                      input_size), held)

    stand_in_conv = _cached(_layout_cache, conv, layout, input_size, key, (weight, bias), build)
    return conv if stand_in_conv is None else stand_in_conv


def folded_for(module: nn.Module) -> list:
    """The cached folds of ``module``'s norm layers (for a CUDA graph that reads them to hold)."""
    return [entry for m in module.modules() if m in _cache for entry in _cache[m].entries()]


def forget_cached_weights(module: nn.Module) -> None:
    """Drop every fold and weight copy cached for ``module`` and its submodules. Needed only
    after changing their weights or norm statistics in a way that bumps no version counter:
    writing through ``.data`` (e.g. ``p.data.mul_(0.999)`` in a hand-written EMA), or changing
    in place a tensor that a parameter's ``.data`` was set to
    (``torch.nn.utils.vector_to_parameters(vec, ...)`` sets each to a view of ``vec``: an
    in-place change of ``vec`` goes unseen, loaded again or not). Every other change is seen by
    the next call."""
    for m in module.modules():
        _cache.pop(m, None)
        _layout_cache.pop(m, None)


# Set (True) on the parameters and buffers some cache here (or a fastp2p.graphed capture) keys
# on: a fused torch optimizer's step on them must bump their version counters
# (``see_fused_steps_on``). An attribute, not a weak reference: torch.utils.swap_tensors, which
# .to() and load_state_dict use under torch.__future__.set_swap_module_params_on_conversion,
# refuses a tensor that has one.
_WATCHED = "_fastp2p_fused_steps_watched"
_step_hook = None


def see_fused_steps_on(tensors) -> None:
    """Have a step of torch's fused optimizers (``torch.optim.Adam/AdamW/SGD(fused=True)``:
    their kernel writes the parameters without bumping the version counters the caches key on)
    bump these tensors' counters. The global step hook is registered on the first call, so a
    process that never fills these caches keeps torch's behaviour exactly."""
    global _step_hook
    for t in tensors:
        if t is not None:
            setattr(t, _WATCHED, True)
    if _step_hook is None:
        _step_hook = register_optimizer_step_post_hook(_see_fused_optimizer_step)


def _kept_from_compile(fn):
    """``fn`` kept out of torch.compile's tracing, with torch._dynamo imported on its first
    call, not here: that import doubled the time of `import fastp2p.nn` (3.5 s of 7).
    torch._disable_dynamo is torch's lazy form of torch.compiler.disable, the one torch.optim
    uses; torch calls it internal-only (2.13, 2026-12), so where a torch lacks it, the same is
    done here: torch.compiler.disable applied on the first call."""
    torch_lazy_disable = getattr(torch, "_disable_dynamo", None)
    if torch_lazy_disable is not None:
        return torch_lazy_disable(fn)
    disabled = None

    @functools.wraps(fn)
    def run(*args, **kwargs):
        nonlocal disabled
        if disabled is None:
            disabled = torch.compiler.disable(fn)
        return disabled(*args, **kwargs)
    return run


# Run as Python inside a compiled step too: traced, it bumped nothing.
@_kept_from_compile
def _see_fused_optimizer_step(optimizer, args, kwargs) -> None:
    """Bump the version counters of the watched parameters a fused optimizer just stepped (other
    optimizers' in-place ops bump them themselves)."""
    for group in optimizer.param_groups:
        if group.get("fused"):
            for p in group["params"]:
                if getattr(p, _WATCHED, False):
                    torch.autograd.graph.increment_version(p)


def forget_replaced_weights(module: nn.Module) -> None:
    """Drop the entries cached for ``module``'s tree that were built from a tensor the tree no
    longer holds (replaced by ``.to()``, ``.double()``, ...): they could never be used again, and
    they would keep the old tensors and their copies alive. Entries whose tensors are all still
    there stay (``.to()`` to where the module already is rebuilds nothing)."""
    live = {t.data_ptr() for t in itertools.chain(module.parameters(), module.buffers())}

    def replaced(entry: _StandIn) -> bool:
        return any(t.data_ptr() not in live for t in entry.held)

    for m in module.modules():
        for cache in (_cache, _layout_cache):
            kept = cache.get(m)
            if kept is None:
                continue
            with kept.lock:
                for slot, entry in list(kept.items()):
                    if replaced(entry):
                        del kept[slot]
                if kept.plain is not None and replaced(kept.plain):
                    kept.plain = None
                if not kept and kept.plain is None:
                    cache.pop(m, None)


class ReleasesReplacedWeights:
    """Mixin for the public networks: after ``nn.Module._apply`` (``.to()``, ``.cuda()``,
    ``.half()``, ...) converted the network, ``forget_replaced_weights``. (A conversion of one of
    its submodules alone is not seen: the cache stays correct, and holds the old tensors until
    their entries are rebuilt or ``forget_cached_weights``.)"""

    def _apply(self, fn, recurse=True):
        converted = super()._apply(fn, recurse)
        forget_replaced_weights(self)
        return converted
