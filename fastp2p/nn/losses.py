"""fastp2p.GANLoss: the reference GANLoss with checked inputs, computed by fastp2p.ops.gan_loss;
and ``l1_loss`` (fastp2p.ops.l1_loss: mean |x - y| and its gradient in one pass), the L1 term
of the generator's loss as the training step uses it."""
import torch

from fastp2p.nn.fused import reference_forward_wanted
from fastp2p.ops import gan_loss, l1_loss
from fastp2p.reference.losses import GANLoss as _ReferenceGANLoss

__all__ = ["GANLoss", "l1_loss"]


class GANLoss(_ReferenceGANLoss):
    """``GANLoss(gan_mode)`` with gan_mode "vanilla" | "lsgan" | "wgangp"; called as
    ``loss(prediction, target_is_real)``; returns a 0-dim tensor.

    While the label buffers hold 1 (real) and 0 (fake) the loss and its gradient come from one
    fused pass (fastp2p.ops.gan_loss), returned in the dtype the reference's loss has
    (``reference_dtype``); other labels (given here, loaded with ``load_state_dict`` or written
    into ``real_label`` / ``fake_label`` later) run the reference math, as do an empty
    prediction (the mean of nothing: nan, as the reference's) and a call under
    torch.compile, torch.jit.trace, a torch.func transform or forward-mode AD
    (fastp2p.nn.fused.reference_forward_wanted). wgangp ignores the labels, as the reference
    does. ``target_is_real`` is read by its truth value, as the reference's ``if``.
    """

    def __init__(self, gan_mode, target_real_label=1.0, target_fake_label=0.0):
        super().__init__(gan_mode, target_real_label, target_fake_label)
        # (label buffers, their version counters, whether they hold 1 / 0) when last read.
        self._labels_seen = None

    def has_default_labels(self) -> bool:
        """Whether ``real_label`` is 1 and ``fake_label`` 0. CPU buffers are read on every call.
        Device buffers are read (a sync) only when one was replaced or written in place since
        the last call: their identity and version counters are compared, not their values, so
        a write through ``.data`` (which bumps no counter) after the first call is not seen
        there; write the buffers themselves (``real_label.fill_(0.9)`` under no_grad)."""
        buffers = (self.real_label, self.fake_label)
        if buffers[0].is_cpu and buffers[1].is_cpu:
            return buffers[0].item() == 1.0 and buffers[1].item() == 0.0
        try:
            versions = tuple(b._version for b in buffers)
        except RuntimeError:  # inference tensors (made under inference_mode): read every call
            versions = None
        seen = self._labels_seen
        if (versions is None or seen is None or seen[1] != versions
                or any(now is not then for now, then in zip(buffers, seen[0]))):
            default = bool(self.real_label == 1.0) and bool(self.fake_label == 0.0)
            self._labels_seen = seen = (buffers, versions, default)
        return seen[2]

    def reference_dtype(self, prediction, target_is_real: bool) -> torch.dtype:
        """The dtype of the reference's loss of ``prediction``: wgangp's mean has the logits';
        BCE-with-logits (vanilla) returns its target's, the label buffer's, and MSE (lsgan) the
        two promoted (a float32 label makes bfloat16 logits' loss float32, and float64 logits'
        vanilla loss float32 too). Autocast runs both losses with float16 / bfloat16 tensors
        widened to float32."""
        if self.gan_mode == "wgangp":
            return prediction.dtype
        logits = prediction.dtype
        # (from the buffers' dict: nn.Module's __getattr__ costs about a microsecond per lookup)
        label = self._buffers["real_label" if target_is_real else "fake_label"].dtype
        if torch.is_autocast_enabled(prediction.device.type):
            logits, label = _at_least_float32(logits), _at_least_float32(label)
        return label if self.gan_mode == "vanilla" else torch.promote_types(logits, label)

    def forward(self, prediction, target_is_real):
        """The loss of the discriminator's logits ``prediction`` (any shape, floating point)
        against the real label (``target_is_real`` true) or the fake one: a 0-dim tensor in
        the reference loss's dtype (``reference_dtype``). Call the module, ``loss(prediction,
        True)``, not this method."""
        if not isinstance(prediction, torch.Tensor) or not prediction.is_floating_point():
            raise ValueError("GANLoss expects the discriminator's floating-point logits, got "
                             f"{getattr(prediction, 'dtype', type(prediction).__name__)}")
        target_is_real = bool(target_is_real)  # the reference's ``if target_is_real:``
        # Under torch.compile the labels are traced, not checked: the reference math reads them.
        # An empty prediction (an empty batch's) gets the reference's nan mean.
        if (prediction.numel() == 0 or reference_forward_wanted(prediction)
                or torch.compiler.is_compiling()
                or (self.gan_mode != "wgangp" and not self.has_default_labels())):
            return super().forward(prediction, target_is_real)
        loss = gan_loss(prediction, self.gan_mode, target_is_real)  # float32 (float64 in)
        return loss.to(self.reference_dtype(prediction, target_is_real))


def _at_least_float32(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
