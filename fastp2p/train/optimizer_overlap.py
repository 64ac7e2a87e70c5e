"""Each network's Adam bucket by bucket during its own backward
(``Pix2PixEngine(optimizer_overlap=True)``, issue 17 item 2).

Without it a network's update is one launch after its backward has finished. With it the
network's ``MasterWeightsAdam`` is laid out in ``BUCKETS`` buckets (at most; groups of
layers, the last layers first: ``fastp2p.train.master_weights_adam.bucket_members``), and a
bucket's update is issued, on a side stream, as soon as the backward has finished every
gradient in it, so it runs while the backward goes on through the earlier layers. Only the
bucket that the backward finishes last (the first layers) is left after it.

Why an early update is still the serial step's, bit for bit:

- **When a gradient is final.** A post-accumulate-grad hook on each parameter
  (``Tensor.register_post_accumulate_grad_hook``) runs when autograd's AccumulateGrad node for
  it has added the gradient into ``.grad``. Autograd runs that node once per backward call,
  after every node with an edge to it: every use of the parameter in the graph (D's weights in
  the D step are used twice, by the fake and the real pair; autograd sums the two contributions
  in the node's input buffer first). The pix2pix step has one backward call per network step
  (``loss.backward()`` or, fused, one ``torch.autograd.backward`` over both logits), so each
  hook fires once per step; a second arrival raises rather than update twice.
- **Nothing later in the backward reads the weights.** Every autograd node that saved a
  parameter, or a tensor computed from it with gradients (a bf16 cast, a norm's scale), has a
  path to the parameter's AccumulateGrad node, so it has run before the hook fires: a
  convolution's or transposed convolution's data gradient is computed in the same node as its
  weight gradient, a norm's input gradient in the same node as its affine gradients, and a
  U-Net down layer's weight gradient waits for both of its output's consumers (the next level
  and the skip concatenation). So once every parameter of a bucket has arrived, the bucket's
  weights, moments and gradients belong to the optimizer alone until the step reads them
  again. Adam is elementwise, so a bucket's launch gives exactly the whole launch's values for
  its slice (kernels/adam.py).
- **The step count.** Each bucket keeps its own step counter (its ticket), advanced by its own
  launch once per step, so no bucket's bias correction depends on when the others run.
- **Streams.** In the hook, the current stream is the one autograd ran the accumulation on
  (it made that stream wait for every stream that produced a contribution); the side stream
  waits for it (an event: ``StepStreams.fork``) and the bucket is launched there. The main
  stream waits for the side stream (``join``) in ``step``, where the serial step launched the
  optimizer: before the G step's D forward for D, before the next step for G. The launches
  read and write only the optimizer's own buffers, allocated once and alive as long as it is,
  plus the engine's lr tensor, so no allocation crosses streams and no ``record_stream`` is
  needed; the next ``zero_grad`` (a memset on the main stream) comes after the join.
- **Capture.** Inside ``torch.cuda.graph`` the hooks run once, at capture, from autograd's
  thread: each fork pulls the side stream into the capture and the join brings it back, as in
  ``fastp2p.train.step_streams``, so the replayed graph holds every bucket's launch with its
  event edges; nothing of this runs in Python on a replay. The hooks live on the parameters,
  not on autograd's AccumulateGrad nodes, so they keep no node alive from an eager warm-up
  step: each forward, the captured one included, makes new nodes, which take its stream (a
  node kept from a warm-up stream would accumulate outside the capture).
- **Only inside the engine's step.** The hooks do nothing outside a network step (between
  ``zero_grad`` and ``step``): a backward of the user's, or the G step's backward through the
  frozen D (whose parameters then have no AccumulateGrad node at all), updates nothing.

Cost: ``BUCKETS`` launches of the Adam kernel per network and step instead of one (8 instead of
2 per step; fewer where a network's parameters fill fewer buckets: a large layer stays whole).
The updates are not faster; they run beside the backward instead of after it.
"""
import weakref

