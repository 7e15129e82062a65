"""The training loop, readable in one sitting: `fit` is `set_up`, then epochs (`train_epoch`)
of steps (`train_step`), with callbacks for what cuts across (history, checkpoints, early
stopping, pruning: cnnlab.train.callbacks; which ones, cnnlab.train.listed).

Batches come from a source (cnnlab.train.batches): images through the whole model, or a
frozen transfer model's cached backbone features through its head; the loop is the same
for both. Images live on the device as one uint8 tensor; each step indexes a batch,
augments it as a whole, normalises it with one multiply-add, and runs a plain PyTorch step.
Randomness is re-seeded from (seed, epoch) at every epoch, so a run resumed from a
checkpoint continues bit for bit like one that never stopped. The loss and the optimiser
are built in cnnlab.train.losses and cnnlab.train.optim.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from cnnlab.config import CALLBACKS, Recipe
from cnnlab.data.dataset import concat
from cnnlab.data.prepare import PreparedData
from cnnlab.errors import CnnlabError
from cnnlab.fileio import on_terminal
from cnnlab.runtime.device import Runtime, choose_runtime, keep_allocations_on_heap, set_threads
from cnnlab.train import distributed
from cnnlab.train.batches import Features, Pixels, batch_source
from cnnlab.train.callbacks import Callback, FitState
from cnnlab.train.checkpoint import restore
from cnnlab.train.listed import fit_callbacks
from cnnlab.train.losses import correct_count, describe_losses, make_loss, sample_losses
from cnnlab.train.optim import make_optimizer, make_scheduler
from cnnlab.train.pruning import EasySamplePruning

log = logging.getLogger("cnnlab")


@dataclass
class FitResult:
    history: list[dict[str, float]]
    runtime: str
    train_seconds: float  # time spent in training steps and per-epoch validation
    class_counts: dict[str, int] = field(default_factory=dict)
    loss_weighting: str = "none"
    steps: list[dict[str, float]] = field(default_factory=list)  # step rows (callbacks.FitState)


# ------------------------------------------------------------ the loop: set-up, epochs, steps


@dataclass
class Loop:
    """Everything set-up prepares, which each epoch and each step then use."""

    recipe: Recipe
    model: nn.Module
    source: Pixels | Features  # the batches, and the module they step (the model, or its head)
    rt: Runtime
    batch: int  # examples per step (all processes together)
    epoch_steps: list[int]  # steps in each epoch (fewer where pruning skips images)
    ddp: distributed.Dist | None  # None unless launched by torchrun with several processes
    pruner: EasySamplePruning | None
    loss_fn: nn.Module
    weighting: str  # how the loss weighs the classes, in words
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None  # fp16 on a GPU only
    callbacks: list[Callback]
    state: FitState
    # once training starts (after the callbacks' on_train_start)
    step_fn: nn.Module | None = (
        None  # the stepped module, wrapped by DDP and torch.compile when asked
    )
    bar: tqdm | None = None
    started: float = 0.0  # perf_counter when the training time not yet in state.seconds began


def fit(
    model: nn.Module,
    data: PreparedData,
    recipe: Recipe,
    out_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    callbacks: list[Callback] | None = None,
) -> FitResult:
    """Train `model` by the recipe: set up, then epochs of steps. History, checkpoints, early
    stopping and pruning are callbacks (cnnlab.train.callbacks); add yours with `callbacks`."""
    t = recipe.train
    loop = set_up(model, data, recipe, out_dir, resume, callbacks, progress)
    state, source = loop.state, loop.source
    for cb in loop.callbacks:
        cb.on_train_start(state)

    source.to_device()
    train_model = distributed.wrap(source.module, loop.rt.device)  # DDP when distributed
    loop.step_fn = torch.compile(train_model) if t.compile else train_model
    steps = loop.epoch_steps
    done = sum(steps[: state.epoch]) + (state.position or {}).get("step", 0)
    loop.bar = tqdm(total=sum(steps), initial=done, file=sys.stderr, disable=not (progress and on_terminal() and distributed.is_main()),
                    unit="step", dynamic_ncols=True, leave=False)  # fmt: skip
    started = loop.started = time.perf_counter()
    for epoch in range(state.epoch, t.epochs):
        epoch_start = time.perf_counter()
        resumed = state.position or {}
        state.position = None
        row = train_epoch(loop, epoch, resumed)
        every = t.validation_freq
        if source.val is not None and every and ((epoch + 1) % every == 0 or epoch + 1 == t.epochs):
            row.update(source.validate(t.eval_batch_size))
        row["seconds"] = round(
            time.perf_counter() - epoch_start + resumed.get("epoch_seconds", 0), 3
        )
        state.epoch = epoch + 1
        state.seconds += time.perf_counter() - loop.started  # the training time so far, kept in
        loop.started = time.perf_counter()  # ... each checkpoint: a resumed run reports it all
        state.history.append(row)
        loop.bar.clear()
        log.info(_epoch_line(row, t.epochs))
        loop.bar.refresh()
        for cb in loop.callbacks:
            cb.on_epoch_end(state, row)
        if state.stop:
            break
    loop.bar.close()
    state.seconds += time.perf_counter() - loop.started
    log.debug("this process trained %.1f s", time.perf_counter() - started)
    for cb in loop.callbacks:
        cb.on_train_end(state)
    distributed.unwrap(source.module)
    model.eval()
    return FitResult(state.history, loop.rt.describe(), state.seconds, source.train.class_counts(),
                     loop.weighting, state.steps)  # fmt: skip


def set_up(
    model: nn.Module,
    data: PreparedData,
    recipe: Recipe,
    out_dir: Path | None,
    resume: bool,
    callbacks: list[Callback] | None,
    progress: bool = True,
) -> Loop:
    """Runtime, batches, steps per epoch, loss, optimiser, schedule and callbacks; on `resume`,
    the checkpoint's state. Everything a bad recipe can get wrong fails here, before any step."""
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
    check_processes(recipe, batch, ddp)
    model.to(rt.device)
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
    source = batch_source(model, train, val, data.preprocess, recipe, rt, progress)
    pruner = EasySamplePruning(n, t.prune_easy, t.epochs, rt.device) if t.prune_easy else None
    world = ddp.world if ddp else 1

    def count_steps(m: int) -> int:  # a short remainder joins the last batch
        return m // batch + (1 if m % batch >= source.smallest_last * world else 0)

    epoch_steps = [count_steps(pruner.size(e) if pruner else n) for e in range(t.epochs)]
    binary = _num_outputs(model) == 1
    loss_fn, weighting = make_loss(t, binary, train)
    loss_fn.to(rt.device)
    optimizer = make_optimizer(source.module, t)
    scheduler = make_scheduler(optimizer, t, epoch_steps)
    scaler = torch.amp.GradScaler("cuda") if source.rt.needs_grad_scaler else None
    stateful, cbs = fit_callbacks(recipe, source.module, val is not None, out_dir, pruner,
                                  list(callbacks or []), resume_key(recipe))  # fmt: skip
    state = FitState(source.module, optimizer, scheduler, t.epochs)
    state.total_steps = sum(epoch_steps)
    state.log_every = step_log_every(state.total_steps)
    if resume:
        distributed.barrier()  # rank 0 may still be writing the checkpoint that all ranks read
        restore(state, stateful, out_dir, resume_key(recipe))
        if state.position is not None and (
            state.position["step"] >= epoch_steps[state.epoch] or ddp is not None
        ):
            raise CnnlabError("--resume: the checkpoint's place inside the epoch does not fit "
                              "this run (steps per epoch or processes differ); start a new run")  # fmt: skip
        state.step = sum(epoch_steps[: state.epoch]) + (state.position or {}).get("step", 0)
    state.seconds += source.seconds  # computing the features is part of training

    counts = train.class_counts()
    log.info("training %s (%s), validating on %d", source.describe(recipe.model.name),
             ", ".join(f"{k}: {v}" for k, v in counts.items()), len(val) if val is not None else 0)  # fmt: skip
    log.info("runtime: %s; batch %d, %d steps/epoch", rt.describe(), batch, epoch_steps[0])
    log.info(describe_losses(t, binary, weighting))
    if pruner is not None and pruner.prunes(1):
        log.info("epochs 2-%d skip %d of the well-learned images each (%d steps)",
                 pruner.full_from, pruner.drop, epoch_steps[1])  # fmt: skip
    return Loop(recipe, model, source, rt, batch, epoch_steps, ddp, pruner, loss_fn, weighting,
                optimizer, scheduler, scaler, cbs, state)  # fmt: skip


