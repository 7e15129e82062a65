"""Datasets by name: torchvision's mirrors, checksums and download code, into cnnlab's cache.

Files are fetched once into `$CNNLAB_DATA` (default `~/.cache/cnnlab`), verified by MD5,
then read by the same local readers a user's own files go through.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import CnnlabError


@dataclass
class Remote:
    mirrors: list[str]
    files: list[tuple[str, str]]  # (file name, md5)
    subdir: str  # where the local reader looks after download (relative to the dataset folder)
    hint: str  # what to pass to --data instead


def _torchvision_table() -> dict[str, Remote]:
    from torchvision.datasets import CIFAR10, MNIST, FashionMNIST

    return {
        "mnist": Remote(
            list(MNIST.mirrors),
            list(MNIST.resources),
            ".",
            "a folder holding train-images-idx3-ubyte.gz etc.",
        ),
        "fashion-mnist": Remote(
            list(FashionMNIST.mirrors),
            list(FashionMNIST.resources),
            ".",
            "a folder holding the Fashion-MNIST IDX files (apt-get install dataset-fashion-mnist "
            "puts them in /usr/share/datasets/fashion-mnist)",
        ),
        "cifar10": Remote(
            [CIFAR10.url.rsplit("/", 1)[0] + "/"],
            [(CIFAR10.filename, CIFAR10.tgz_md5)],
            CIFAR10.base_folder,
            "a folder of CIFAR-10 python batches or an image folder root/<split>/<class>/*.png",
        ),
    }


REMOTES: dict[str, Remote] = {}
NAMES = ("mnist", "fashion-mnist", "cifar10")


def remote(name: str) -> Remote:
    if not REMOTES:
        REMOTES.update(_torchvision_table())
    return REMOTES[name]


def cache_dir() -> Path:
    return Path(os.environ.get("CNNLAB_DATA") or Path.home() / ".cache" / "cnnlab")


def fetch(name: str) -> Path:
    """Make sure dataset `name` is in the cache, downloading and checking it if needed."""
    from torchvision.datasets.utils import check_integrity, download_url, extract_archive

    spec = remote(name)
    root = cache_dir() / name
    missing = [(f, md5) for f, md5 in spec.files if not check_integrity(str(root / f), md5)]
    if not missing:
        return root / spec.subdir
    from cnnlab.net import reachable  # here: `cnnlab cache --help` reads this package

    mirrors = [m for m in spec.mirrors if reachable(m)]
    if not mirrors:
        raise CnnlabError(
            f"cannot download {name}: no network connection to {', '.join(spec.mirrors)}. "
            f"Offline, point --data at {spec.hint}"
        )
    for filename, md5 in missing:
        last_error: Exception | None = None
        for mirror in mirrors:
            try:
                download_url(mirror + filename, str(root), filename=filename, md5=md5)
                break
            except Exception as e:  # torchvision raises URLError, RuntimeError (checksum), ...
                last_error = e
                (root / filename).unlink(missing_ok=True)
        else:
            raise CnnlabError(f"downloading {name} file {filename} failed: {last_error}")
        if filename.endswith((".tar.gz", ".tgz", ".zip")):
            extract_archive(str(root / filename), str(root))
    return root / spec.subdir
