"""Image folders: `root/<class>/*` or `root/<split>/<class>/*`, decoded once into uint8 tensors.

Unreadable files are skipped and reported by path and reason; they never stop a load.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.dataset import ImageData, LoadedData
from cnnlab.data.images import IMAGE_SUFFIXES, ImageReadError, fit_image, read_image
from cnnlab.errors import CnnlabError

SPLIT_ALIASES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def folder_splits(root: Path) -> dict[str, Path]:
    """Map split name to folder: the split layout when every subfolder is a split name."""
    subdirs = _subdirs(root)
    named = {SPLIT_ALIASES[d.name.lower()]: d for d in subdirs if d.name.lower() in SPLIT_ALIASES}
    if named and len(named) == len(subdirs):
        return named
    return {"all": root}


def is_image_folder(root: Path) -> bool:
    if not root.is_dir():
        return False
    for split_dir in folder_splits(root).values():
        for cls in _subdirs(split_dir):
            if any(f.suffix.lower() in IMAGE_SUFFIXES for f in cls.iterdir() if f.is_file()):
                return True
    return False


def list_class_files(split_dir: Path) -> tuple[list[str], list[tuple[Path, str]], list[str]]:
    """Class names (sorted), (file, class) pairs, and the class folders that hold no files."""
    classes, files, empty = [], [], []
    for cls_dir in _subdirs(split_dir):
        members = sorted(
            f for f in cls_dir.rglob("*") if f.is_file() and not f.name.startswith(".")
        )
        classes.append(cls_dir.name)
        if not members:
            empty.append(cls_dir.name)
        files.extend((f, cls_dir.name) for f in members)
    return classes, files, empty


def decode_files(
    files: list[Path],
    color_mode: str,
    size: tuple[int, int] | None,
    resize: str,
    workers: int | None = None,
) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Decode and fit files in parallel threads; returns (arrays, reasons) with None where it failed."""

    def one(path: Path):
        try:
            arr = read_image(path, color_mode)
        except ImageReadError as e:
            return None, str(e)
        if size is not None:
            t = fit_image(torch.from_numpy(arr).permute(2, 0, 1), size, resize)
            arr = t.permute(1, 2, 0).numpy()
        return arr, None

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = list(pool.map(one, files, chunksize=64))
    return [r[0] for r in results], [r[1] for r in results]


def load_image_folder(
    root: str | Path,
    split: str | None = None,
    image_size: list[int] | None = None,
    color_mode: str = "auto",
    resize: str = "stretch",
) -> LoadedData:
    """Load the splits of an image folder (`split` limits to one), all at one size and mode."""
    root = Path(root)
    layout = folder_splits(root)
    if split is not None and "all" not in layout:
        if split not in layout:
            raise CnnlabError(
                f"{root} has no '{split}' folder (it has: {', '.join(sorted(layout))})"
            )
        layout = {split: layout[split]}
    listing = {name: list_class_files(d) for name, d in layout.items()}
    classes = sorted({c for cls, _, _ in listing.values() for c in cls})
    empty = sorted({f"{name}/{c}" for name, (_, _, e) in listing.items() for c in e})
    all_files = [(name, f, c) for name, (_, files, _) in listing.items() for f, c in files]
    if not classes:
        raise CnnlabError(f"{root} holds no class folders (expected {root}/<class>/<image> files)")
    if not all_files:
        raise CnnlabError(f"{root} holds no image files in its class folders")

    size = tuple(image_size) if image_size else None
    arrays, reasons = decode_files([f for _, f, _ in all_files], color_mode, size, resize)
    skipped = [
        (str(f), r) for (_, f, _), r in zip(all_files, reasons, strict=True) if r is not None
    ]
    skipped += [(str(root / e), "empty class folder") for e in empty]
    good = [(i, a) for i, a in enumerate(arrays) if a is not None]
    if not good:
        raise CnnlabError(f"no readable images in {root} ({len(skipped)} files skipped)")
    shapes = {a.shape for _, a in good}
    if len(shapes) > 1:
        if color_mode == "auto" and len({s[:2] for s in shapes}) == 1:
            # mixed gray and colour: promote all to RGB
            good = [(i, np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a) for i, a in good]
        else:
            sizes = sorted({f"{s[1]}x{s[0]}" for s in shapes})[:4]
            raise CnnlabError(
                f"images in {root} differ in size ({', '.join(sizes)}, ...); set data.image_size: [H, W]"
            )
    splits: dict[str, ImageData] = {}
    by_index = dict(good)
    for name in listing:
        idx = [i for i in by_index if all_files[i][0] == name]
        if not idx:
            continue
        stack = np.stack([by_index[i] for i in idx])
        images = torch.from_numpy(stack).permute(0, 3, 1, 2).contiguous()
        labels = torch.tensor([classes.index(all_files[i][2]) for i in idx], dtype=torch.int64)
        paths = [str(all_files[i][1]) for i in idx]
        splits["train" if name == "all" and split is None else (split or name)] = ImageData(
            images, labels, classes, paths
        )
    return LoadedData(splits=splits, format="image-folder", source=str(root), skipped=skipped)
