"""Image folders: `root/<class>/*` or `root/<split>/<class>/*`, decoded once into uint8 tensors.

Class order is the sorted folder names (as Keras), the same in every split and saved in the
bundle. Unreadable files are skipped and reported by path and reason; they never stop a load.
Decoded splits are cached on disk (`cnnlab.data.decode_cache`), so the next load is seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import torch

from cnnlab.data.dataset import ImageData, LoadedData
from cnnlab.data.decode import SplitListing, decode_split
from cnnlab.data.images import IMAGE_SUFFIXES, match_channels
from cnnlab.errors import CnnlabError

log = logging.getLogger("cnnlab")

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
IGNORED_DIRS = {"__MACOSX", "__pycache__"}  # zip and tool debris, never a class


def _subdirs(path: Path) -> list[Path]:
    return sorted(
        p
        for p in path.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in IGNORED_DIRS
    )


def _has_images(path: Path) -> bool:
    return any(f.suffix.lower() in IMAGE_SUFFIXES for f in path.iterdir() if f.is_file())


def find_folder_root(path: Path) -> Path:
    """Step down through single wrapper folders (an archive's `cifar10/`) to the dataset's root."""
    for _ in range(4):
        subs = _subdirs(path) if path.is_dir() else []
        if len(subs) != 1 or subs[0].name.lower() in SPLIT_ALIASES or _has_images(path):
            return path
        if not _subdirs(subs[0]):  # root/<the one class>/<images>
            return path
        path = subs[0]
    return path


def split_folders(root: Path) -> tuple[dict[str, Path], list[Path]]:
    """(split name -> folder, folders ignored); {"all": root} when there are no split folders."""
    subs = _subdirs(root)
    splits = [d for d in subs if d.name.lower() in SPLIT_ALIASES and _subdirs(d)]
    if not splits:
        return {"all": root}, []
    named: dict[str, Path] = {}
    for d in splits:
        key = SPLIT_ALIASES[d.name.lower()]
        if key in named:
            raise CnnlabError(
                f"{root} has two folders for the {key} split: {named[key].name}/ and {d.name}/"
            )
        named[key] = d
    ordered = {k: named[k] for k in ("train", "val", "test") if k in named}
    return ordered, [d for d in subs if d not in splits]


def folder_splits(root: Path) -> dict[str, Path]:
    """Map split name to folder: train/val/test folders, or {"all": root} for root/<class>/*."""
    return split_folders(root)[0]


def is_image_folder(root: Path) -> bool:
    if not root.is_dir():
        return False
    root = find_folder_root(root)
    for split_dir in folder_splits(root).values():
        for cls in _subdirs(split_dir):
            if any(f.suffix.lower() in IMAGE_SUFFIXES for f in cls.rglob("*") if f.is_file()):
                return True
    return False


def _walk(
    folder: str,
    rel: str,
    out: list[tuple[str, os.stat_result]],
    bad: list[tuple[str, str]],
    seen: set[tuple[int, int]],
) -> None:
    """Files under `folder`, sorted, with their stat: plain strings (pathlib is slow for 50k).
    A folder reached twice (a symbolic link loop, `ln -s .. x`) is walked once and the link
    reported in `bad`, as is any entry that cannot be looked at (a link to itself: ELOOP)."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        bad.append((rel, f"cannot list folder: {e.strerror or e}"))
        return
    for e in entries:
        if e.name.startswith("."):
            continue
        where = f"{rel}/{e.name}"
        try:
            if e.is_dir():
                if e.name in IGNORED_DIRS:
                    continue
                st = e.stat()
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    bad.append((where, "symbolic link loop (a folder reached twice); skipped"))
                    continue
                seen.add(key)
                _walk(e.path, where, out, bad, seen)
            elif e.is_file():
                out.append((where, e.stat()))
            elif e.is_symlink():
                bad.append((where, "broken symbolic link"))
        except OSError as err:
            bad.append((where, f"cannot read: {err.strerror or err}"))


def _ancestors(path: Path) -> set[tuple[int, int]]:
    """(device, inode) of `path` and every folder above it: a link back to one is a loop."""
    found = set()
    for p in [path.resolve(), *path.resolve().parents]:
        with contextlib.suppress(OSError):
            st = p.stat()
            found.add((st.st_dev, st.st_ino))
    return found


def scan_split(split_dir: Path) -> SplitListing:
    """List class folders and their files (with sizes and mtimes, the decode cache's key)."""
    listing = SplitListing(split_dir, [], [])
    above = _ancestors(split_dir)
    loops = [
        (d.name, "symbolic link loop (a folder above this one); skipped")
        for d in _subdirs(split_dir)
        if _key(d) in above
    ]
    for k, cls_dir in enumerate(d for d in _subdirs(split_dir) if _key(d) not in above):
        listing.classes.append(cls_dir.name)
        found: list[tuple[str, os.stat_result]] = []
        seen = above | {_key(cls_dir)}
        _walk(str(cls_dir), cls_dir.name, found, listing.other, seen)
        images = 0
        for rel, st in found:
            suffix = os.path.splitext(rel)[1]
            if suffix.lower() in IMAGE_SUFFIXES:
                listing.files.append((rel, st.st_size, st.st_mtime_ns, k))
                images += 1
            else:
                listing.other.append((rel, f"not an image file type ({suffix or 'no suffix'})"))
        if not images:
            listing.empty.append(cls_dir.name)
    listing.other += loops
    for f in sorted(split_dir.iterdir()):
        try:
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                listing.other.append((f.name, "image outside any class folder; ignored"))
            elif f.is_symlink() and not f.exists() and not f.name.startswith("."):
                listing.other.append((f.name, "broken symbolic link (or a link to itself)"))
        except OSError as e:
            listing.other.append((f.name, f"cannot read: {e.strerror or e}"))
    return listing


def _key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def load_image_folder(
    root: str | Path,
    split: str | None = None,
    image_size: list[int] | None = None,
    color_mode: str = "auto",
    resize: str = "stretch",
    cache: bool = True,
    workers: int | None = None,
) -> LoadedData:
    """Load the splits of an image folder (`split` limits to one), all at one size and mode."""
    root = find_folder_root(Path(root))
    layout, ignored = split_folders(root)
    if split is not None and "all" not in layout:
        if split not in layout:
            raise CnnlabError(
                f"{root} has no '{split}' folder (it has: {', '.join(sorted(layout))})"
            )
        layout = {split: layout[split]}
    listings = {name: scan_split(d) for name, d in layout.items()}
    classes = sorted({c for lst in listings.values() for c in lst.classes})
    if not classes:
        raise CnnlabError(f"{root} holds no class folders (expected {root}/<class>/<image> files)")
    if not any(lst.files for lst in listings.values()):
        raise CnnlabError(f"{root} holds no image files in its class folders")

    size = (int(image_size[0]), int(image_size[1])) if image_size else None
    skipped: list[tuple[str, str]] = [(str(d), "not a split folder (train, val, test); ignored")
                                      for d in ignored]  # fmt: skip
    splits: dict[str, ImageData] = {}
    for name, lst in listings.items():
        decoded = decode_split(lst, size, color_mode, resize, cache, workers)
        skipped += [(str(lst.root / rel), why) for rel, why in lst.other + decoded.failed]
        skipped += [(str(lst.root / c), "empty class folder: no image files") for c in lst.empty]
        present = set(decoded.labels.tolist())
        skipped += [(str(lst.root / c), "class folder has no readable image")
                    for k, c in enumerate(lst.classes) if c not in lst.empty and k not in present]  # fmt: skip
        if not len(decoded.labels):
            continue
        lut = torch.tensor([classes.index(c) for c in lst.classes], dtype=torch.int64)
        base = str(lst.root)
        paths = [f"{base}/{rel}" for rel in decoded.files]
        key = "train" if name == "all" and split is None else (split or name)
        splits[key] = ImageData(decoded.images, lut[decoded.labels], list(classes), paths)
    if not splits:
        raise CnnlabError(f"no readable images in {root} ({len(skipped)} files skipped)")
    _same_shape(splits, root, color_mode)
    if skipped:
        log.warning("skipped %d entries in %s (unreadable, not images, or empty class folders); "
                    "`cnnlab audit %s` lists them", len(skipped), root, root)  # fmt: skip
    return LoadedData(splits=splits, format="image-folder", source=str(root), skipped=skipped)


def _same_shape(splits: dict[str, ImageData], root: Path, color_mode: str) -> None:
    """Every split at one size and channel count (auto mode promotes gray splits to RGB)."""
    sizes = {d.size for d in splits.values()}
    if len(sizes) > 1:
        shown = ", ".join(f"{n}: {d.size[1]}x{d.size[0]}" for n, d in splits.items())
        raise CnnlabError(f"the splits of {root} differ in size ({shown}); set data.image_size")
    if len({d.channels for d in splits.values()}) > 1:
        for name, d in splits.items():
            if d.channels == 1:
                images = match_channels(d.images, 3)
                splits[name] = ImageData(images, d.labels, d.classes, d.paths)
