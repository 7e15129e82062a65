"""Training transfer models in phases: the head on cached features, then optional fine-tuning.

Phase 1: with the backbone frozen and no augmentation in this phase, the backbone's pooled
features are computed once (train.features, cached on disk) and the head trains on them in
seconds. With augmentation on, the frozen model trains through fit() as any other model.
When a fine-tuning phase follows (and `finetune.augment` is on), the augment section is
that phase's, and phase 1 trains on the fixed features.
Phase 2 (recipe `finetune.epochs` > 0): the chosen stages are unfrozen and the whole model
trains through fit(), with a lower learning rate for the backbone (`param_groups`).
Models that are not transfer models go straight to fit().
"""

from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path

import torch
import torch.nn as nn

from cnnlab.config import AugmentConfig, Recipe
from cnnlab.data.augment import BatchAugment
from cnnlab.data.prepare import PreparedData
from cnnlab.errors import CnnlabError
from cnnlab.models.transfer import TransferNet
from cnnlab.runtime.device import choose_runtime, set_threads
from cnnlab.train.callbacks import Callback, FitState, HistoryWriter
from cnnlab.train.evaluate import loss_from_logits
from cnnlab.train.features import cached_features
from cnnlab.train.fit import FitResult, epoch_seed, fit, step_log_every
from cnnlab.train.losses import correct_count, describe_losses, make_loss
from cnnlab.train.optim import make_optimizer, make_scheduler

log = logging.getLogger("cnnlab")


def augment_in_phase_one(recipe: Recipe) -> bool:
    """The augment section belongs to the fine-tuning phase when there is one (and it asks for
    it); otherwise to the only phase."""
    if recipe.finetune.epochs > 0 and recipe.finetune.augment:
        return False
    return BatchAugment(recipe.augment).enabled


def uses_feature_cache(model: nn.Module, recipe: Recipe) -> bool:
    return (
        isinstance(model, TransferNet)
        and model.backbone_frozen
        and recipe.train.feature_cache
        and not augment_in_phase_one(recipe)
    )


def fit_model(
    model: nn.Module,
    data: PreparedData,
    recipe: Recipe,
    out_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    callbacks: list[Callback] | None = None,
) -> FitResult:
    """Train `model` by the recipe: fit() for ordinary models, the phases above for transfer ones.
    `callbacks` follow every phase (a TensorBoardLogger continues its steps across them)."""
    callbacks = list(callbacks or [])
    if not isinstance(model, TransferNet):
        return fit(model, data, recipe, out_dir, resume=resume, progress=progress,
                   callbacks=callbacks)  # fmt: skip
    ft = recipe.finetune
    if resume:
        check_resume_phases(model, recipe)
    started = time.perf_counter()
    if uses_feature_cache(model, recipe):
        first = fit_head_on_features(model, data, recipe, out_dir, progress, callbacks)
    else:
        phase_one = recipe
        if not augment_in_phase_one(recipe):
            phase_one = copy.deepcopy(recipe)
            phase_one.augment = AugmentConfig()
        first = fit(model, data, phase_one, out_dir, resume=resume, progress=progress,
                    callbacks=callbacks)  # fmt: skip
        for row in first.history:
            row["phase"] = "head" if model.backbone_frozen else "train"
    if ft.epochs == 0:
        return first
    model.freeze("none" if ft.unfreeze == "all" else ft.unfreeze)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("fine-tuning from %s: %s trainable parameters, %d epochs", ft.unfreeze,
             f"{trainable:,}", ft.epochs)  # fmt: skip
    second = fit(
        model, data, finetune_recipe(recipe), out_dir / "finetune" if out_dir else None,
        progress=progress, callbacks=callbacks,
    )  # fmt: skip
    for row in second.history:
        row["phase"] = "finetune"
    done_steps = int(first.steps[-1]["step"]) if first.steps else 0
    steps = first.steps + [{**r, "step": r["step"] + done_steps, "epoch": r["epoch"] + len(first.history)}
                           for r in second.steps]  # fmt: skip
    return FitResult(
        first.history + second.history, second.runtime, time.perf_counter() - started,
        first.class_counts, first.loss_weighting, steps,
    )  # fmt: skip


def check_resume_phases(model: nn.Module, recipe: Recipe) -> None:
    """`--resume` continues one fit(); a run in phases (cached features, fine-tuning) cannot."""
    if isinstance(model, TransferNet) and (
        recipe.finetune.epochs or uses_feature_cache(model, recipe)
    ):
        raise CnnlabError("--resume works for single-phase runs; this transfer recipe has phases")


def finetune_recipe(recipe: Recipe) -> Recipe:
    """The recipe of phase 2: the finetune section's settings in place of the train section's."""
    r = copy.deepcopy(recipe)
    ft, t = r.finetune, r.train
    t.epochs, t.lr, t.batch_size, t.optimizer = ft.epochs, ft.lr, ft.batch_size, ft.optimizer
    t.weight_decay, t.schedule = ft.weight_decay, ft.schedule
    t.early_stopping, t.checkpoint = 0, False
    t.seed = t.seed + 1
    if not ft.augment:
        r.augment = AugmentConfig()
    return r


