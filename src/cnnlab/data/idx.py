"""IDX files (MNIST, Fashion-MNIST), gzipped or raw, read straight into tensors."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.dataset import LoadedData, from_arrays
from cnnlab.errors import CnnlabError
from cnnlab.fileio import MAX_FILE_ENV, MIB, max_file_bytes, read_capped

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# The stems torchvision and Keras use; `t10k` is the test split.
IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


def _gunzip_capped(raw: bytes, limit: int, path: Path) -> bytes:
    """Every gzip member of `raw` inflated, refused as soon as the output passes `limit` (a
    10 MB gzip of zeros inflates to 10 GB)."""
    out, rest = bytearray(), raw
    while rest:
        inflate = zlib.decompressobj(wbits=31)
        out += inflate.decompress(rest, limit + 1 - len(out))
        if len(out) > limit or inflate.unconsumed_tail:
            raise CnnlabError(
                f"cannot read IDX file {path}: it inflates to over the {limit // MIB:,} MB limit "
                f"on one file (raise it with --max-file-mb or {MAX_FILE_ENV})"
            )
        if not inflate.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
        rest = inflate.unused_data
    return bytes(out)


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file; a wrong magic number or a truncated file is a clear error. Read
    capped (`read_capped`), inflated capped, and the header's shape checked before it is used."""
    path = Path(path)
    limit = max_file_bytes()
    try:
        raw = read_capped(path, limit)
        if raw[:2] == b"\x1f\x8b":
            raw = _gunzip_capped(raw, limit, path)
    except (OSError, EOFError, zlib.error) as e:
        raise CnnlabError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise CnnlabError(
            f"{path} is not an IDX file (wrong magic number {raw[:4].hex() or 'empty'})"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise CnnlabError(f"{path} is truncated: its IDX header is incomplete")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[raw[2]])
    count = math.prod(shape)  # Python's integers: np.prod wraps past 2**63 (to 0, say)
    expected = count * dtype.itemsize
    if len(raw) - header < expected:
        raise CnnlabError(
            f"{path} is truncated: header says {shape} ({expected} bytes of data), file has {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)


def find_idx_pair(folder: Path, split: str) -> tuple[Path, Path] | None:
    """The (images, labels) files of a split in `folder`, accepting .gz or raw and -/. spellings."""
    stems = IDX_STEMS.get(split)
    if stems is None:
        return None
    found = []
    for stem in stems:
        candidates = [stem, stem.replace("-idx", ".idx")]
        hit = next(
            (
                folder / (c + ext)
                for c in candidates
                for ext in (".gz", "")
                if (folder / (c + ext)).is_file()
            ),
            None,
        )
        if hit is None:
            return None
        found.append(hit)
    return found[0], found[1]


def load_idx_split(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise CnnlabError(
            f"{images_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise CnnlabError(
            f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}"
        )
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def has_idx(folder: Path) -> bool:
    return any(find_idx_pair(folder, s) for s in IDX_STEMS)


def load_idx_source(folder: Path, split: str | None = None, *_: object) -> LoadedData:
    """The `idx` reader: train-* and t10k-* pairs; Fashion-MNIST's names when the path says so."""
    arrays = {s: load_idx_split(*pair) for s in IDX_STEMS if (pair := find_idx_pair(folder, s))}
    names = FASHION_CLASSES if "fashion" in str(folder.resolve()).lower() else MNIST_CLASSES
    return from_arrays(arrays, names, "idx", folder, split)
