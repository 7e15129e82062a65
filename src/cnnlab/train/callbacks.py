"""Small callbacks for what cuts across the loop: history, TensorBoard, checkpoints, early
stopping.

The loop hands each callback a row of figures after every epoch (`on_epoch_end`) and calls
`on_step_end` after every step: every `state.log_every` steps with a step row (step,
fractional epoch, the mean loss and accuracy of the steps since the last row, learning rate).
Each callback keeps its own state and can save/restore it, so `--resume` continues exactly
(checkpoints themselves: cnnlab.train.checkpoint).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_text
from cnnlab.report.figures import curves_figure, save_figure
from cnnlab.report.runs import HISTORY, STEPS

log = logging.getLogger("cnnlab")


@dataclass
class FitState:
    """What the loop shares with callbacks."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    epochs: int
    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)
    stop: bool = False
    seconds: float = 0.0  # training time before this process (a resumed run's earlier part)
    position: dict[str, Any] | None = None  # where a resumed epoch stands (mid-epoch checkpoint)
    step: int = 0  # optimiser steps done
    steps: list[dict[str, float]] = field(default_factory=list)  # step rows so far
    total_steps: int = 0
    log_every: int = 1  # steps per step row


class Callback:
    def on_train_start(self, state: FitState) -> None: ...
    def on_step_end(
        self,
        state: FitState,
        row: dict[str, float] | None,
        position: Callable[[], dict[str, Any]] | None,
    ) -> None:
        """After each step. `row` is the step row every `state.log_every` steps (None between);
        `position()` says where the epoch stands, for a mid-epoch checkpoint (None after an
        epoch's last step, whose checkpoint comes at the epoch's end)."""

    def on_epoch_end(self, state: FitState, row: dict[str, float]) -> None: ...
    def on_train_end(self, state: FitState) -> None: ...
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class WeightAverage(Callback):
    """An exponential moving average of the weights (and BatchNorm statistics), updated after
    every step and put into the model when training ends. The last steps of a run wander around
    a minimum; their average sits nearer its middle, and judges new images more steadily than
    whichever step came last. The decay warms up ((1 + k) / (10 + k) after k steps) so the
    first, random weights are soon forgotten."""

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.steps = 0
        self.shadow: dict[str, torch.Tensor] | None = None

    def on_train_start(self, state: FitState) -> None:
        if self.shadow is None:  # (restored from a checkpoint otherwise)
            self.shadow = {k: v.detach().clone() for k, v in state.model.state_dict().items()}

    def on_step_end(self, state: FitState, row: dict | None, position: Callable | None) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        current = state.model.state_dict()
        floats = [k for k, v in self.shadow.items() if v.is_floating_point()]
        averaged = [self.shadow[k] for k in floats]
        torch._foreach_mul_(averaged, d)
        torch._foreach_add_(averaged, [current[k].detach() for k in floats], alpha=1 - d)
        for k, v in self.shadow.items():
            if not v.is_floating_point():  # e.g. BatchNorm's step counter
                v.copy_(current[k])

    def on_train_end(self, state: FitState) -> None:
        if self.shadow is not None and self.steps:
            state.model.load_state_dict(self.shadow)
            log.info("weights: the moving average of the last ~%d steps (decay %g)",
                     round(1 / (1 - self.decay)), self.decay)  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.shadow = state["shadow"]


class Lookahead(Callback):
    """airbench's lookahead (Zhang et al. 2019, as hlb-CIFAR10 and airbench schedule it): from
    `start` of the steps on, every `every` steps the weights (and BatchNorm statistics) move to
    a slow average of themselves, `slow += (1 - rho) * (fast - slow)`, and training goes on
    from there. rho grows as the cube of the run's progress, so the early steps move freely and
    the last ones are averaged strongly; at each epoch's end the model takes the slow weights,
    which are what validation and the bundle see."""

    def __init__(self, start: float = 0.3, every: int = 5, base: float = 0.95) -> None:
        self.start, self.every, self.base = start, every, base
        self.slow: dict[str, torch.Tensor] | None = None

    def _floats(self, state: FitState) -> list[tuple[torch.Tensor, torch.Tensor]]:
        current = state.model.state_dict()
        return [(self.slow[k], current[k]) for k in self.slow]

    def on_step_end(self, state: FitState, row: dict | None, position: Callable | None) -> None:
        k, total = state.step, max(1, state.total_steps)
        if k >= self.start * total and k % self.every == 0:
            if self.slow is None:
                self.slow = {name: v.detach().clone() for name, v in
                             state.model.state_dict().items() if v.is_floating_point()}  # fmt: skip
            else:
                rho = self.base**self.every * (k / total) ** 3
                with torch.no_grad():
                    for slow, fast in self._floats(state):
                        slow.lerp_(fast, 1 - rho)
                        fast.copy_(slow)
        if position is None and self.slow is not None:  # the epoch's last step
            with torch.no_grad():
                for slow, fast in self._floats(state):
                    fast.copy_(slow)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": self.slow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.slow = state["slow"]


