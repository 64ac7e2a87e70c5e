"""``fastp2p.graphed(module)``: a network's whole forward captured as one CUDA graph and replayed.

At batch 1 a U-Net forward is launch-bound: ~50 kernels of a few microseconds each, and the host
time to issue them exceeds the GPU time. A CUDA graph issues them all with one call. This is a
raw ``torch.cuda.CUDAGraph`` (torch.compile's cudagraph trees check more per call than these
kernels take at batch 1).

Per call, on a CUDA input: the input is copied into the static buffer of the capture for its
signature (shape, dtype, memory format, device, autocast state, and every submodule's settings:
its train/eval flag and the other plain values a forward bakes into the captured kernels and
folded weights — BatchNorm / InstanceNorm ``eps``, ``momentum``, ``affine``, Dropout ``p``,
LeakyReLU ``negative_slope``, a convolution's ``stride`` / ``padding``, ...) and that graph is
replayed; the result is a clone of the graph's static output, so a later call never overwrites
it. The most recently used ``max_captures`` captures (8 by default) are kept. A signature seen
for the first time (or again after its capture was dropped) runs the module eagerly (that is
the call's result; it also warms up cuDNN and Triton on a side stream) and then captures it. A
graph is captured against the parameters and buffers as they are (storage address and version
counter of each): when any of them changed since (an optimizer step, ``load_state_dict``,
``.to()``, an eager train-mode forward updating BatchNorm statistics), the next call re-captures.
Eval-mode BatchNorm is folded into the convolutions inside the graph (fastp2p.nn.folding).

Train mode replays what eager train mode does: BatchNorm uses batch statistics and updates its
running statistics in place, and the U-Net's ``dropout_rng`` offset advances by the same count
on every replay, so a sequence of graphed calls draws the same dropout masks as the same
sequence of eager calls. The tensors the forward mutates get their version counters bumped after
each replay, as an eager forward would, so eager folding caches see the change.

Every call runs without autograd (like ``torch.no_grad()``): this is for inference. CPU (and any
non-CUDA) inputs run the module eagerly under ``torch.no_grad()``, same API. So does every call
while the module or any of its submodules has a forward (pre-)hook, or a global one is set (with
a warning, once): a replay runs no Python, so a hook would fire once, at capture, and its effect
on the output would stay in the graph after the hook is removed. Nothing is captured while such
a hook is present. The exception: the pre-hooks of torch's hook-based ``spectral_norm`` and
``weight_norm``, which only compute the weight with tensor operations (a graph captures and
replays them like the rest of the forward).
"""
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from operator import itemgetter

import torch
import torch.nn as nn
import torch.nn.modules.module as _module_hooks
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

from fastp2p.fork_safe import ForkSafeLock
from fastp2p.nn.folding import folded_for, see_fused_steps_on
from fastp2p.nn.fused import forward_hook_dicts


# The types of the values read as a submodule's settings (bool is an int).
_SETTING_TYPES = (int, float, str, type(None))
_ABSENT = object()  # the value of a setting deleted since graphed()
# Forward pre-hooks that do tensor work only (the weight from its reparametrization), which a
# capture records and every replay repeats: they need no eager call.
_CAPTURABLE_HOOKS = (SpectralNorm, WeightNorm)


def _is_setting(name: str, value) -> bool:
    """A public attribute holding a plain value, or a tuple of them (a convolution's stride):
    what a module's forward reads as a setting (a BatchNorm's eps, a Dropout's p), as opposed
    to its tensors, submodules and private state."""
    if name.startswith("_"):
        return False
    if isinstance(value, tuple):
        return all(isinstance(item, _SETTING_TYPES) for item in value)
    return isinstance(value, _SETTING_TYPES)


def _memory_format(x: torch.Tensor):
    channels_last = (x.dim() == 4 and not x.is_contiguous()
                     and x.is_contiguous(memory_format=torch.channels_last))
    return torch.channels_last if channels_last else torch.contiguous_format


