"""One entry point for every data source: a name, or a path read by the reader that knows it."""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.data import download
from cnnlab.data.archives import extract_archive, is_archive
from cnnlab.data.dataset import ImageData, LoadedData
from cnnlab.data.images import fit_image, match_channels
from cnnlab.data.readers import FORMATS_HELP, find_reader, readers
from cnnlab.errors import CnnlabError


def resolve_path(source: str) -> Path:
    """A dataset name is fetched into the cache; anything else must be an existing path."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    name = source.lower().replace("_", "-")  # fashion_mnist is fashion-mnist
    if name in download.NAMES:
        return download.fetch(name)
    import difflib

    near = difflib.get_close_matches(name, download.NAMES, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]}? " if near else ""
    raise CnnlabError(
        f"data path not found: {source} ({hint}give a folder or file, or one of: {', '.join(download.NAMES)})"
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

    The path is read by the first reader of `cnnlab.data.readers` that recognises it; an
    archive (.tar.gz, .tgz, .zip) of an image folder is extracted once into the cache.
    """
    path = resolve_path(source)
    if is_archive(path):
        path = extract_archive(path)
    reader = find_reader(path)
    if reader is None:
        if path.is_file():
            files = " or ".join(r.suffix for r in readers() if r.suffix)
            raise CnnlabError(
                f"unsupported data file {path.name}: expected a folder or a {files} ({FORMATS_HELP})"
            )
        if not path.is_dir():
            raise CnnlabError(f"data path is neither a file nor a folder: {path}")
        raise CnnlabError(f"no dataset found in {path}: expected {FORMATS_HELP}")
    loaded = reader.load(path, split, image_size, color_mode, resize, cache)
    for name, data in loaded.splits.items():  # a no-op where the reader fitted them already
        loaded.splits[name] = _conform(data, image_size, color_mode, resize)
    return loaded


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