class LateFreeze(Callback):
    """FreezeOut (Brock et al. 2017): late in training the first layers stop learning, so each
    step's backward pass ends before reaching them. On a CPU the backward pass is most of a
    step, and the first layers, at full resolution, are its dearest part: with
    fashion_mnist_94's group1 frozen a bare step on 2 AVX2 cores is 21-31% cheaper (two
    timings), with group1 and group2 46%. By then the one-cycle schedule has cooled and those
    layers barely move anyway.

    `plan` maps a layer (a name as `cnnlab summary` prints it, or its start: `group1` covers
    group1_conv1 to group1_act2) to the epochs it trains for; then it and every layer before it
    (in the model's order) freeze. Decided by the epoch count alone, so a resumed run freezes
    alike; every parameter frozen here is trainable again when training ends."""

    def __init__(self, model: nn.Module, plan: dict[str, int]) -> None:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.stages: list[tuple[int, str, list[nn.Parameter]]] = []
        for layer, epochs in plan.items():
            hits = [i for i, (n, _) in enumerate(named) if _names_layer(n, layer)]
            if not hits:
                layers = dict.fromkeys(_short(n).split(".")[0] for n, _ in named)
                raise CnnlabError(f"train.freeze_after: no trainable layer is called {layer!r}; "
                                  f"the model's are {', '.join(layers)}")  # fmt: skip
            self.stages.append((epochs, layer, [p for _, p in named[: hits[-1] + 1]]))
        self.frozen: list[nn.Parameter] = []

    def _apply(self, state: FitState) -> None:
        for epochs, layer, params in self.stages:
            fresh = [p for p in params if p.requires_grad]
            if state.epoch >= epochs and fresh and state.epoch < state.epochs:
                for p in fresh:
                    p.requires_grad_(False)
                    p.grad = None  # the optimiser skips it: no step, no weight decay
                self.frozen += fresh
                log.info("from epoch %d on, %s and the layers before it are frozen (%d tensors)",
                         state.epoch + 1, layer, len(params))  # fmt: skip

    def on_train_start(self, state: FitState) -> None:
        for epochs, layer, _ in self.stages:
            if epochs >= state.epochs:
                log.info("train.freeze_after.%s: %d epochs is the whole run (train.epochs %d), "
                         "so it never freezes", layer, epochs, state.epochs)  # fmt: skip
        self._apply(state)  # a resumed run past the freezing point

    def on_epoch_end(self, state: FitState, row: dict[str, float]) -> None:
        self._apply(state)

    def on_train_end(self, state: FitState) -> None:
        for p in self.frozen:
            p.requires_grad_(True)
        self.frozen = []


def _short(name: str) -> str:
    """A parameter's name without the model's features./head. prefix, as summaries show it."""
    for root in ("features.", "head."):
        if name.startswith(root):
            return name[len(root) :]
    return name


def _names_layer(name: str, layer: str) -> bool:
    return any(n == layer or n.startswith((layer + ".", layer + "_")) for n in (name, _short(name)))


class EarlyStopping(Callback):
    """Stop after `patience` epochs without improvement, then put the best weights back."""

    def __init__(self, patience: int, monitor: str = "val_loss") -> None:
        self.patience, self.monitor = patience, monitor
        self.best = math.inf if monitor.endswith("loss") else -math.inf
        self.best_epoch = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    def _better(self, value: float) -> bool:
        return value < self.best if self.monitor.endswith("loss") else value > self.best

    def on_epoch_end(self, state: FitState, row: dict[str, float]) -> None:
        value = row.get(self.monitor)
        if value is None:
            return
        if self._better(value):
            self.best, self.best_epoch = value, int(row["epoch"])
            self.best_weights = copy.deepcopy(
                {k: v.detach().cpu() for k, v in state.model.state_dict().items()}
            )
        elif self.patience and int(row["epoch"]) - self.best_epoch >= self.patience:
            log.info(
                "early stopping: %s has not improved for %d epochs", self.monitor, self.patience
            )
            state.stop = True

    def on_train_end(self, state: FitState) -> None:
        if (
            self.best_weights is not None
            and state.history
            and int(state.history[-1]["epoch"]) != self.best_epoch
        ):
            log.info(
                "restoring the best weights (epoch %d, %s %.4f)",
                self.best_epoch,
                self.monitor,
                self.best,
            )
            state.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.best_weights = (
            state["best"],
            state["best_epoch"],
            state["best_weights"],
        )


