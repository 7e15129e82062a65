"""Whole datasets in memory: one uint8 tensor (N, C, H, W), int64 labels and class names."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.errors import CnnlabError

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class ImageData:
    """One split. uint8 keeps 50,000 CIFAR images in 150 MB; batches are converted on the fly."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    classes: list[str]
    paths: list[str] | None = None  # source file of each image, when there is one

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N,C,H,W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must have one entry per image")
        self.labels = self.labels.to(torch.int64)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def size(self) -> tuple[int, int]:
        return (self.images.shape[2], self.images.shape[3])

    def subset(self, index: torch.Tensor) -> ImageData:
        index = torch.as_tensor(index, dtype=torch.long)
        paths = [self.paths[i] for i in index.tolist()] if self.paths is not None else None
        return ImageData(self.images[index], self.labels[index], list(self.classes), paths)

    def class_counts(self) -> dict[str, int]:
        counts = Counter(self.labels.tolist())
        return {name: counts.get(i, 0) for i, name in enumerate(self.classes)}

    def remap_classes(self, target: list[str]) -> ImageData:
        """Relabel to another class order, matching by name (never by folder order)."""
        unknown = [c for c in self.classes if c not in target]
        present = set(self.labels.unique().tolist())
        unknown = [c for i, c in enumerate(self.classes) if c in unknown and i in present]
        if unknown:
            raise ValueError(unknown)
        lut = torch.tensor([target.index(c) if c in target else -1 for c in self.classes])
        return ImageData(self.images, lut[self.labels], list(target), self.paths)


def concat(parts: list[ImageData]) -> ImageData:
    paths = None
    if all(p.paths is not None for p in parts):
        paths = [x for p in parts for x in p.paths]  # type: ignore[union-attr]
    return ImageData(
        torch.cat([p.images for p in parts]),
        torch.cat([p.labels for p in parts]),
        list(parts[0].classes),
        paths,
    )


@dataclass
class LoadedData:
    """What a source gave: its splits, the format detected, and files it had to skip."""

    splits: dict[str, ImageData]
    format: str
    source: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def classes(self) -> list[str]:
        return next(iter(self.splits.values())).classes


def from_arrays(
    arrays: dict[str, tuple[torch.Tensor, torch.Tensor]],
    classes: list[str],
    fmt: str,
    path: Path,
    split: str | None,
) -> LoadedData:
    """(images, labels) per split as LoadedData; `split` keeps only that one (it must be there)."""
    if split is not None:
        if split not in arrays:
            have = ", ".join(sorted(arrays)) or "none"
            hint = " (IDX test files are named t10k-*)" if fmt == "idx" else ""
            raise CnnlabError(f"{path} has no '{split}' split (found: {have}){hint}")
        arrays = {split: arrays[split]}
    splits = {}
    for name, (images, labels) in arrays.items():
        if len(labels) and int(labels.max()) >= len(classes):
            raise CnnlabError(f"{path}: label {int(labels.max())} but only {len(classes)} classes")
        splits[name] = ImageData(images, labels, list(classes))
    return LoadedData(splits=splits, format=fmt, source=str(path))