def check_processes(recipe: Recipe, batch: int, ddp: distributed.Dist | None) -> None:
    """What several processes (torchrun) cannot do yet, refused before anything is computed."""
    t = recipe.train
    if ddp is None:
        return
    if batch < 2 * ddp.world:
        raise CnnlabError(
            f"train.batch_size {batch} is too small for {ddp.world} processes (2 each)"
        )
    if t.prune_easy:
        raise CnnlabError("train.prune_easy does not work with several processes yet; set it to 0")
    if t.freeze_after:
        raise CnnlabError("train.freeze_after does not work with several processes yet; remove it")


def train_epoch(loop: Loop, epoch: int, resumed: dict | None = None) -> dict[str, float]:
    """One pass over the training images (those pruning keeps), in an order drawn from
    (seed, epoch): a resumed run continues exactly, from a mid-epoch checkpoint's `resumed`
    position too. Returns the epoch's row of figures."""
    t, rt = loop.recipe.train, loop.rt
    epoch_start = time.perf_counter()
    gen = torch.Generator().manual_seed(epoch_seed(t.seed, epoch))
    torch.manual_seed(epoch_seed(t.seed, epoch) + 1)  # dropout and other global draws
    # weights: per-image loss weights when the epoch skips well-learned images, else None
    n = len(loop.source.train)
    if resumed:  # the order drawn when the epoch began, and the generators as they stood
        order, weights = resumed["order"], resumed.get("weights")
        gen.set_state(resumed["gen"])
        torch.set_rng_state(resumed["rng"])
        if rt.device.type == "cuda" and resumed.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(resumed["cuda_rng"], rt.device)
    else:
        order, weights = (
            loop.pruner.plan(epoch, gen) if loop.pruner else (torch.randperm(n, generator=gen), None)
        )  # fmt: skip
    order = order.to(rt.device)
    weights = weights.to(rt.device) if weights is not None else None
    steps, m, batch = loop.epoch_steps[epoch], len(order), loop.batch
    if loop.ddp is not None:
        loop.ddp.own_draws(gen, epoch_seed(t.seed, epoch))  # per-rank augmentation and dropout
    loop.source.train_mode()
    loss_sum = torch.zeros((), device=rt.device)
    hits = torch.zeros((), device=rt.device, dtype=torch.long)
    seen, first = 0, 0
    if resumed:
        loss_sum += resumed["loss_sum"].to(rt.device)
        hits += resumed["hits"].to(rt.device)
        seen, first = int(resumed["seen"]), int(resumed["step"])
    bar = loop.bar
    bar.set_description(f"epoch {epoch + 1}/{t.epochs}")
    state = loop.state
    since = (torch.zeros((), device=rt.device), torch.zeros((), device=rt.device), 0)  # last row on

    def position(done: int) -> dict:
        """Where this epoch stands after `done` steps: all a mid-epoch checkpoint needs."""
        cuda = rt.device.type == "cuda"
        return {"step": done, "order": order.cpu(), "weights": None if weights is None else weights.cpu(),
                "gen": gen.get_state(), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(rt.device) if cuda else None,
                "loss_sum": loss_sum.detach().cpu().clone(), "hits": hits.cpu().clone(), "seen": seen,
                "epoch_seconds": time.perf_counter() - epoch_start + (resumed or {}).get("epoch_seconds", 0.0),
                "run_seconds": time.perf_counter() - loop.started}  # fmt: skip

    for s in range(first, steps):
        idx = order[s * batch : (s + 1) * batch if s < steps - 1 else m]
        weight = 1.0
        if loop.ddp is not None:  # this rank's share of the global batch, and its loss weight
            idx, weight = loop.ddp.split(idx)
        loss, out, y = train_step(loop, idx, gen, weight, weights)
        batch_loss, batch_hits = loss.detach() * len(idx), correct_count(out.detach(), y)
        loss_sum += batch_loss
        hits += batch_hits
        seen += len(idx)
        state.step += 1
        since = (since[0] + batch_loss, since[1] + batch_hits, since[2] + len(idx))
        row = None
        if state.step % state.log_every == 0 or s == steps - 1:  # a step row, for the callbacks
            row = {"step": state.step, "epoch": round(epoch + (s + 1) / steps, 4),
                   "loss": since[0].item() / since[2], "accuracy": since[1].item() / since[2],
                   "lr": loop.optimizer.param_groups[0]["lr"]}  # fmt: skip
            state.steps.append(row)
            since = (torch.zeros_like(since[0]), torch.zeros_like(since[1]), 0)
        bar.update(1)
        if s % 20 == 0 or s == steps - 1:
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{hits.item() / seen:.2%}")
        # no position after an epoch's last step: the epoch's end has its own checkpoint
        where = None if s == steps - 1 else (lambda done=s + 1: position(done))
        for cb in loop.callbacks:
            cb.on_step_end(state, row, where)
    if loop.ddp is not None:  # the epoch's figures over all ranks
        loss_sum, hits, seen = loop.ddp.totals(loss_sum, hits, seen)
    if not math.isfinite(loss_sum.item()):
        bar.close()
        raise CnnlabError(
            f"training diverged at epoch {epoch + 1} (loss is {loss_sum.item()}); lower train.lr"
        )
    return {"epoch": epoch + 1, "loss": loss_sum.item() / seen, "accuracy": hits.item() / seen,
            "lr": loop.optimizer.param_groups[0]["lr"]}  # fmt: skip


