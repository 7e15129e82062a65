"""Skip part of the well-learned images in the middle epochs (InfoBatch, Qin et al., ICLR 2024).

A short run spends most of its later steps on images the model already gets right. Each
image's last training loss is remembered; in every epoch but the first (no losses yet) and
the last eighth (the model ends on the whole set), `fraction` of the training set is left
out, drawn at random from the 2 x `fraction` lowest-loss images. The rest of that pool
counts double in the loss, so the expected gradient is the full set's. Such an epoch takes
(1 - fraction) of the steps, and every image keeps being seen (the drop is random).

InfoBatch's pool is "below the mean loss", whose size changes from epoch to epoch; a pool of
fixed size keeps every epoch's step count, and so the learning-rate schedule, known up front.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from cnnlab.train.callbacks import Callback


class EasySamplePruning(Callback):
    def __init__(self, n: int, fraction: float, epochs: int, device: torch.device) -> None:
        self.n = n
        self.drop = int(fraction * n)
        self.full_from = epochs - max(1, math.ceil(epochs / 8))  # annealing: the last eighth
        self.scores = torch.zeros(n, device=device)

    def prunes(self, epoch: int) -> bool:
        """Whether epoch `epoch` (0-based) leaves images out."""
        return self.drop > 0 and 1 <= epoch < self.full_from

    def size(self, epoch: int) -> int:
        """Images trained on in epoch `epoch`."""
        return self.n - self.drop if self.prunes(epoch) else self.n

    def plan(self, epoch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This epoch's shuffled image indices, and the per-image loss weights (None: all 1)."""
        if not self.prunes(epoch):
            return torch.randperm(self.n, generator=gen), None
        pool = torch.argsort(self.scores.cpu(), stable=True)[: 2 * self.drop]
        dropped = pool[torch.randperm(len(pool), generator=gen)[: self.drop]]
        keep = torch.ones(self.n, dtype=torch.bool)
        keep[dropped] = False
        weights = torch.ones(self.n)
        weights[pool] = len(pool) / (len(pool) - self.drop)
        kept = keep.nonzero().squeeze(1)
        return kept[torch.randperm(len(kept), generator=gen)], weights

    def record(self, idx: torch.Tensor, losses: torch.Tensor) -> None:
        self.scores[idx] = losses.detach().float()

    def state_dict(self) -> dict[str, Any]:
        return {"scores": self.scores.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scores.copy_(state["scores"])
