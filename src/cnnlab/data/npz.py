"""MedMNIST-style `.npz`: `{train,val,test}_images` and `{train,val,test}_labels` arrays."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.dataset import LoadedData, from_arrays
from cnnlab.errors import CnnlabError


def load_npz(path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every split present in the file, as uint8 (N, C, H, W) images and int64 labels."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise CnnlabError(f"cannot read {path} as a .npz archive: {e}") from None
    out = {}
    with archive:
        for split in ("train", "val", "test"):
            if f"{split}_images" not in archive.files:
                continue
            if f"{split}_labels" not in archive.files:
                raise CnnlabError(f"{path} has {split}_images but no {split}_labels")
            images = np.asarray(archive[f"{split}_images"])
            labels = np.asarray(archive[f"{split}_labels"])
            if images.ndim == 3:
                images = images[:, None]
            elif images.ndim == 4 and images.shape[-1] in (1, 3):
                images = images.transpose(0, 3, 1, 2)
            else:
                raise CnnlabError(
                    f"{path}: {split}_images has shape {images.shape}, expected (N,H,W[,C])"
                )
            if images.dtype != np.uint8:
                raise CnnlabError(f"{path}: {split}_images must be uint8, got {images.dtype}")
            if labels.ndim == 2 and labels.shape[1] == 1:
                labels = labels[:, 0]
            if labels.ndim != 1 or len(labels) != len(images):
                raise CnnlabError(
                    f"{path}: {split}_labels has shape {labels.shape} for {len(images)} images "
                    "(multi-label tasks are not supported)"
                )
            out[split] = (
                torch.from_numpy(np.ascontiguousarray(images)),
                torch.from_numpy(labels.astype(np.int64)),
            )
    if not out:
        raise CnnlabError(f"{path} holds no train_images/val_images/test_images arrays")
    return out


def load_npz_source(path: Path, split: str | None = None, *_: object) -> LoadedData:
    """The `npz` reader: classes are the label numbers (name them with data.class_names)."""
    arrays = load_npz(path)
    n = int(max(int(labels.max()) for _, labels in arrays.values() if len(labels)) + 1)
    return from_arrays(arrays, [str(i) for i in range(n)], "npz", path, split)
