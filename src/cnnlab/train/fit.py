"""The training loop, readable in one sitting.

Data lives on the device as one uint8 tensor; each step indexes a batch, augments it
as a whole, normalises it with one multiply-add, and runs a plain PyTorch step.
Randomness is re-seeded from (seed, epoch) at every epoch, so a run resumed from a
checkpoint continues bit for bit like one that never stopped.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from cnnlab.config import Recipe, TrainConfig
from cnnlab.data.augment import BatchAugment
from cnnlab.data.dataset import ImageData, concat
from cnnlab.data.prepare import PreparedData
from cnnlab.data.preprocess import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.runtime.device import Runtime, choose_runtime, keep_allocations_on_heap, set_threads
from cnnlab.runtime.inference import predict_logits
from cnnlab.train import distributed
from cnnlab.train.callbacks import (
    CHECKPOINT,
    Callback,
    Checkpointer,
    EarlyStopping,
    FitState,
    HistoryWriter,
    load_checkpoint,
)
from cnnlab.train.pruning import EasySamplePruning

log = logging.getLogger("cnnlab")


@dataclass
class FitResult:
    history: list[dict[str, float]]
    runtime: str
    train_seconds: float  # time spent in training steps and per-epoch validation
    class_counts: dict[str, int] = field(default_factory=dict)
    loss_weighting: str = "none"


# ----------------------------------------------------------------------------- set-up


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % (2**63 - 1)


def make_optimizer(model: nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on weights only (not biases or norm scales); models may offer their own
    parameter groups (discriminative learning rates) through `param_groups(lr)`."""
    if hasattr(model, "param_groups"):
        groups = model.param_groups(t.lr)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise CnnlabError("the model has no trainable parameters (is everything frozen?)")
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay
        )
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, t: TrainConfig, steps_per_epoch: int | list[int]):
    """Stepped once per batch; `step` decays every `step_size` epochs. `steps_per_epoch` is one
    count for every epoch, or a list of them (epochs that skip images take fewer steps).

    onecycle follows OneCycleLR's learning-rate curve (cosine rise from lr/25 over
    `warmup_fraction` of the steps, cosine fall to lr/25e4), written as a multiplier so it
    also works for runs of a handful of steps, where OneCycleLR divides by zero.
    """
    per_epoch = (
        [steps_per_epoch] * t.epochs if isinstance(steps_per_epoch, int) else list(steps_per_epoch)
    )
    ends = list(itertools.accumulate(per_epoch))  # the step at which each epoch ends
    total = max(1, ends[-1] if ends else 0)
    if t.schedule == "onecycle":
        warm = max(1, round(t.warmup_fraction * total))
        low, final = 1 / 25, 1 / 25e4

        def fn(s: int) -> float:
            if s < warm:
                return low + (1 - low) * (1 - math.cos(math.pi * s / warm)) / 2
            p = min(1.0, (s - warm) / max(1, total - warm))
            return final + (1 - final) * (1 + math.cos(math.pi * p)) / 2

    elif t.schedule == "cosine":
        fn = lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))  # noqa: E731
    elif t.schedule == "step":
        fn = lambda s: t.gamma ** (bisect.bisect_right(ends, s) // t.step_size)  # noqa: E731
    else:
        fn = lambda s: 1.0  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(opt, fn)


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


def validate(
    model: nn.Module, data: ImageData, pre: Preprocess, rt: Runtime, loss_fn, batch: int
) -> dict:
    logits = distributed.shard_predict(
        lambda x: predict_logits(model, x, pre, rt, batch), data.images
    )  # with DDP, each rank predicts its part
    loss_fn = copy.deepcopy(loss_fn).cpu()  # a copy: on a GPU the training loss stays there
    with torch.no_grad():
        loss = float(loss_fn(logits, data.labels))
    return {
        "val_loss": loss,
        "val_accuracy": float(correct_count(logits, data.labels)) / max(1, len(data)),
    }


# ----------------------------------------------------------------------------- the loop


def fit(
    model: nn.Module,
    data: PreparedData,
    recipe: Recipe,
    out_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    callbacks: list[Callback] | None = None,
) -> FitResult:
    t = recipe.train
    set_threads(t.threads)
    rt = choose_runtime(t.device, t.precision, t.channels_last)
    if rt.device.type == "cpu":
        keep_allocations_on_heap()
    torch.manual_seed(t.seed)

    train = (
        concat([data.train, data.val]) if t.train_on_val and data.val is not None else data.train
    )
    val = None if t.train_on_val else data.val
    n = len(train)
    batch = min(t.batch_size, n)
    ddp = distributed.current()  # None unless launched by torchrun with several processes
    world = ddp.world if ddp else 1
    if ddp is not None and batch < 2 * world:
        raise CnnlabError(f"train.batch_size {batch} is too small for {world} processes (2 each)")
    if ddp is not None and t.prune_easy:
        raise CnnlabError("train.prune_easy does not work with several processes yet; set it to 0")
    pruner = EasySamplePruning(n, t.prune_easy, t.epochs, rt.device) if t.prune_easy else None

    def count_steps(m: int) -> int:
        # a last batch of 1 (per process) would upset BatchNorm: a short remainder joins the last
        return m // batch + (1 if m % batch >= 2 * world else 0)

    epoch_steps = [count_steps(pruner.size(e) if pruner else n) for e in range(t.epochs)]

    model.to(rt.device)
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
    binary = _num_outputs(model) == 1
    loss_fn, weighting = make_loss(t, binary, train)
    loss_fn.to(rt.device)
    optimizer = make_optimizer(model, t)
    scheduler = make_scheduler(optimizer, t, epoch_steps)
    augment = BatchAugment(recipe.augment)
    scaler = torch.amp.GradScaler("cuda") if rt.needs_grad_scaler else None

    # only with early stopping on are the best epoch's weights put back (model selection on val)
    stopper = (
        EarlyStopping(t.early_stopping, t.monitor) if val is not None and t.early_stopping else None
    )
    stateful: list[Callback] = [c for c in (stopper, pruner) if c] + list(callbacks or [])
    cbs = list(stateful)
    if out_dir is not None and distributed.is_main():
        cbs.append(HistoryWriter(out_dir))
        if t.checkpoint:
            cbs.append(Checkpointer(out_dir, stateful, {"recipe": _resume_key(recipe)}))
    state = FitState(model, optimizer, scheduler, t.epochs)
    if resume:
        distributed.barrier()  # rank 0 may still be writing the checkpoint that all ranks read
        _restore(state, stateful, out_dir, _resume_key(recipe))

    counts = train.class_counts()
    log.info("training %s on %d images (%s), validating on %d", recipe.model.name, n,
             ", ".join(f"{k}: {v}" for k, v in counts.items()), len(val) if val is not None else 0)  # fmt: skip
    log.info(
        "runtime: %s; batch %d, %d steps/epoch; loss weighting: %s",
        rt.describe(),
        batch,
        epoch_steps[0],
        weighting,
    )
    if pruner is not None and pruner.prunes(1):
        log.info("epochs 2-%d skip %d of the well-learned images each (%d steps)",
                 pruner.full_from, pruner.drop, epoch_steps[1])  # fmt: skip
    for cb in cbs:
        cb.on_train_start(state)

    images = train.images.to(rt.device)
    labels = train.labels.to(rt.device)
    scale, shift = data.preprocess.affine(rt.device)
    train_model = distributed.wrap(model, rt.device)  # DDP when distributed, else the model
    step_fn = torch.compile(train_model) if t.compile else train_model
    bar = tqdm(total=sum(epoch_steps), initial=sum(epoch_steps[: state.epoch]), file=sys.stderr, disable=not (progress and distributed.is_main()),
               unit="step", dynamic_ncols=True, leave=False)  # fmt: skip
    started = time.perf_counter()
    for epoch in range(state.epoch, t.epochs):
        epoch_start = time.perf_counter()
        gen = torch.Generator().manual_seed(epoch_seed(t.seed, epoch))
        torch.manual_seed(epoch_seed(t.seed, epoch) + 1)  # dropout and other global draws
        # weights: per-image loss weights when the epoch skips well-learned images, else None
        order, weights = (
            pruner.plan(epoch, gen) if pruner else (torch.randperm(n, generator=gen), None)
        )
        order = order.to(rt.device)
        weights = weights.to(rt.device) if weights is not None else None
        steps, m = epoch_steps[epoch], len(order)
        if ddp is not None:
            ddp.own_draws(gen, epoch_seed(t.seed, epoch))  # per-rank augmentation and dropout
        model.train()
        if hasattr(model, "on_train_mode"):
            model.on_train_mode()  # e.g. keep a frozen backbone's BatchNorm in eval mode
        loss_sum = torch.zeros((), device=rt.device)
        hits = torch.zeros((), device=rt.device, dtype=torch.long)
        seen = 0
        bar.set_description(f"epoch {epoch + 1}/{t.epochs}")
        for s in range(steps):
            idx = order[s * batch : (s + 1) * batch if s < steps - 1 else m]
            weight = 1.0
            if ddp is not None:  # this rank's share of the global batch, and its loss weight
                idx, weight = ddp.split(idx)
            x = images[idx].float()
            y = labels[idx]
            x = augment(x, gen)
            x = x * scale + shift
            if rt.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with rt.autocast():
                out = step_fn(x)
                if pruner is None:
                    loss = loss_fn(out.float(), y)
                else:  # each image's loss is remembered; the kept easy ones count double
                    per, norm = sample_losses(loss_fn, out.float(), y)
                    pruner.record(idx, per)
                    loss = (per if weights is None else per * weights[idx]).sum() / norm
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss * weight).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                (loss * weight).backward()
                optimizer.step()
            scheduler.step()
            loss_sum += loss.detach() * len(idx)
            hits += correct_count(out.detach(), y)
            seen += len(idx)
            bar.update(1)
            if s % 20 == 0 or s == steps - 1:
                bar.set_postfix(
                    loss=f"{loss_sum.item() / seen:.4f}", acc=f"{hits.item() / seen:.2%}"
                )
        if ddp is not None:  # the epoch's figures over all ranks
            loss_sum, hits, seen = ddp.totals(loss_sum, hits, seen)
        if not math.isfinite(loss_sum.item()):
            bar.close()
            raise CnnlabError(
                f"training diverged at epoch {epoch + 1} (loss is {loss_sum.item()}); lower train.lr"
            )
        row = {"epoch": epoch + 1, "loss": loss_sum.item() / seen, "accuracy": hits.item() / seen,
               "lr": optimizer.param_groups[0]["lr"]}  # fmt: skip
        every = t.validation_freq
        if val is not None and every and ((epoch + 1) % every == 0 or epoch + 1 == t.epochs):
            row.update(validate(model, val, data.preprocess, rt, loss_fn, t.eval_batch_size))
        row["seconds"] = round(time.perf_counter() - epoch_start, 3)
        state.epoch = epoch + 1
        state.history.append(row)
        bar.clear()
        log.info(_epoch_line(row, t.epochs))
        bar.refresh()
        for cb in cbs:
            cb.on_epoch_end(state, row)
        if state.stop:
            break
    bar.close()
    elapsed = time.perf_counter() - started
    for cb in cbs:
        cb.on_train_end(state)
    distributed.unwrap(model)
    model.eval()
    return FitResult(state.history, rt.describe(), elapsed, counts, weighting)


