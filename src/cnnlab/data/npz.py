"""MedMNIST-style `.npz`: `{train,val,test}_images` and `{train,val,test}_labels` arrays."""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.dataset import LoadedData, from_arrays
from cnnlab.errors import CnnlabError
from cnnlab.machine import memory_bytes


def _declared(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's shape and dtype from its .npy header, read without reading the array."""
    out = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)  # fmt: skip
                shape, _, dtype = read(f)
            out[info.filename.removesuffix(".npy")] = (shape, dtype)
    return out


def check_sizes(path: Path) -> None:
    """Refuse arrays whose headers claim more than half this machine's memory, or Python
    objects, before numpy allocates what a header claims (a deflated file of a few MB can
    claim terabytes, or fill gigabytes with zeros)."""
    declared = _declared(path)
    total = 0
    for name, (shape, dtype) in declared.items():
        if dtype.hasobject:
            raise CnnlabError(f"{path}: {name} holds Python objects, not numbers")
        total += math.prod(shape) * dtype.itemsize
    room = memory_bytes() // 2
    if total > room:
        name, (shape, _) = max(declared.items(), key=lambda kv: math.prod(kv[1][0]))
        dims = "x".join(f"{d:,}" for d in shape)
        raise CnnlabError(
            f"{path}: {name} ({dims}) and the other arrays would take {total / 1e9:,.1f} GB once "
            f"read; at most half this machine's memory ({room / 1e9:,.1f} GB) is used for data"
        )


def load_npz(path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every split present in the file, as uint8 (N, C, H, W) images and int64 labels; the
    sizes the headers claim are checked first (`check_sizes`)."""
    try:
        check_sizes(path)
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        raise CnnlabError(f"cannot read {path} as a .npz archive: {e}") from None
    try:
        return _splits(path, archive)
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        raise CnnlabError(f"cannot read {path} as a .npz archive: {e}") from None


def _splits(path: Path, archive) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:  # noqa: ANN001
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
