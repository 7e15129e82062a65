"""One entry point for every data source: a name, or a path whose format is detected."""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.data import download
from cnnlab.data.archives import extract_archive, is_archive
from cnnlab.data.cifar import find_cifar_root, load_cifar_split
from cnnlab.data.dataset import ImageData, LoadedData
from cnnlab.data.folder import is_image_folder, load_image_folder
from cnnlab.data.idx import FASHION_CLASSES, IDX_STEMS, MNIST_CLASSES, find_idx_pair, load_idx_split
from cnnlab.data.images import fit_image, match_channels
from cnnlab.data.npz import load_npz
from cnnlab.errors import CnnlabError

FORMATS_HELP = (
    "IDX files (train-images-idx3-ubyte[.gz], t10k-...), CIFAR-10 python batches, "
    "an image folder (root/<class>/* or root/<split>/<class>/*, or a .tar.gz/.zip of one) "
    "or a MedMNIST .npz"
)


def resolve_path(source: str) -> Path:
    """A dataset name is fetched into the cache; anything else must be an existing path."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    if source.lower() in download.NAMES:
        return download.fetch(source.lower())
    raise CnnlabError(
        f"data path not found: {source} (give a folder or file, or one of: {', '.join(download.NAMES)})"
    )


def load_source(
    source: str,
    split: str | None = None,
    image_size: list[int] | None = None,
    color_mode: str = "auto",
    resize: str = "stretch",
    cache: bool = True,
) -> LoadedData:
    """Load `split` (or every split present) of a source, as uint8 tensors at one size and mode.

    An archive (.tar.gz, .tgz, .zip) of an image folder is extracted once into the cache.
    """
    path = resolve_path(source)
    if is_archive(path):
        path = extract_archive(path)
    if path.is_file():
        if path.suffix.lower() == ".npz":
            arrays = load_npz(path)
            loaded = _from_tensors(
                arrays, [str(i) for i in range(_num_classes(arrays))], "npz", path, split
            )
        else:
            raise CnnlabError(
                f"unsupported data file {path.name}: expected a folder or a .npz ({FORMATS_HELP})"
            )
    elif not path.is_dir():
        raise CnnlabError(f"data path is neither a file nor a folder: {path}")
    elif any(find_idx_pair(path, s) for s in IDX_STEMS):
        arrays = {s: load_idx_split(*pair) for s in IDX_STEMS if (pair := find_idx_pair(path, s))}
        names = FASHION_CLASSES if "fashion" in str(path.resolve()).lower() else MNIST_CLASSES
        loaded = _from_tensors(arrays, names, "idx", path, split)
    elif (root := find_cifar_root(path)) is not None:
        arrays, classes = {}, None
        for s in ("train", "test"):
            got = load_cifar_split(root, s)
            if got:
                arrays[s] = got[:2]
                classes = got[2]
        loaded = _from_tensors(arrays, classes or [], "cifar10-python", path, split)
    elif is_image_folder(path):
        return load_image_folder(path, split, image_size, color_mode, resize, cache)
    else:
        raise CnnlabError(f"no dataset found in {path}: expected {FORMATS_HELP}")
    for name, data in loaded.splits.items():
        loaded.splits[name] = _conform(data, image_size, color_mode, resize)
    return loaded


def _num_classes(arrays: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> int:
    return int(max(int(labels.max()) for _, labels in arrays.values() if len(labels)) + 1)


def _from_tensors(
    arrays, classes: list[str], fmt: str, path: Path, split: str | None
) -> LoadedData:
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


def _conform(data: ImageData, image_size, color_mode: str, resize: str) -> ImageData:
    images = data.images
    if color_mode == "grayscale":
        images = match_channels(images, 1)
    elif color_mode == "rgb":
        images = match_channels(images, 3)
    if image_size is not None and tuple(image_size) != tuple(images.shape[-2:]):
        images = torch.cat([fit_image(chunk, image_size, resize) for chunk in images.split(4096)])
    if images is data.images:
        return data
    return ImageData(images, data.labels, data.classes, data.paths)