def fit_head_on_features(
    model: TransferNet,
    data: PreparedData,
    recipe: Recipe,
    out_dir: Path | None = None,
    progress: bool = True,
    callbacks: list[Callback] | None = None,
) -> FitResult:
    """Phase 1: the head trained on cached pooled features (same loss, optimizer and schedule
    settings as fit(); the best epoch by the monitored value kept when early_stopping is on).
    The callbacks see its step and epoch rows as fit()'s would (history.jsonl, TensorBoard)."""
    t = recipe.train
    set_threads(t.threads)
    rt = choose_runtime(t.device, t.precision, t.channels_last)
    torch.manual_seed(t.seed)
    train = data.train
    feature_batch = min(64, t.eval_batch_size)
    started = time.perf_counter()
    x_train, hit = cached_features(model, train.images, data.preprocess, rt, feature_batch,
                                   progress=progress)  # fmt: skip
    x_val = y_val = None
    if data.val is not None:
        x_val, _ = cached_features(model, data.val.images, data.preprocess, rt, feature_batch,
                                   progress=progress)  # fmt: skip
        y_val = data.val.labels
    extract_seconds = time.perf_counter() - started
    model.cpu()
    head = model.classifier_head()
    binary = model.get_classifier().out_features == 1
    loss_fn, weighting = make_loss(t, binary, train)
    counts = train.class_counts()
    log.info("training the head of %s on cached features of %d images (%s), validating on %d; "
             "features %s in %.1f s", recipe.model.name, len(train),
             ", ".join(f"{k}: {v}" for k, v in counts.items()),
             len(data.val) if data.val is not None else 0,
             "from the cache" if hit else "computed", extract_seconds)  # fmt: skip
    log.info(describe_losses(t, binary, weighting))
    y = train.labels
    n = len(y)
    batch = min(t.batch_size, n)
    steps = math.ceil(n / batch)
    optimizer = make_optimizer(head, t)
    scheduler = make_scheduler(optimizer, t, steps)
    state = FitState(head, optimizer, scheduler, t.epochs, total_steps=steps * t.epochs)
    state.log_every = step_log_every(state.total_steps)
    cbs = [*([HistoryWriter(out_dir)] if out_dir is not None else []), *(callbacks or [])]
    for cb in cbs:
        cb.on_train_start(state)
    history = state.history
    best = (math.inf, None)
    head_started = time.perf_counter()
    for epoch in range(t.epochs):
        gen = torch.Generator().manual_seed(epoch_seed(t.seed, epoch))
        torch.manual_seed(epoch_seed(t.seed, epoch) + 1)
        order = torch.randperm(n, generator=gen)
        head.train()
        loss_sum, hits = 0.0, 0
        since = [0.0, 0, 0]  # loss, hits, images since the last step row
        for s in range(steps):
            idx = order[s * batch : (s + 1) * batch]
            out = head(x_train[idx])
            loss = loss_fn(out, y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            batch_loss, batch_hits = float(loss.detach()) * len(idx), int(correct_count(out.detach(), y[idx]))  # fmt: skip
            loss_sum += batch_loss
            hits += batch_hits
            state.step += 1
            since = [since[0] + batch_loss, since[1] + batch_hits, since[2] + len(idx)]
            step_row = None
            if state.step % state.log_every == 0 or s == steps - 1:
                step_row = {"step": state.step, "epoch": round(epoch + (s + 1) / steps, 4),
                            "loss": since[0] / since[2], "accuracy": since[1] / since[2],
                            "lr": optimizer.param_groups[0]["lr"]}  # fmt: skip
                state.steps.append(step_row)
                since = [0.0, 0, 0]
            for cb in cbs:
                cb.on_step_end(state, step_row, None)  # no mid-epoch checkpoints of the head phase
        row = {"epoch": epoch + 1, "loss": loss_sum / n, "accuracy": hits / n,
               "lr": optimizer.param_groups[0]["lr"], "phase": "head"}  # fmt: skip
        if x_val is not None:
            head.eval()
            with torch.no_grad():
                logits = head(x_val)
                row["val_loss"] = loss_from_logits(logits, y_val)
                row["val_accuracy"] = float(correct_count(logits, y_val)) / max(1, len(y_val))
            monitored = row["val_loss"] if t.monitor == "val_loss" else -row["val_accuracy"]
            if t.early_stopping and monitored < best[0]:
                best = (monitored, copy.deepcopy(head.state_dict()))
        history.append(row)
        state.epoch = epoch + 1
        for cb in cbs:
            cb.on_epoch_end(state, row)
        log.info("head epoch %d/%d  loss %.4f  acc %.2f%%%s", epoch + 1, t.epochs, row["loss"],
                 100 * row["accuracy"], f"  val_loss {row['val_loss']:.4f}  val_acc "
                 f"{100 * row['val_accuracy']:.2f}%" if "val_loss" in row else "")  # fmt: skip
    if best[1] is not None:
        head.load_state_dict(best[1])
    model.eval()
    for cb in cbs:
        cb.on_train_end(state)
    log.info("head trained in %.1f s", time.perf_counter() - head_started)
    return FitResult(history, rt.describe(), time.perf_counter() - started, counts, weighting,
                     state.steps)  # fmt: skip