class _ModuleTensors:
    """A module's submodules, their parameter and buffer dicts and the names of their settings,
    listed once (walking the module tree costs tens of microseconds, more than a replay at batch
    1). The dicts and the settings' values are read on every call, so a parameter replaced by
    assignment and a changed ``bn.eps`` are seen; submodules and attributes added after
    ``graphed()`` are not."""

    def __init__(self, module: nn.Module):
        self.modules = list(module.modules())
        self.stores = [store for m in self.modules for store in (m._parameters, m._buffers)]
        self.hook_dicts = tuple(d for m in self.modules for d in forward_hook_dicts(m))
        # (attribute dict, setting names, getter of their values) per submodule, ``training``
        # among them: one C-level itemgetter call per submodule keeps the signature cheap.
        self.settings = []
        for m in self.modules:
            names = tuple(name for name, value in vars(m).items() if _is_setting(name, value))
            self.settings.append((vars(m), names, itemgetter(*names)))

    def settings_values(self) -> tuple:
        """The value of every submodule setting, now."""
        try:
            return tuple([get(values) for values, _, get in self.settings])
        except KeyError:  # a setting was deleted (``del bn.momentum``): it reads as absent
            return tuple([tuple(values.get(name, _ABSENT) for name in names)
                          for values, names, _ in self.settings])

    def forward_hooked(self) -> bool:
        """Whether a forward or forward-pre hook other than ``_CAPTURABLE_HOOKS`` is set on the
        module, a submodule or globally: a call must then run eagerly (asking the dicts listed
        once costs about a microsecond)."""
        if _module_hooks._global_forward_hooks or _module_hooks._global_forward_pre_hooks:
            return True
        return any(type(hook) not in _CAPTURABLE_HOOKS  # a subclass may do Python work
                   for hooks in self.hook_dicts if hooks for hook in hooks.values())

    def tensors(self) -> list:
        return [t for store in self.stores for t in store.values() if t is not None]

    def state(self) -> tuple:
        """(address, version) of every parameter and buffer: equal between two calls only if
        nothing was replaced or changed in place in between. Inference tensors (made under
        inference_mode) have no version: their address alone (the graph reads their memory as
        it is; nothing is folded from them, see fastp2p.nn.folding)."""
        try:
            return tuple((t.data_ptr(), t._version) for store in self.stores
                         for t in store.values() if t is not None)
        except RuntimeError:
            return tuple((t.data_ptr(), None if t.is_inference() else t._version)
                         for store in self.stores for t in store.values() if t is not None)

    def signature(self, x: torch.Tensor) -> tuple:
        """What a captured graph is specific to, besides the module's tensors: the input's
        kind, autocast, and the value of every submodule setting."""
        device = x.device.type
        autocast = torch.is_autocast_enabled(device)
        return (tuple(x.shape), x.dtype, x.device, _memory_format(x),
                self.settings_values(),
                autocast, torch.get_autocast_dtype(device) if autocast else None)

    def changed(self, before: tuple, after: tuple) -> list:
        """The tensors whose (address, version) differs between two ``state()`` snapshots."""
        return [t for t, b, a in zip(self.tensors(), before, after) if b != a]


@dataclass
class _Capture:
    graph: "torch.cuda.CUDAGraph"
    static_input: torch.Tensor
    static_output: torch.Tensor
    state: tuple        # _ModuleTensors.state() the graph is valid for
    mutated: list       # tensors the forward changes in place (train mode: BatchNorm, dropout)
    folded: list        # the folded weights the graph reads, kept alive with it


# Captures kept per wrapped module: each holds its own GPU memory (the graph's pool, static
# input and output), and inputs of many sizes (`fastp2p test` translating each image at its own
# size) would otherwise keep one per size for good.
DEFAULT_MAX_CAPTURES = 8


class _RecentCaptures:
    """At most ``limit`` captures by signature; storing one more drops the least recently used
    (its graph and memory freed; that signature is captured again when it comes back)."""

    def __init__(self, limit: int):
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"max_captures must be an int >= 1, got {limit!r}")
        self.limit = limit
        self._by_signature = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_signature)

    def values(self):
        return self._by_signature.values()

    def get(self, key):
        capture = self._by_signature.get(key)
        if capture is not None:
            self._by_signature.move_to_end(key)
        return capture

    def store(self, key, capture) -> None:
        self._by_signature.pop(key, None)
        while len(self._by_signature) >= self.limit:
            self._by_signature.popitem(last=False)
        self._by_signature[key] = capture

    def drop(self, key) -> None:
        self._by_signature.pop(key, None)

    def clear(self) -> None:
        self._by_signature.clear()