class HistoryWriter(Callback):
    """`history.jsonl` (one line per epoch), `steps.jsonl` (the step rows) and `curves.png`."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def on_epoch_end(self, state: FitState, row: dict[str, float]) -> None:
        write_history(self.out_dir, state.history, state.steps, figure=False)

    def on_train_end(self, state: FitState) -> None:
        if state.history:
            write_history(self.out_dir, state.history, state.steps)


def write_history(
    out_dir: Path, history: list[dict], steps: list[dict], figure: bool = True
) -> None:
    """history.jsonl, steps.jsonl and (with `figure`) curves.png of a run, each atomically."""
    atomic_write_text(out_dir / HISTORY, "".join(json.dumps(r) + "\n" for r in history))
    atomic_write_text(out_dir / STEPS, "".join(json.dumps(r) + "\n" for r in steps))
    if figure and history:
        save_figure(curves_figure(history, steps), out_dir / "curves.png")


class TensorBoardLogger(Callback):
    """TensorBoard event files in the run folder (`tensorboard --logdir runs` lists each run):
    per step `loss/train_step`, `accuracy/train_step`, `lr`; per epoch `loss/train`, `loss/val`,
    `accuracy/train`, `accuracy/val`, `epoch`; the resolved recipe as text; at the end
    (`add_images`) the run's figures. Every scalar is on the global step axis (Lightning's
    way), so phases continue one another and a resumed run purges what it repeats (events
    past its checkpoint's step, which the run that was cut logged and this one logs again).

    One logger can follow several fits (a transfer run's phases): each continues the steps."""

    def __init__(self, log_dir: Path, recipe_text: str = "") -> None:
        self.log_dir, self.recipe_text = Path(log_dir), recipe_text
        self.writer = None  # opened at the first event
        self.fits = 0
        self.start = 0  # global step this process started from (a resumed run's checkpoint's)
        self.base = 0  # global step of this fit's step 0
        self.last = 0  # the last global step reached
        self.epoch_base = 0
        self.last_epoch = 0

    def _open(self):
        if self.writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:  # tensorboard is a dependency; a broken install only warns
                log.warning("no TensorBoard logs: %s (pip install tensorboard)", e)
                self.writer = False
                return self.writer
            # a resumed run: later events of the cut run go (they are logged again)
            self.writer = SummaryWriter(str(self.log_dir), purge_step=self.start + 1 if self.start else None)  # fmt: skip
            if self.recipe_text:
                self.writer.add_text("recipe", "```yaml\n" + self.recipe_text + "\n```", 0)
        return self.writer

    def on_train_start(self, state: FitState) -> None:
        if self.fits:  # a later phase: its steps and epochs come after the last ones reached
            self.base, self.epoch_base = self.last, self.last_epoch
        self.fits += 1
        if self.writer is None:
            self.start = self.base + state.step

    def on_step_end(self, state: FitState, row: dict | None, position: Callable | None) -> None:
        if row is None or not self._open():
            return
        self.last = step = self.base + int(row["step"])
        self.writer.add_scalar("loss/train_step", row["loss"], step)
        self.writer.add_scalar("accuracy/train_step", row["accuracy"], step)
        self.writer.add_scalar("lr", row["lr"], step)

    def on_epoch_end(self, state: FitState, row: dict[str, float]) -> None:
        if not self._open():
            return
        self.last = step = max(self.last, self.base + state.step)
        self.last_epoch = epoch = self.epoch_base + int(row["epoch"])
        self.writer.add_scalar("epoch", epoch, step)
        for key, tag in (("loss", "loss/train"), ("accuracy", "accuracy/train"),
                         ("val_loss", "loss/val"), ("val_accuracy", "accuracy/val")):  # fmt: skip
            if key in row:
                self.writer.add_scalar(tag, row[key], step)
        self.writer.flush()

    def on_train_end(self, state: FitState) -> None:
        # a fit resumed after its end logs nothing: the next phase still starts after it
        self.last = max(self.last, self.base + state.step)
        self.last_epoch = max(self.last_epoch, self.epoch_base + state.epoch)

    def add_images(self, paths: list[Path]) -> None:
        """The run's figures (PNG files that exist) as images at the last step."""
        if not self._open():
            return
        import numpy as np
        from PIL import Image

        for path in paths:
            if path.is_file():
                with Image.open(path) as im:
                    pixels = np.asarray(im.convert("RGB"))
                self.writer.add_image(path.stem, pixels, self.last, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer:
            self.writer.close()
        self.writer = None