def train_step(
    loop: Loop,
    idx: torch.Tensor,
    gen: torch.Generator,
    weight: float = 1.0,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimiser step on examples `idx` (the source makes the batch: images augmented and
    normalised, or features): forward, backward, step. `weight` scales this process's share
    of the loss (DDP); `weights` are pruning's per-example loss weights. Returns (loss,
    logits, labels)."""
    rt, pruner, loss_fn = loop.source.rt, loop.pruner, loop.loss_fn
    x, y = loop.source.batch(idx, gen, loop.state.epoch)
    with rt.autocast():
        out = loop.step_fn(x)
        if pruner is None:
            loss = loss_fn(out.float(), y)
        else:  # each example's loss is remembered; the kept easy ones count double
            per, norm = sample_losses(loss_fn, out.float(), y)
            pruner.record(idx, per)
            loss = (per if weights is None else per * weights[idx]).sum() / norm
    optimizer, scaler = loop.optimizer, loop.scaler
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss * weight).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        (loss * weight).backward()
        optimizer.step()
    loop.scheduler.step()
    return loss, out, y


# ----------------------------------------------------------------------------- helpers


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's draws (order, augmentation, dropout): resumable bit for bit."""
    return (seed * 1_000_003 + epoch * 7_919) % (2**63 - 1)


def step_log_every(total_steps: int, points: int = 1000) -> int:
    """Steps per step row: every step for short runs, about `points` rows for long ones."""
    return max(1, total_steps // points)


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


def resume_key(recipe: Recipe) -> dict:
    """The settings a resumed run must share with the run it continues (not threads or device)."""
    d = recipe.to_dict()
    free = ("threads", "device", "checkpoint", "checkpoint_minutes")
    d["train"] = {k: v for k, v in d["train"].items() if k not in free}
    if sorted(d["train"]["callbacks"]) == sorted(CALLBACKS):  # the default: as before the list
        del d["train"]["callbacks"]
    return {k: d[k] for k in ("data", "model", "augment", "train")}
