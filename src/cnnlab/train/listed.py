"""The callbacks of one fit(), built from the recipe's settings in one place (set_up asks).

The order is the loop's: the callbacks that carry state come first (a checkpoint saves them,
in this order), then the freezing, then what writes files.
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
    t = recipe.train
    # only with early stopping on are the best epoch's weights put back (model selection on val)
    stopper = (
        EarlyStopping(t.early_stopping, t.monitor) if validating and t.early_stopping else None
    )
    lookahead = Lookahead() if t.lookahead else None
    average = WeightAverage(t.ema) if t.ema else None
    stateful = [cb for cb in (stopper, pruner, lookahead, average) if cb is not None] + extra
    every = list(stateful)
    if t.freeze_after:  # no state of its own: the epoch count decides
        every.append(LateFreeze(module, t.freeze_after))
    if out_dir is not None and distributed.is_main():
        every.append(HistoryWriter(out_dir))
        if t.checkpoint:
            # inside an epoch only with one process: the other ranks' generators are not saved
            minutes = t.checkpoint_minutes if distributed.current() is None else 0.0
            every.append(Checkpointer(out_dir, stateful, {"recipe": resume_key}, minutes))
    return stateful, every
