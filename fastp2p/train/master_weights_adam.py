"""Adam with float32 master weights that writes the network's bf16 weights itself (issue 17).

Design. Under bf16 autocast a network with float32 parameters pays, every step, one cast
kernel per convolution weight use (autocast's cache is off inside a CUDA graph) and one per
weight gradient back to float32 - 62 small kernels of a batch-1 step on the H200. Here the
optimizer takes over the module's parameters once, at construction:

- Every parameter's float32 value moves into one flat master buffer per network; the Adam
  moments are two more flat buffers of the same length, so one kernel launch (the op
  fastp2p.ops.adam, whose Triton launcher is kernels/adam.py) updates the whole network, with
  no pointer table.
- Parameters of convolutions and linear layers (the ones autocast would cast) become views into
  a flat buffer of ``copy_dtype`` (bf16 on the GPU) that the kernel writes from the masters in
  the same pass: the module computes with them directly, so no weight cast is left in the step,
  and their gradients come out of the backward in bf16. Every other parameter (norm scales and
  shifts, which the norm kernels read in float32) is a view into the master buffer itself.
- Each parameter's ``.grad`` is a permanent view into one flat gradient buffer (the bf16 region
  first, then the float32 one): autograd accumulates into it in place, ``zero_grad`` is one
  memset, and the buffers' addresses never change, as a CUDA graph needs.
- The module's ``state_dict`` still holds float32 tensors under the reference's keys: a hook on
  each module that owns a copied parameter puts the master in place of the copy, and a load
  pre-hook writes loaded values into the masters (the normal load then rounds them into the
  copy, exactly as the kernel does). Checkpoints of the network are therefore the same as
  without this optimizer and load into the reference modules.
- Buckets (``buckets=N``, for ``Pix2PixEngine(optimizer_overlap=True)``,
  fastp2p.train.optimizer_overlap): the parameters, taken in the reverse of their registration
  order (the module's forward order in pix2pix's networks, so the order in which the backward
  finishes them), are split into at most N groups of about equal size. Each group owns one
  contiguous slice of the master and moment buffers (its copied parameters, then its own ones,
  as the whole buffer is laid out with one bucket) and one slice of the copy and of each
  gradient region, so ``step_bucket(k)`` is one launch of the same kernel over that slice: Adam
  is elementwise, so the buckets' launches together give the one launch's results bit for bit.
  Each slice starts ``BUCKET_ALIGN``-element aligned (the gaps are zeros that Adam leaves at
  zero), and each bucket counts its own steps (one ticket per bucket, see kernels/adam.py).
  With one bucket the layout is exactly the unbucketed one, and ``state_dict`` always lists
  the moments in that order, so a checkpoint loads whatever the bucket count (with more
  than one, ``master[:num_copied]`` is no longer the copied region: use ``state``).

Semantics: torch.optim.Adam's update (L2 weight decay, bias correction) on the float32
masters; the model's copy is ``master.to(copy_dtype)``, rounded to nearest even. One
difference: a parameter whose gradient was never produced is updated with a zero gradient
(momentum and weight decay keep moving it), where torch.optim.Adam skips a parameter whose
``.grad`` is None. That includes a parameter with ``requires_grad=False``: it is taken over
all the same, because it may be unfrozen later (the engine freezes D for every G step and
unfreezes it for the D step) and must then train as torch.optim.Adam trains it. pix2pix's
networks use every parameter in every step, so the difference never arises there.

After construction the module must not be moved or cast (``.to()``, ``.half()``, loading with
``assign=True``), and its grads must not be set to None (``module.zero_grad()``): all of these
replace the views; ``step`` raises a clear error if it finds a replaced gradient.
"""
import torch
import torch.nn as nn

from fastp2p.ops.adam import HYPER_FIELDS, adam_programs, adam_step

COPIED_MODULES = (nn.modules.conv._ConvNd, nn.Linear)
BUCKET_ALIGN = 8  # elements: every bucket's slices start 16-byte aligned (bf16), 32 (float32)


