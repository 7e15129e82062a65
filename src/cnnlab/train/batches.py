"""Where the loop's batches come from: images through the whole model, or a transfer model's
cached backbone features through its head.

fit() steps the `module` its source names, on `(x, y)` batches the source makes from the
indices the loop draws; everything else (order, schedule, callbacks, checkpoints, resume,
logs) is the loop's, the same for both. A frozen backbone without augmentation gives the
same pooled features every epoch, so they are computed once (cnnlab.train.features, cached
on disk) and the head trains on them: minutes per epoch become milliseconds.
"""

from __future__ import annotations

import logging
import time

import torch
import torch.nn as nn

from cnnlab.config import Recipe
from cnnlab.data.augment import BatchAugment
from cnnlab.data.dataset import ImageData
from cnnlab.data.preprocess import Preprocess
from cnnlab.evaluate.scores import loss_from_logits
from cnnlab.models.transfer import TransferNet
from cnnlab.runtime.device import Runtime
from cnnlab.runtime.inference import predict_logits
from cnnlab.train import distributed
from cnnlab.train.features import cached_features
from cnnlab.train.losses import correct_count

log = logging.getLogger("cnnlab")


class Pixels:
    """uint8 images on the device, augmented as a batch and normalised with one multiply-add,
    through the whole model."""

    smallest_last = 2  # a last batch of 1 (per process) would upset BatchNorm: it joins the last

    def __init__(self, model: nn.Module, train: ImageData, val: ImageData | None,
                 preprocess: Preprocess, augment: BatchAugment, rt: Runtime) -> None:  # fmt: skip
        self.module, self.train, self.val, self.rt = model, train, val, rt
        self.preprocess, self.augment = preprocess, augment
        self.seconds = 0.0  # spent preparing (nothing to prepare)
        self.images = self.labels = self.affine = None

    def describe(self, name: str) -> str:
        return f"{name} on {len(self.train)} images"

    def to_device(self) -> None:
        self.images = self.train.images.to(self.rt.device)
        self.labels = self.train.labels.to(self.rt.device)
        self.affine = self.preprocess.affine(self.rt.device)

    def batch(self, idx: torch.Tensor, gen: torch.Generator, epoch: int):
        scale, shift = self.affine
        x = self.augment(self.images[idx].float(), gen, idx, epoch) * scale + shift
        if self.rt.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[idx]

    def train_mode(self) -> None:
        self.module.train()
        if hasattr(self.module, "on_train_mode"):
            self.module.on_train_mode()  # e.g. keep a frozen backbone's BatchNorm in eval mode

    def validate(self, batch: int) -> dict[str, float]:
        """With DDP, each rank predicts its part of the validation images."""
        logits = distributed.shard_predict(
            lambda x: predict_logits(self.module, x, self.preprocess, self.rt, batch),
            self.val.images,
        )
        return figures(logits, self.val.labels)


class Features:
    """A transfer model's pooled backbone features, computed once (cached on disk), through its
    head. The head is a few small matrix products: it trains in fp32, whatever the recipe's
    precision (the backbone's features were computed in it)."""

    smallest_last = 1  # the heads have no BatchNorm

    def __init__(self, model: TransferNet, train: ImageData, val: ImageData | None,
                 preprocess: Preprocess, rt: Runtime, batch: int, progress: bool) -> None:  # fmt: skip
        started = time.perf_counter()
        self.x, hit = cached_features(model, train.images, preprocess, rt, batch, progress=progress)
        self.x_val = None
        if val is not None:
            self.x_val, _ = cached_features(model, val.images, preprocess, rt, batch,
                                            progress=progress)  # fmt: skip
        self.seconds = time.perf_counter() - started
        log.info("features %s in %.1f s", "from the cache" if hit else "computed", self.seconds)
        self.module = model.classifier_head()
        self.train, self.val = train, val
        self.rt = Runtime(rt.device, None, False)
        self.y = self.y_val = None

    def describe(self, name: str) -> str:
        return f"the head of {name} on cached features of {len(self.train)} images"

    def to_device(self) -> None:
        device = self.rt.device
        self.x, self.y = self.x.to(device), self.train.labels.to(device)
        if self.val is not None:
            self.x_val, self.y_val = self.x_val.to(device), self.val.labels.to(device)

    def batch(self, idx: torch.Tensor, gen: torch.Generator, epoch: int):
        return self.x[idx], self.y[idx]

    def train_mode(self) -> None:
        self.module.train()

    def validate(self, batch: int) -> dict[str, float]:
        self.module.eval()
        with torch.no_grad():
            return figures(self.module(self.x_val).cpu(), self.val.labels)


def figures(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """val_loss and val_accuracy. val_loss is plain cross-entropy (BCE for one logit), without
    the training loss's label smoothing or class weights: the one definition `evaluate` and the
    model card report too."""
    return {
        "val_loss": loss_from_logits(logits, labels),
        "val_accuracy": float(correct_count(logits, labels)) / max(1, len(labels)),
    }


def on_features(model: nn.Module, recipe: Recipe) -> bool:
    """Whether `recipe` trains `model` on cached features: a transfer model whose backbone is
    frozen, with nothing augmented (the features would change every epoch)."""
    return (
        isinstance(model, TransferNet)
        and model.backbone_frozen
        and recipe.train.feature_cache
        and not BatchAugment(recipe.augment).enabled
    )


def batch_source(model: nn.Module, train: ImageData, val: ImageData | None,
                 preprocess: Preprocess, recipe: Recipe, rt: Runtime,
                 progress: bool) -> Pixels | Features:  # fmt: skip
    if on_features(model, recipe):
        batch = min(64, recipe.train.eval_batch_size)  # the backbone's inference batch
        return Features(model, train, val, preprocess, rt, batch, progress)
    return Pixels(model, train, val, preprocess, BatchAugment(recipe.augment), rt)
