"""CIFAR-10 "python version" batches, read with an unpickler that can only build numpy arrays.

The batches are pickles. A pickle can run any code, so we never hand one to `pickle.load`:
the restricted unpickler below resolves only the few numpy names an array needs.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.dataset import LoadedData, from_arrays
from cnnlab.errors import CnnlabError
from cnnlab.fileio import read_capped

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


def _plain_dtype(*args: object) -> np.dtype:
    """numpy.dtype for the unpickler, numbers only: an object array's elements are pointers
    allocated from its pickled shape alone (10**9 of them, 8 GB, from a few hundred bytes),
    and CIFAR holds only uint8 pixels."""
    dtype = np.dtype(*args)  # type: ignore[call-overload]
    if dtype.hasobject:
        raise pickle.UnpicklingError("refusing an array of Python objects in a data file")
    return dtype


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        if (module, name) == ("numpy", "dtype"):
            return _plain_dtype
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def safe_unpickle(path: Path) -> object:
    """A CIFAR batch, read capped (`read_capped`) and unpickled with numbers-only arrays."""
    try:
        data = read_capped(path)
    except OSError as e:
        raise CnnlabError(f"{path} cannot be read: {e}") from None
    try:
        return _ArrayOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
    ) as e:
        raise CnnlabError(f"{path} is not a CIFAR python batch: {e}") from None


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    entry = safe_unpickle(path)
    if not isinstance(entry, dict):
        raise CnnlabError(f"{path} is not a CIFAR python batch (no dictionary inside)")
    data = entry.get("data", entry.get(b"data"))
    labels = entry.get("labels", entry.get(b"labels", entry.get("fine_labels")))
    if data is None or labels is None:
        raise CnnlabError(f"{path} is not a CIFAR python batch (no data/labels)")
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise CnnlabError(
            f"{path}: expected N x 3072 pixels and N labels, got {data.shape} and {len(labels)}"
        )
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def find_cifar_root(folder: Path) -> Path | None:
    for cand in (folder, folder / "cifar-10-batches-py"):
        if (cand / "data_batch_1").is_file() or (cand / "test_batch").is_file():
            return cand
    return None


def load_cifar_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    files = [root / n for n in names if (root / n).is_file()]
    if split not in ("train", "test") or not files:
        return None
    parts = [_read_batch(f) for f in files]
    classes = CIFAR10_CLASSES
    meta = root / "batches.meta"
    if meta.is_file():
        m = safe_unpickle(meta)
        if isinstance(m, dict) and "label_names" in m:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in m["label_names"]]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return images, labels, classes


def load_cifar_source(folder: Path, split: str | None = None, *_: object) -> LoadedData:
    """The `cifar10-python` reader: data_batch_1..5 and test_batch, with batches.meta's names."""
    root = find_cifar_root(folder)
    arrays, classes = {}, None
    for s in ("train", "test"):
        got = load_cifar_split(root, s) if root is not None else None
        if got:
            arrays[s] = got[:2]
            classes = got[2]
    return from_arrays(arrays, classes or [], "cifar10-python", folder, split)