class GraphedModule:
    """Callable wrapper returned by :func:`graphed`; ``module`` is the wrapped network (its
    parameters, state_dict and eager forward are unchanged)."""

    def __init__(self, module: nn.Module, max_captures: int = DEFAULT_MAX_CAPTURES):
        if not isinstance(module, nn.Module):
            raise ValueError(f"fastp2p.graphed expects an nn.Module, got {type(module).__name__}")
        self.module = module
        self._tensors = _ModuleTensors(module)
        self._captures = _RecentCaptures(max_captures)
        # One call at a time on CUDA: a capture's static input, replay and output are shared,
        # so two threads' calls (a web server's) would read each other's images.
        self._lock = ForkSafeLock(reentrant=True)
        self._stream = None
        self._warned_of_hooks = False

    def __repr__(self):
        return f"GraphedModule({self.module.__class__.__name__}, {len(self._captures)} captures)"

    def clear(self) -> None:
        """Drop every captured graph (and the GPU memory it holds)."""
        with self._lock:
            self._captures.clear()

    def __call__(self, input: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if not (isinstance(input, torch.Tensor) and input.is_cuda):
                return self.module(input)
            if self._tensors.forward_hooked():
                self._warn_once_of_hooks()
                return self.module(input)
            with self._lock:
                return self._replay_or_capture(input)

    def _replay_or_capture(self, input: torch.Tensor) -> torch.Tensor:
        """The call on a CUDA input, under ``_lock``: a replay of its signature's capture, or
        an eager run and a new capture."""
        key = self._tensors.signature(input)
        capture = self._captures.get(key)
        if capture is None or capture.state != self._tensors.state():
            self._captures.drop(key)  # free the stale graph's memory before capturing
            output, capture = self._capture(input)
            self._captures.store(key, capture)
            return output
        capture.static_input.copy_(input)
        capture.graph.replay()
        if capture.mutated:
            torch.autograd.graph.increment_version(capture.mutated)
            capture.state = self._tensors.state()
        return capture.static_output.clone()

    def _warn_once_of_hooks(self) -> None:
        if not self._warned_of_hooks:
            self._warned_of_hooks = True
            warnings.warn(f"fastp2p.graphed: {self.module.__class__.__name__} (or a submodule, or "
                          "the process) has a forward hook: calls run eagerly while it is set, "
                          "as a graph replay would not call it", stacklevel=3)

    def _capture(self, input: torch.Tensor):
        """Run the module eagerly on a side stream (the result of this call, and the warm-up a
        capture needs), then capture the same forward on that stream."""
        device = input.device
        if self._stream is None:
            self._stream = torch.cuda.Stream(device)
        see_fused_steps_on(self._tensors.tensors())  # the capture keys on their versions
        main = torch.cuda.current_stream(device)
        static_input = torch.empty(input.shape, dtype=input.dtype, device=device,
                                   memory_format=_memory_format(input))
        static_input.copy_(input)
        self._stream.wait_stream(main)
        with torch.cuda.stream(self._stream):
            output = self.module(static_input)
        main.wait_stream(self._stream)
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"fastp2p.graphed supports modules that return one tensor, "
                             f"{self.module.__class__.__name__} returned {type(output).__name__}")
        output.record_stream(main)  # allocated on the side stream, used on the caller's
        before = self._tensors.state()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self._stream, capture_error_mode="thread_local"), \
                _autocast_without_cache(device.type):
            static_output = self.module(static_input)
        after = self._tensors.state()
        capture = _Capture(graph, static_input, static_output, after,
                           self._tensors.changed(before, after), folded_for(self.module))
        return output, capture


def _autocast_without_cache(device_type: str):
    """Autocast as the caller set it, but without its cache of cast weights: a cached cast made
    by the eager warm-up lives outside the graph's memory and is freed when the caller's
    autocast region ends, so the graph must cast (and own) its own copies."""
    enabled = torch.is_autocast_enabled(device_type)
    dtype = torch.get_autocast_dtype(device_type)
    return torch.autocast(device_type, dtype=dtype, enabled=enabled, cache_enabled=False)


def graphed(module: nn.Module, max_captures: int = DEFAULT_MAX_CAPTURES) -> GraphedModule:
    """The module's forward as CUDA-graph replays on CUDA inputs (eager on other devices).

    >>> G = fastp2p.UNet(3, 3, 8, ngf=64).cuda().eval()
    >>> translate = fastp2p.graphed(G)
    >>> fake_B = translate(real_A)       # first call per input shape: eager + capture
    >>> fake_B = translate(next_A)       # later calls: one graph replay (+ input and output copy)

    What a capture is specific to and when it is re-captured: ``help(fastp2p.nn.graph_replay)``.
    At most ``max_captures`` graphs are kept, the most recently used: inputs of more signatures
    than that (images of many sizes) re-capture a signature that comes back after being dropped.
    """
    return GraphedModule(module, max_captures)
