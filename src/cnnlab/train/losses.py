"""The training loss: cross-entropy, or BCE on one logit for binary models, weighted by class
when the recipe asks; and the per-image losses easy-image pruning remembers."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.config import TrainConfig
from cnnlab.data.dataset import ImageData


def class_counts(data: ImageData) -> torch.Tensor:
    return torch.bincount(data.labels, minlength=len(data.classes)).double()


def make_loss(t: TrainConfig, binary: bool, train: ImageData) -> tuple[nn.Module, str]:
    """Cross-entropy (or BCE for one-logit binary models), weighted when class_weight: auto."""
    counts = class_counts(train)
    if binary:
        pos_weight = None
        how = "none"
        if t.class_weight == "auto":
            pos_weight = (counts[0] / counts[1].clamp_min(1)).float().view(1)
            how = f"pos_weight={pos_weight.item():.3f}"
        return BinaryLoss(pos_weight, t.label_smoothing), how
    weight = None
    how = "none"
    if t.class_weight == "auto":
        weight = (counts.sum() / (len(counts) * counts.clamp_min(1))).float()
        how = "class weights " + ", ".join(f"{w:.2f}" for w in weight.tolist())
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=t.label_smoothing), how


def describe_losses(t: TrainConfig, binary: bool, weighting: str) -> str:
    """The two losses a run logs, in one line: the training loss is what the optimiser
    minimises (smoothed and weighted as the recipe says); val_loss is plain cross-entropy."""
    kind = "BCE" if binary else "cross-entropy"
    how = [f"label smoothing {t.label_smoothing:g}"] if t.label_smoothing else []
    if weighting != "none":
        how.append(f"weighted ({weighting})")
    train = f"{kind} with {' and '.join(how)}" if how else f"plain {kind}"
    return (f"training loss: {train}; val_loss: plain {kind} (no smoothing or weights), as `cnnlab "
            "evaluate` and the model card report it")  # fmt: skip


class BinaryLoss(nn.Module):
    """BCE with logits on one output; labels are class indices 0/1 (1 = the positive class)."""

    def __init__(self, pos_weight: torch.Tensor | None, smoothing: float) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight)
        self.smoothing = smoothing

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        target = labels.to(logits.dtype)
        if self.smoothing:
            target = target * (1 - self.smoothing) + 0.5 * self.smoothing
        return F.binary_cross_entropy_with_logits(
            logits[:, 0], target, pos_weight=self.pos_weight, reduction=reduction
        )


def sample_losses(loss_fn: nn.Module, logits: torch.Tensor, labels: torch.Tensor):
    """Each image's loss, and the divisor that turns their sum into `loss_fn`'s mean."""
    if isinstance(loss_fn, BinaryLoss):
        return loss_fn(logits, labels, reduction="none"), len(labels)
    per = F.cross_entropy(logits, labels, weight=loss_fn.weight, reduction="none",
                          label_smoothing=loss_fn.label_smoothing)  # fmt: skip
    return per, (loss_fn.weight[labels].sum() if loss_fn.weight is not None else len(labels))


def correct_count(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    pred = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
    return (pred == labels).sum()
