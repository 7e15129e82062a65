"""Data-parallel training with torch.distributed (DDP): what fit() and train_recipe() need.

Launched by `torchrun --nproc_per_node=N -m cnnlab train RECIPE ...` (the environment says
RANK / WORLD_SIZE / LOCAL_RANK); without it every function here is a no-op.

How a run stays the same as a one-process run with the same `train.batch_size`:
- every rank draws the same permutation each epoch and takes its share of each *global*
  batch (the DistributedSampler scheme), so the global batch is batch_size, each rank's
  about batch_size / world;
- gradients are averaged by DDP, with each rank's loss weighted by its share of the batch;
- BatchNorm uses the statistics of the whole global batch (`SyncedBatchNorm`, which also
  works on a CPU with gloo, unlike torch's SyncBatchNorm);
- validation is split across ranks and gathered, so every rank takes the same decisions
  (early stopping); only rank 0 writes logs, checkpoints and the bundle.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from cnnlab.errors import CnnlabError

log = logging.getLogger("cnnlab")


@dataclass
class Dist:
    rank: int
    world: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    def split(self, idx: torch.Tensor) -> tuple[torch.Tensor, float]:
        """This rank's part of a global batch of indices (sizes differ by at most one), and
        the weight of its mean loss that makes DDP's average over ranks the global mean."""
        mine = idx.tensor_split(self.world)[self.rank]
        return mine, len(mine) * self.world / len(idx)

    def totals(
        self, loss_sum: torch.Tensor, hits: torch.Tensor, seen: int
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """An epoch's loss sum, correct count and images seen, summed over all ranks."""
        flat = torch.stack(
            [loss_sum.detach().double(), hits.double(), torch.tensor(seen).double().to(hits.device)]
        )
        dist.all_reduce(flat)
        return flat[0].float(), flat[1].round().long(), int(flat[2].item())

    def own_draws(self, gen: torch.Generator, seed: int) -> None:
        """After the shared permutation: rank-specific augmentation and dropout draws."""
        gen.manual_seed(seed + 1_000_003 * (self.rank + 1))
        torch.manual_seed(seed + 1 + 7_919 * (self.rank + 1))

    def gather_rows(self, local: torch.Tensor, total: int) -> torch.Tensor:
        """Concatenate each rank's rows (rank order) into the full (total, ...) tensor."""
        sizes = [len(part) for part in torch.arange(total).tensor_split(self.world)]
        width = max(sizes)
        padded = local.new_zeros((width, *local.shape[1:]))
        padded[: len(local)] = local
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])

    def same_everywhere(self, value):
        """Rank 0's value of a small picklable object (a run folder name), on every rank."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


_CURRENT: Dist | None = None


def launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str = "auto") -> Dist | None:
    """Join the process group torchrun describes (gloo on CPU, NCCL on GPU); idempotent."""
    global _CURRENT
    if _CURRENT is not None or not launched():
        return _CURRENT
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise CnnlabError("device cuda asked for, but no CUDA GPU is available here")
        torch.cuda.set_device(local_rank)  # torch.device("cuda") now means this rank's GPU
    backend = "nccl" if use_cuda else "gloo"
    try:
        dist.init_process_group(backend, timeout=dt.timedelta(minutes=10))
    except (RuntimeError, ValueError) as e:
        raise CnnlabError(f"cannot join the torchrun process group ({backend}): {e}") from None
    _CURRENT = Dist(rank, world, local_rank)
    atexit.register(teardown)
    if rank != 0:
        logging.getLogger("cnnlab").setLevel(logging.WARNING)  # one voice: rank 0's
    log.info("distributed: %d processes (%s), global batch split across ranks", world, backend)
    return _CURRENT


def teardown() -> None:
    global _CURRENT
    if _CURRENT is not None and dist.is_initialized():
        dist.destroy_process_group()
    _CURRENT = None


def current() -> Dist | None:
    return _CURRENT


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for outside a process group)."""
    if _CURRENT is not None:
        dist.barrier()


def is_main() -> bool:
    return _CURRENT is None or _CURRENT.main


def world_size() -> int:
    return _CURRENT.world if _CURRENT else 1


# ----------------------------------------------------------------------------- the model


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with a gradient: the gradient of a sum over ranks is the sum of the
    gradients over ranks."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    return _SumOverRanks.apply(x)


class SyncedBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the global batch of all ranks.

    Two differentiable all-reduces (sum and count, then squared deviations) per forward;
    in eval mode, or alone, it is plain BatchNorm2d. Same parameters, buffers and state_dict.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        c = x.shape[1]
        count = torch.full((1,), x.numel() / c, device=x.device, dtype=torch.float32)
        sums = sum_over_ranks(torch.cat([x.float().sum((0, 2, 3)), count]))
        n = sums[c]
        mean = sums[:c] / n
        centred = x.float() - mean.view(1, c, 1, 1)
        var = sum_over_ranks((centred * centred).sum((0, 2, 3))) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (
                    self.momentum
                    if self.momentum is not None
                    else 1 / float(self.num_batches_tracked)
                )
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        y = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y.to(x.dtype)


def _swap_batchnorm(model: nn.Module, old: type, new: type) -> int:
    """Change the class of exact `old` BatchNorm layers in place (parameters stay the same
    objects, so an optimizer built on them stays valid). Subclasses (e.g. timm's BatchNormAct2d)
    are left alone: they keep per-rank statistics."""
    swapped = 0
    for m in model.modules():
        if type(m) is old:
            m.__class__ = new
            swapped += 1
    return swapped


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The model to train on this rank: DDP over global-batch BatchNorm, or the model itself."""
    if _CURRENT is None:
        return model
    _swap_batchnorm(model, nn.BatchNorm2d, SyncedBatchNorm)
    ids = None  # CPU: DDP takes no device ids
    if device.type == "cuda":
        ids = [device.index if device.index is not None else torch.cuda.current_device()]
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """Plain BatchNorm layers again, for evaluation and saving."""
    _swap_batchnorm(model, SyncedBatchNorm, nn.BatchNorm2d)
    return model


def shard_predict(predict, images: torch.Tensor) -> torch.Tensor:
    """Run `predict(images_part)` on this rank's part and gather everyone's rows, in order."""
    if _CURRENT is None or len(images) < _CURRENT.world:
        return predict(images)
    mine = torch.arange(len(images)).tensor_split(_CURRENT.world)[_CURRENT.rank]
    out = predict(images[mine])
    device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
    return _CURRENT.gather_rows(out.to(device), len(images)).cpu()
