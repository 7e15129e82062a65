"""The callbacks a recipe lists (`train.callbacks`), built from their settings in one place.

Each name stands for one callback; its settings stay where they were (`train.early_stopping`
is the patience, `train.ema` the decay, ...), and one whose setting is off does nothing, so
the default list (every name) trains as runs did before the list existed. A name left out
turns its callback off whatever its setting. The order is the loop's, not the list's: those
that carry state first (a checkpoint saves them in this order, so checkpoints written before
the list existed still resume), then the freezing, then what writes files. A run's history
is its record (`cnnlab runs`, curves): always written, not listed.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from cnnlab.config import Recipe
from cnnlab.train import distributed
from cnnlab.train.callbacks import (
    Callback,
    EarlyStopping,
    HistoryWriter,
    LateFreeze,
    Lookahead,
    TensorBoardLogger,
    WeightAverage,
)
from cnnlab.train.checkpoint import Checkpointer


def fit_callbacks(
    recipe: Recipe,
    module: nn.Module,
    validating: bool,
    out_dir: Path | None,
    pruner: Callback | None,
    extra: list[Callback],
    resume_key: dict,
) -> tuple[list[Callback], list[Callback]]:
    """(those whose state a checkpoint keeps, all of them in the order the loop calls them)
    for one fit(): `module` is what the optimiser steps, `pruner` the loop's own sampler."""
    t, on = recipe.train, set(recipe.train.callbacks)
    # only with early stopping on are the best epoch's weights put back (model selection on val)
    stopper = (
        EarlyStopping(t.early_stopping, t.monitor) if validating and t.early_stopping else None
    )
    lookahead = Lookahead() if t.lookahead else None
    average = WeightAverage(t.ema) if t.ema else None
    listed = [("early_stopping", stopper), ("", pruner), ("lookahead", lookahead), ("ema", average)]
    stateful = [cb for name, cb in listed if cb is not None and (not name or name in on)] + extra
    every = list(stateful)
    if "freeze_after" in on and t.freeze_after:  # no state of its own: the epochs decide
        every.append(LateFreeze(module, t.freeze_after))
    if out_dir is not None and distributed.is_main():
        every.append(HistoryWriter(out_dir))
        if "checkpoint" in on and t.checkpoint:
            # inside an epoch only with one process: the other ranks' generators are not saved
            minutes = t.checkpoint_minutes if distributed.current() is None else 0.0
            every.append(Checkpointer(out_dir, stateful, {"recipe": resume_key}, minutes))
    return stateful, every


def run_callbacks(recipe: Recipe, out_dir: Path, recipe_text: str) -> list[TensorBoardLogger]:
    """Those that follow a whole run across its phases (one TensorBoard log for all of them)."""
    if "tensorboard" not in recipe.train.callbacks:
        return []
    return [TensorBoardLogger(out_dir, recipe_text)]
