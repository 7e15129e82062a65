"""Training transfer models in phases: the head first, then optional fine-tuning.

Phase 1 trains the head with the backbone frozen as the model says. With the backbone
frozen and no augmentation in this phase, fit() trains the head on the backbone's pooled
features, computed once and cached on disk (cnnlab.train.batches); with augmentation on,
the frozen model trains on augmented images. When a fine-tuning phase follows (and
`finetune.augment` is on), the augment section is that phase's, and phase 1 runs without it.
Phase 2 (recipe `finetune.epochs` > 0): the chosen stages are unfrozen and the whole model
trains through fit(), with a lower learning rate for the backbone (`param_groups`), its files
(history, checkpoint) in the run's `finetune/` folder. `--resume` continues either phase: a
finished phase 1 is restored from its last checkpoint and phase 2 goes on from its own.
Models that are not transfer models go straight to fit().
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import torch.nn as nn

from cnnlab.config import AugmentConfig, Recipe
from cnnlab.data.augment import BatchAugment
from cnnlab.data.prepare import PreparedData
from cnnlab.models.transfer import TransferNet
from cnnlab.train.batches import on_features
from cnnlab.train.callbacks import Callback
from cnnlab.train.checkpoint import CHECKPOINT, check_resumable
from cnnlab.train.fit import FitResult, fit, resume_key

log = logging.getLogger("cnnlab")

FINETUNE = "finetune"  # phase 2's folder inside the run folder


def augment_in_phase_one(recipe: Recipe) -> bool:
    """The augment section belongs to the fine-tuning phase when there is one (and it asks for
    it); otherwise to the only phase."""
    if recipe.finetune.epochs > 0 and recipe.finetune.augment:
        return False
    return BatchAugment(recipe.augment).enabled


def phase_one_recipe(recipe: Recipe) -> Recipe:
    """The recipe of phase 1: without the augment section when that belongs to phase 2."""
    if augment_in_phase_one(recipe) or not BatchAugment(recipe.augment).enabled:
        return recipe
    phase_one = copy.deepcopy(recipe)
    phase_one.augment = AugmentConfig()
    return phase_one


def uses_feature_cache(model: nn.Module, recipe: Recipe) -> bool:
    """Whether phase 1 trains the head on cached backbone features."""
    return on_features(model, phase_one_recipe(recipe))


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
    second_dir = out_dir / FINETUNE if out_dir else None
    if second_dir is not None and not resume:  # a checkpoint of an earlier run's phase 2 goes
        (second_dir / CHECKPOINT).unlink(missing_ok=True)  # (resuming phase 1 re-runs phase 2)
    started = time.perf_counter()
    first = fit(model, data, phase_one_recipe(recipe), out_dir, resume=resume, progress=progress,
                callbacks=callbacks)  # fmt: skip
    for row in first.history:
        row["phase"] = "head" if model.backbone_frozen else "train"
    if ft.epochs == 0:
        return first
    model.freeze("none" if ft.unfreeze == "all" else ft.unfreeze)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("fine-tuning from %s: %s trainable parameters, %d epochs", ft.unfreeze,
             f"{trainable:,}", ft.epochs)  # fmt: skip
    # phase 2's checkpoint exists only once phase 1 has finished (it is removed at a new start)
    resume_second = resume and second_dir is not None and (second_dir / CHECKPOINT).is_file()
    second = fit(model, data, finetune_recipe(recipe), second_dir, resume=resume_second,
                 progress=progress, callbacks=callbacks)  # fmt: skip
    for row in second.history:
        row["phase"] = "finetune"
    done_steps = int(first.steps[-1]["step"]) if first.steps else 0
    steps = first.steps + [{**r, "step": r["step"] + done_steps, "epoch": r["epoch"] + len(first.history)}
                           for r in second.steps]  # fmt: skip
    return FitResult(
        first.history + second.history, second.runtime, time.perf_counter() - started,
        first.class_counts, first.loss_weighting, steps,
    )  # fmt: skip


def check_resume(out_dir: Path, model: nn.Module, recipe: Recipe) -> None:
    """Every checkpoint a `--resume` of this run will read (phase 1's, and phase 2's where it
    has one), verified before anything in the run folder changes."""
    phases = [(out_dir, recipe)]
    if isinstance(model, TransferNet):
        phases = [(out_dir, phase_one_recipe(recipe))]
        if recipe.finetune.epochs and (out_dir / FINETUNE / CHECKPOINT).is_file():
            phases.append((out_dir / FINETUNE, finetune_recipe(recipe)))
    for folder, r in phases:
        check_resumable(folder, resume_key(r), r.train.epochs, model)


def finetune_recipe(recipe: Recipe) -> Recipe:
    """The recipe of phase 2: the finetune section's settings in place of the train section's."""
    r = copy.deepcopy(recipe)
    ft, t = r.finetune, r.train
    t.epochs, t.lr, t.batch_size, t.optimizer = ft.epochs, ft.lr, ft.batch_size, ft.optimizer
    t.weight_decay, t.schedule = ft.weight_decay, ft.schedule
    t.early_stopping = 0
    t.seed = t.seed + 1
    if not ft.augment:
        r.augment = AugmentConfig()
    return r