def _num_outputs(model: nn.Module) -> int:
    if hasattr(model, "get_classifier"):
        head = model.get_classifier()
        if isinstance(head, nn.Linear):
            return head.out_features
    return int(getattr(model, "num_classes", 0)) or 2


def _epoch_line(row: dict, epochs: int) -> str:
    text = f"epoch {row['epoch']}/{epochs}  loss {row['loss']:.4f}  acc {row['accuracy']:.2%}"
    if "val_loss" in row:
        text += f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.2%}"
    return text + f"  lr {row['lr']:.2e}  {row['seconds']:.1f}s"


def _resume_key(recipe: Recipe) -> dict:
    """The settings a resumed run must share with the run it continues (not threads or device)."""
    d = recipe.to_dict()
    d["train"] = {
        k: v for k, v in d["train"].items() if k not in ("threads", "device", "checkpoint")
    }
    return {k: d[k] for k in ("data", "model", "augment", "train")}


def _first_difference(a, b, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            diff = _first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else k)
            if diff:
                return diff
        return None
    return None if a == b else f"{where} (checkpoint: {a!r}, now: {b!r})"


def _restore(state: FitState, cbs: list[Callback], out_dir: Path | None, key: dict) -> None:
    path = (out_dir or Path(".")) / CHECKPOINT
    if not path.is_file():
        raise CnnlabError(f"--resume: no checkpoint at {path}")
    try:
        ckpt = load_checkpoint(path)
    except Exception as e:  # torch raises several types for a damaged file
        raise CnnlabError(
            f"--resume: cannot read {path} ({type(e).__name__}); start a new run"
        ) from None
    diff = _first_difference(ckpt.get("recipe", {}), key)
    if diff:
        raise CnnlabError(f"--resume: the recipe differs from the interrupted run's in {diff}; "
                          "resume with the same recipe, or start a new run")  # fmt: skip
    try:
        state.model.load_state_dict(ckpt["model"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.scheduler.load_state_dict(ckpt["scheduler"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise CnnlabError(
            f"--resume: checkpoint {path} does not fit this recipe and model ({e})"
        ) from None
    state.epoch = int(ckpt["epoch"])
    state.history = list(ckpt["history"])
    for cb, cb_state in zip(cbs, ckpt.get("callbacks", []), strict=False):
        if cb_state:
            cb.load_state_dict(cb_state)
    log.info("resuming from %s after epoch %d", path, state.epoch)