import torch
from torch.nn.parallel import DistributedDataParallel

from fastp2p.train.step_streams import SideStream, StepStreams

BUCKETS = 4  # per network; the last one (the first layers) runs after the backward


def overlap_streams(device: torch.device, master_weights: bool, *nets) -> StepStreams:
    """The stream the overlapped updates run on, or a one-line ValueError where
    ``optimizer_overlap=True`` cannot run."""
    if not master_weights:
        raise ValueError("optimizer_overlap=True needs master_weights=True (it updates "
                         "MasterWeightsAdam's flat buffers bucket by bucket); set "
                         "master_weights=True or use optimizer_overlap=False")
    if any(isinstance(net, DistributedDataParallel) for net in nets):
        raise ValueError("optimizer_overlap=True is not supported with DistributedDataParallel; "
                         "use optimizer_overlap=False for multi-process training")
    if device.type != "cuda":
        raise ValueError(f"optimizer_overlap=True needs the networks on a CUDA device, they are "
                         f"on {device}; use optimizer_overlap=False")
    return SideStream(device)


class OverlappedUpdates:
    """``zero_grad`` and ``step`` of a bucketed ``MasterWeightsAdam`` (the surface the step body
    calls), with each bucket launched by the hooks during the backward in between."""

    def __init__(self, optimizer, streams: StepStreams):
        self.optimizer, self.streams = optimizer, streams
        self._bucket_of = {id(param): index
                           for index, params in enumerate(optimizer.bucket_params)
                           for param in params}
        # Per bucket, the ids of the parameters whose gradient is not final yet; None outside
        # a network step.
        self._waiting: list | None = None
        # The hooks reach this object through a weak reference, and are removed when it goes:
        # a parameter's hook must not keep a dropped engine's optimizer (its flat buffers)
        # alive, nor fire for it.
        hook = _hook_of(weakref.ref(self))
        handles = [param.register_post_accumulate_grad_hook(hook) for param in optimizer._params]
        weakref.finalize(self, _remove_hooks, handles)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradients and start waiting for them."""
        self.optimizer.check_step_inputs()
        self.optimizer.zero_grad(set_to_none)
        self._waiting = [{id(param) for param in params}
                         for params in self.optimizer.bucket_params]

    def step(self) -> None:
        """After the backward: launch the buckets still waiting (a parameter the backward gave
        no gradient: updated with a zero one, as ``MasterWeightsAdam.step`` does) on the current
        stream, then make it wait for the side stream's updates."""
        for index, waiting in enumerate(self._waiting):
            if waiting:
                self.optimizer.step_bucket(index)
        self.streams.join()
        self._waiting = None

    def abandon(self) -> None:
        """After a step that raised between ``zero_grad`` and ``step``: make the current stream
        wait for the buckets already launched and stop waiting. Their updates stay applied (an
        interrupted step is partly applied, and those buckets' step counts are one ahead until
        a checkpoint is loaded: ``MasterWeightsAdam.state_dict`` saves one count)."""
        if self._waiting is not None:
            self.streams.join()
            self._waiting = None

    def _gradient_final(self, param: torch.Tensor) -> None:
        if self._waiting is None:
            return
        index = self._bucket_of[id(param)]
        waiting = self._waiting[index]
        if id(param) not in waiting:
            raise RuntimeError("optimizer_overlap: a parameter's gradient was accumulated twice in "
                               "one network step (two backward calls?); its bucket was already "
                               "updated. Use one backward per step or optimizer_overlap=False")
        waiting.remove(id(param))
        if not waiting:
            self.streams.fork()
            with self.streams.side():
                self.optimizer.step_bucket(index)


def _hook_of(owner_ref):
    def gradient_final(param: torch.Tensor) -> None:
        owner = owner_ref()
        if owner is not None:
            owner._gradient_final(param)
    return gradient_final


def _remove_hooks(handles) -> None:
    for handle in handles:
        handle.remove()
