"""Readers by table: every kind of data source `--data` may name is one (name, detect, load)
entry, as every model is one entry of the model registry.

`load_source` reads a path with the first reader whose `detect` says yes; the list of formats
in help texts and errors (`formats_help`) and the audit's refusals are derived from the table.
Importing this module loads no torch (the CLI builds its help from it): each reader's own
module is imported when the reader is used. The kinds of single image file (DICOM, JPEG,
PNG, ...) are the other table, `cnnlab.data.images.IMAGE_FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnnlab.data.dataset import LoadedData


@dataclass(frozen=True)
class Reader:
    name: str  # LoadedData.format: "idx", "cifar10-python", "image-folder", "npz"
    describe: str  # for help texts and error messages
    detect: Callable[[Path], bool]
    # (path, split or None, image_size, color_mode, resize, cache) -> LoadedData
    load: Callable[..., LoadedData]
    suffix: str = ""  # a single-file format's suffix (".npz"); "" for folders


_READERS: list[Reader] = []


def register_reader(reader: Reader) -> Reader:
    """Add a reader after those already known (the first whose `detect` says yes reads)."""
    _READERS.append(reader)
    return reader


def readers() -> list[Reader]:
    return list(_READERS)


def find_reader(path: Path) -> Reader | None:
    return next((r for r in _READERS if r.detect(path)), None)


def formats_help() -> str:
    """'IDX files (...), CIFAR-10 python batches, an image folder (...) or a MedMNIST .npz'."""
    names = [r.describe for r in _READERS]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)


# ----------------------------------------------------------------------------- the table


def _has_idx(path: Path) -> bool:
    from cnnlab.data.idx import has_idx

    return path.is_dir() and has_idx(path)


def _load_idx(path: Path, *args) -> LoadedData:
    from cnnlab.data.idx import load_idx_source

    return load_idx_source(path, *args)


def _has_cifar(path: Path) -> bool:
    from cnnlab.data.cifar import find_cifar_root

    return path.is_dir() and find_cifar_root(path) is not None


def _load_cifar(path: Path, *args) -> LoadedData:
    from cnnlab.data.cifar import load_cifar_source

    return load_cifar_source(path, *args)


def _is_image_folder(path: Path) -> bool:
    from cnnlab.data.folder import is_image_folder

    return is_image_folder(path)


def _load_image_folder(path: Path, *args) -> LoadedData:
    from cnnlab.data.folder import load_image_folder

    return load_image_folder(path, *args)


def _is_npz(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".npz"


def _load_npz(path: Path, *args) -> LoadedData:
    from cnnlab.data.npz import load_npz_source

    return load_npz_source(path, *args)


IMAGE_FOLDER = "image-folder"
# fmt: off
for _reader in (
    Reader("idx", "IDX files (train-images-idx3-ubyte[.gz], t10k-...)", _has_idx, _load_idx),
    Reader("cifar10-python", "CIFAR-10 python batches", _has_cifar, _load_cifar),
    Reader(IMAGE_FOLDER, "an image folder (root/<class>/* or root/<split>/<class>/*, or a "
           ".tar.gz/.zip of one)", _is_image_folder, _load_image_folder),
    Reader("npz", "a MedMNIST .npz", _is_npz, _load_npz, suffix=".npz"),
):
    register_reader(_reader)
# fmt: on
FORMATS_HELP = formats_help()