def _dense_strides(t: torch.Tensor) -> bool:
    """True when t fills exactly t.numel() consecutive elements (any dimension order)."""
    return t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(
        memory_format=torch.channels_last))


def _view_into(flat: torch.Tensor, offset: int, like: torch.Tensor) -> torch.Tensor:
    """flat[offset:offset + like.numel()] seen with like's shape and strides."""
    return flat.as_strided(like.shape, like.stride(), flat.storage_offset() + offset)


def _is_dense_layout(shape: torch.Size, stride) -> bool:
    """Whether ``stride`` (a saved list) lays out a tensor of ``shape`` as ``_dense_strides``
    accepts a parameter's."""
    if not (isinstance(stride, (list, tuple)) and len(stride) == len(shape) and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in stride)):
        return False
    return _dense_strides(torch.empty_strided(shape, stride, device="meta"))


def _aligned(offset: int) -> int:
    return -(-offset // BUCKET_ALIGN) * BUCKET_ALIGN


def bucket_members(numels: list, count: int) -> list:
    """Parameter indices (into ``numels``, registration order) of at most ``count`` buckets of
    about equal size, each sorted. Bucket 0 takes the last-registered parameters: walking them
    in reverse, a parameter goes to the bucket that the elements before it have reached, so a
    large one stays in the bucket it starts in and empty buckets are dropped."""
    total = sum(numels)
    members = [[] for _ in range(count)]
    seen = 0
    for index in reversed(range(len(numels))):
        members[min(count - 1, seen * count // total)].append(index)
        seen += numels[index]
    return [sorted(bucket) for bucket in members if bucket]


class MasterWeightsAdam:
    """``torch.optim.Adam`` for a whole module, keeping float32 masters and writing the
    module's ``copy_dtype`` weights (see the module docstring for the design).

    ``lr`` is a float or a float32 tensor on the module's device (the engine passes the tensor
    it shares between optimizers; writing into it changes the lr without re-capturing a graph).
    ``buckets``: how many slices ``step_bucket`` can update one at a time (at most; see the
    module docstring); ``step`` updates them all.
    """

    def __init__(self, module: nn.Module, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                 weight_decay=0.0, copy_dtype=torch.bfloat16, buckets=1):
        if copy_dtype not in (torch.bfloat16, torch.float32):
            raise ValueError(f"copy_dtype must be torch.bfloat16 or torch.float32, got "
                             f"{copy_dtype}")
        beta1, beta2 = (float(b) for b in betas)
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas!r}")
        if not eps >= 0 or not weight_decay >= 0:
            raise ValueError(f"eps and weight_decay must be >= 0, got {eps!r}, {weight_decay!r}")
        if not isinstance(buckets, int) or buckets < 1:
            raise ValueError(f"buckets must be an int >= 1, got {buckets!r}")
        named = list(module.named_parameters())
        if not named:
            raise ValueError("the module has no parameters")
        for name, param in named:
            if param.dtype != torch.float32 or not _dense_strides(param):
                raise ValueError(f"parameter {name} must be a dense float32 tensor (contiguous or "
                                 f"channels-last), got {param.dtype} with strides {param.stride()}")
        self.device = named[0][1].device
        copied_ids = {id(p) for m in module.modules() if isinstance(m, COPIED_MODULES)
                      for p in m.parameters(recurse=False)}
        copied = [id(p) in copied_ids for _, p in named]
        numels = [p.numel() for _, p in named]

        # Where each parameter goes: bucket by bucket, its copied parameters then its own ones,
        # in registration order; (index, master offset, offset in its region) in layout order.
        placements, self._bucket_slices, bucket_sizes = [], [], []
        ends = [0, 0, 0]  # master, copied region, own region
        for members in bucket_members(numels, buckets):
            bucket_sizes.append(len(members))
            starts = [_aligned(end) for end in ends]
            ends = list(starts)
            for index in sorted(members, key=lambda i: not copied[i]):
                region = 1 if copied[index] else 2
                placements.append((index, ends[0], ends[region]))
                ends[0] += numels[index]
                ends[region] += numels[index]
            self._bucket_slices.append(tuple(slice(s, e) for s, e in zip(starts, ends)))
        numel, self.num_copied, num_own = ends
        self._names = [named[i][0] for i, _, _ in placements]
        self._numels = [numels[i] for i, _, _ in placements]
        self._offsets = [offset for _, offset, _ in placements]
        # The unbucketed layout (copied first, registration order): the order of state_dict.
        self._saved_order = sorted(range(len(placements)), key=lambda k: (
            not copied[placements[k][0]], placements[k][0]))
        self.copy_dtype = copy_dtype

        options = {"dtype": torch.float32, "device": self.device}
        self.master = torch.zeros(numel, **options)  # zeros: the gaps between buckets
        self.exp_avg = torch.zeros(numel, **options)
        self.exp_avg_sq = torch.zeros(numel, **options)
        # One allocation with room for one element, so an empty region still has an address.
        self.copy = torch.zeros(self.num_copied + 1, dtype=copy_dtype,
                                device=self.device)[:self.num_copied]
        copied_bytes = self.num_copied * self.copy.element_size()
        own_start = -(-copied_bytes // 16) * 16  # float32 region 16-byte aligned
        self._grad_bytes = torch.zeros(own_start + 4 * num_own + 4, dtype=torch.uint8,
                                       device=self.device)
        self.grad_copied = self._grad_bytes[:copied_bytes].view(copy_dtype)
        self.grad_own = self._grad_bytes[own_start:-4].view(torch.float32)

        self._params, self._grads = [], []
        # torch.optim's per-parameter view of the state ({param: {name: tensor}}), for code
        # that inspects optimizer states (e.g. for NaN before a checkpoint): views, no copies.
        self.state = {}
        owners = {id(p): (m, local) for m in module.modules()
                  for local, p in m.named_parameters(recurse=False)}
        with torch.no_grad():
            for index, offset, region_offset in placements:
                param = named[index][1]
                master = _view_into(self.master, offset, param)
                master.copy_(param)
                if copied[index]:
                    model = _view_into(self.copy, region_offset, param)
                    model.copy_(master)
                    grad = _view_into(self.grad_copied, region_offset, param)
                    self._keep_state_dict_float32(*owners[id(param)], master)
                else:
                    model = master
                    grad = _view_into(self.grad_own, region_offset, param)
                param.data = model
                param.grad = grad
                self.state[param] = {
                    "exp_avg": _view_into(self.exp_avg, offset, param),
                    "exp_avg_sq": _view_into(self.exp_avg_sq, offset, param),
                    **({"master": master} if model is not master else {})}
                self._params.append(param)
                self._grads.append(grad)
        firsts = [sum(bucket_sizes[:k]) for k in range(len(bucket_sizes) + 1)]
        self.bucket_params = [self._params[a:b] for a, b in zip(firsts, firsts[1:])]

        if not isinstance(lr, torch.Tensor):
            lr = torch.tensor(float(lr), **options)
        self.param_groups = [{"lr": lr, "betas": (beta1, beta2), "eps": float(eps),
                              "weight_decay": float(weight_decay)}]
        self._hyper = torch.empty(len(HYPER_FIELDS), dtype=torch.float64, device=self.device)
        self._write_hyper()
        self._num_programs = [adam_programs(s.stop - s.start, self.device)
                              for s, _, _ in self._bucket_slices]
        # Each bucket's step counter: num_programs[k] * its launches so far (kernels/adam.py).
        self._tickets = torch.zeros(len(self._bucket_slices), dtype=torch.int64,
                                    device=self.device)

    # ---- the torch.optim.Optimizer surface the engine uses --------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero every gradient with one memset. The gradients stay (views into one buffer that
        the kernel reads), whatever ``set_to_none`` says."""
        self._grad_bytes.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step of every parameter and the copy's refresh, one launch per bucket (one
        in all without buckets); no sync. The parameters' version counters are bumped, as
        torch.optim's in-place updates bump them: the kernel writes without them, and
        fastp2p's inference caches (fastp2p.nn.folding) key on them."""
        self.check_step_inputs()
        for index in range(len(self._bucket_slices)):
            self.step_bucket(index)
        torch.autograd.graph.increment_version(self._params)

    def check_step_inputs(self) -> None:
        """A clear ValueError where the kernel would read the wrong lr or gradients."""
        lr = self.param_groups[0]["lr"]
        if not isinstance(lr, torch.Tensor) or lr.dtype != torch.float32 or lr.numel() != 1:
            raise ValueError("MasterWeightsAdam reads the lr from a one-element float32 tensor "
                             f"(param_groups[0]['lr']), got {lr!r}; write into that tensor instead")
        for param, grad in zip(self._params, self._grads):
            if param.grad is not grad:
                raise ValueError("a parameter's .grad was replaced or set to None (e.g. by "
                                 "module.zero_grad()); with MasterWeightsAdam call its zero_grad()")

    @torch.no_grad()
    def step_bucket(self, index: int) -> None:
        """One Adam step of bucket ``index``'s parameters (``bucket_params[index]``) and their
        copies, in one launch on the current stream; no checks (``check_step_inputs``), no
        sync, no version counter bumped (its caller, the engine's optimizer overlap, marks
        everything the training step wrote once the step is done)."""
        whole, copied, own = self._bucket_slices[index]
        adam_step(self.master[whole], self.exp_avg[whole], self.exp_avg_sq[whole],
                  self.grad_copied[copied], self.grad_own[own], self.copy[copied],
                  self.param_groups[0]["lr"], self._tickets[index:index + 1], self._hyper,
                  self._num_programs[index])

    @property
    def steps(self) -> int:
        """Steps taken (syncs with the device)."""
        return int(self._tickets[0].item()) // self._num_programs[0]

    def state_dict(self) -> dict:
        """The moments, step count and hyper-parameters as plain tensors and containers; the
        moments packed in the unbucketed layout's order, whatever the bucket count.

        The master weights are not in it: they are the module's state_dict (float32).
        """
        group = self.param_groups[0]
        lr = group["lr"]
        order = self._saved_order
        return {
            "state": {"step": self.steps, "exp_avg": self._packed(self.exp_avg),
                      "exp_avg_sq": self._packed(self.exp_avg_sq)},
            "param_groups": [{"lr": float(lr) if isinstance(lr, torch.Tensor) else lr,
                              "betas": list(group["betas"]), "eps": group["eps"],
                              "weight_decay": group["weight_decay"],
                              "params": [self._names[k] for k in order],
                              "numels": [self._numels[k] for k in order],
                              # each parameter's moments are in its memory order
                              "strides": [list(self._params[k].stride()) for k in order]}],
        }

    def load_state_dict(self, state: dict) -> None:
        try:
            saved, group = state["state"], state["param_groups"][0]
            layout = (list(group["params"]), list(group["numels"]))
        except (KeyError, IndexError, TypeError) as error:
            raise ValueError("not a MasterWeightsAdam state_dict (a torch.optim.Adam state cannot "
                             f"be loaded into master weights): missing {error}") from None
        ours = ([self._names[k] for k in self._saved_order],
                [self._numels[k] for k in self._saved_order])
        if layout != ours:
            raise ValueError("MasterWeightsAdam state_dict is for different parameters: saved "
                             f"{len(layout[0])} named {layout[0][:3]}..., this module has "
                             f"{len(ours[0])} named {ours[0][:3]}...")
        # absent: a state of an older fastp2p, laid out as the parameters it loads into
        strides = group.get("strides", [self._params[k].stride() for k in self._saved_order])
        self._check_saved_strides(strides)
        with torch.no_grad():
            self._unpack(saved["exp_avg"], "exp_avg", strides)
            self._unpack(saved["exp_avg_sq"], "exp_avg_sq", strides)
            self._tickets.copy_(torch.tensor(self._num_programs, dtype=torch.int64)
                                * int(saved["step"]))
        ours = self.param_groups[0]
        ours["betas"] = tuple(float(b) for b in group["betas"])
        ours["eps"], ours["weight_decay"] = float(group["eps"]), float(group["weight_decay"])
        ours["lr"].fill_(float(group["lr"]))
        self._write_hyper()

    def hyper_parameters_changed(self) -> None:
        """Call after changing ``param_groups[0]``'s betas, eps or weight_decay: the kernel
        reads them from a device copy (not the lr, which it reads from the lr tensor)."""
        self._write_hyper()

    # ---- internals ---------------------------------------------------------------------------
    def _parameter_slices(self, flat: torch.Tensor) -> list:
        """Each parameter's slice of a master-shaped flat buffer, in state_dict's order."""
        return [flat[self._offsets[k]:self._offsets[k] + self._numels[k]]
                for k in self._saved_order]

    def _packed(self, flat: torch.Tensor) -> torch.Tensor:
        """``flat`` without gaps, in state_dict's order: the buffer itself with one bucket."""
        if len(self._bucket_slices) == 1:
            return flat
        return torch.cat(self._parameter_slices(flat))

    def _check_saved_strides(self, strides) -> None:
        """A ValueError unless ``strides`` (a state_dict's, in its order) give every parameter
        a dense layout of its shape, as the moments were saved in."""
        order = self._saved_order
        if not isinstance(strides, (list, tuple)) or len(strides) != len(order):
            raise ValueError("MasterWeightsAdam state_dict's strides do not list one layout per "
                             "parameter: not a state MasterWeightsAdam wrote")
        for k, stride in zip(order, strides):
            name, param = self._names[k], self._params[k]
            if not _is_dense_layout(param.shape, stride):
                raise ValueError(f"MasterWeightsAdam state_dict's strides of {name} are "
                                 f"{stride!r}, no dense layout of its shape "
                                 f"{tuple(param.shape)}: not a state MasterWeightsAdam wrote")

    def _unpack(self, packed: torch.Tensor, key: str, strides) -> None:
        """Each parameter's part of ``packed`` (state_dict's order, each part in the memory
        order of ``strides``) into its ``key`` moment, element by element: a channels-last
        run's state loads into NCHW weights and the reverse (--channels-last is not
        inherited)."""
        if not isinstance(packed, torch.Tensor) or packed.shape != (sum(self._numels),):
            raise ValueError(f"MasterWeightsAdam state_dict's {key} is not a flat tensor of "
                             f"its {sum(self._numels)} parameter elements")
        packed, start = packed.contiguous(), 0
        for k, stride in zip(self._saved_order, strides):
            ours = self.state[self._params[k]][key]
            ours.copy_(packed[start:start + ours.numel()].as_strided(ours.shape, stride))
            start += ours.numel()

    def _write_hyper(self) -> None:
        group = self.param_groups[0]
        values = {"beta1": group["betas"][0], "beta2": group["betas"][1], "eps": group["eps"],
                  "weight_decay": group["weight_decay"]}
        self._hyper.copy_(torch.tensor([values[name] for name in HYPER_FIELDS],
                                       dtype=torch.float64))

    @staticmethod
    def _keep_state_dict_float32(owner: nn.Module, local_name: str, master: torch.Tensor):
        """Make ``owner``'s state_dict show ``master`` (float32) for its copied parameter
        ``local_name``, and its load_state_dict write the loaded value into the master."""

        def save_master(module, state_dict, prefix, local_metadata):
            key = prefix + local_name
            if key in state_dict:
                state_dict[key] = master.detach()

        def load_master(module, state_dict, prefix, *args):
            value = state_dict.get(prefix + local_name)
            if isinstance(value, torch.Tensor) and value.shape == master.shape:
                with torch.no_grad():
                    master.copy_(value)

        owner.register_state_dict_post_hook(save_master)
        owner.register_load_state_dict_pre_hook(load_master)
