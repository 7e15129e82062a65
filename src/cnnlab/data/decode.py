"""Decode a split's files once, on every core, into one uint8 (N, C, H, W) tensor cached on disk.

The cache key is the file list with sizes and mtimes, plus size, colour mode and resize policy
(and the decoder versions), so any change to the folder or the recipe decodes afresh. Pixels
stream from worker processes straight into the cache file, which is then memory-mapped:
a set larger than RAM never has to fit in it, and a second load reads nothing it doesn't use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import BinaryIO

import numpy as np
import PIL
import torch

from cnnlab.data.cache import decode_cache_dir, enforce_limit, touch
from cnnlab.data.images import ImageReadError, fit_image, read_image
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_path, atomic_write_text
from cnnlab.machine import MAX_PER_CORE, available_cpus, memory_bytes

log = logging.getLogger("cnnlab")

CACHE_VERSION = 1
PARALLEL_FROM = 64  # fewer files than this decode in-process: starting workers costs more


@dataclass
class SplitListing:
    """What one split folder holds, before anything is decoded."""

    root: Path
    classes: list[str]  # sorted class folder names
    files: list[tuple[str, int, int, int]]  # (path relative to root, bytes, mtime_ns, class index)
    empty: list[str] = field(default_factory=list)  # class folders without image files
    other: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why not read)


@dataclass
class DecodedSplit:
    images: torch.Tensor  # uint8 (N, C, H, W), possibly memory-mapped
    labels: torch.Tensor  # int64 (N,), indices into the listing's classes
    files: list[str]  # relative paths of the decoded images, in order
    failed: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    from_cache: bool = False


class _MixedChannels(Exception):
    """Gray and colour images in one split under color_mode auto: decode again as RGB."""


# ----------------------------------------------------------------------------- one file


def decode_file(
    path: str | Path, color_mode: str, size: tuple[int, int] | None, resize: str
) -> tuple[np.ndarray | None, str | None]:
    """(uint8 (C, H, W), None) or (None, reason): a bad file is a reason, never an exception."""
    try:
        arr = read_image(path, color_mode)
        img = torch.from_numpy(arr).permute(2, 0, 1)
        if size is not None:
            img = fit_image(img, size, resize)
        return np.ascontiguousarray(img.numpy()), None
    except ImageReadError as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - a decoder bug on one file must not stop the load
        return None, f"cannot decode: {type(e).__name__}: {e}"


def _run_chunk(fn: Callable, items: list, args: tuple) -> list:
    return [fn(item, *args) for item in items]


def _init_worker() -> None:
    torch.set_num_threads(1)  # one process per core; also keeps forked OpenMP pools out of the way


def _executor(backend: str, workers: int) -> Executor:
    if backend == "process" and sys.platform.startswith("linux"):
        ctx = mp.get_context("fork")  # workers inherit the imported modules: starts in ms
        return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker)
    return ThreadPoolExecutor(workers)


def parallel_map(
    fn: Callable,
    items: list,
    args: tuple = (),
    workers: int | None = None,
    backend: str = "process",
) -> Iterator:
    """`fn(item, *args)` for each item, in order, in chunks over `workers` processes (or threads).

    `fn` must be a module-level function that never raises (return the error instead).
    At most `MAX_PER_CORE` workers per core (`--workers 100000` would fork until the machine stops)."""
    workers = min(workers or available_cpus(), MAX_PER_CORE * available_cpus())
    n = len(items)
    if workers <= 1 or n < PARALLEL_FROM or backend == "serial":
        for item in items:
            yield fn(item, *args)
        return
    step = max(8, min(256, math.ceil(n / (workers * 8))))
    chunks = [items[i : i + step] for i in range(0, n, step)]
    pool = _executor(backend, workers)
    try:
        for results in pool.map(_run_chunk, [fn] * len(chunks), chunks, [args] * len(chunks)):
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def decode_many(
    paths: list[str] | list[Path],
    color_mode: str,
    size: tuple[int, int] | None,
    resize: str,
    workers: int | None = None,
    backend: str = "process",
) -> Iterator[tuple[np.ndarray | None, str | None]]:
    """Decode files in order, spread over `workers` processes (or threads)."""
    return parallel_map(decode_file, list(paths), (color_mode, size, resize), workers, backend)


# ----------------------------------------------------------------------------- the cache


def cache_key(lst: SplitListing, size: tuple[int, int] | None, color_mode: str, resize: str) -> str:
    head = [CACHE_VERSION, list(size) if size else None, color_mode, resize, lst.classes,
            PIL.__version__, torch.__version__, metadata.version("torchvision")]  # fmt: skip
    body = "".join(f"{rel}\t{nbytes}\t{mtime}\n" for rel, nbytes, mtime, _ in lst.files)
    text = json.dumps(head) + "\n" + body  # file names that are not UTF-8 keep their bytes
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def read_cache(key: str) -> DecodedSplit | None:
    """The cached split for `key`, memory-mapped; None when absent or damaged."""
    folder = decode_cache_dir()
    meta_path, data_path = folder / f"{key}.json", folder / f"{key}.u8"
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("version") != CACHE_VERSION:
            return None
        shape = tuple(int(s) for s in meta["shape"])
        if math.prod(shape):
            if data_path.stat().st_size != math.prod(shape):
                return None
            images = torch.from_numpy(np.memmap(data_path, np.uint8, "c", shape=shape))
        else:
            images = torch.zeros(shape, dtype=torch.uint8)
        labels = torch.tensor(meta["labels"], dtype=torch.int64)
        failed = [(str(a), str(b)) for a, b in meta["failed"]]
        touch(meta_path)  # used now: the size cap removes the least recently used first
        return DecodedSplit(images, labels, list(meta["files"]), failed, from_cache=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def prune_cache(root: str, settings: list, keep: str) -> None:
    """Drop entries for the same folder and settings that `keep` replaces (the folder changed)."""
    for meta_path in decode_cache_dir().glob("*.json"):
        if meta_path.stem == keep:
            continue
        try:
            with meta_path.open() as f:
                head = f.read(4096)  # root and settings come first; no need to parse file lists
            if f'"root": {json.dumps(root)}, "settings": {json.dumps(settings)},' in head:
                meta_path.unlink(missing_ok=True)
                meta_path.with_suffix(".u8").unlink(missing_ok=True)
        except OSError:
            continue


def _writable_cache() -> bool:
    try:
        decode_cache_dir().mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(decode_cache_dir(), os.W_OK)


# ----------------------------------------------------------------------------- a split


class _Sink:
    """Collects decoded images of one shape, in memory or streamed to an open file; the first
    image's size times the number of files must fit where they go (`room`)."""

    def __init__(self, root: Path, color_mode: str, fh: BinaryIO | None, expected: int) -> None:
        self.root, self.color_mode, self.fh = root, color_mode, fh
        self.shape: tuple[int, ...] | None = None
        self.first = ""
        self.parts: list[np.ndarray] = []
        self.count = 0
        self.expected = expected

    def _check_room(self, arr: np.ndarray) -> None:
        need = self.expected * arr.nbytes
        if self.fh is not None:
            room = shutil.disk_usage(decode_cache_dir()).free
            where = f"in the decode cache ({room / 1e6:,.1f} MB free in {decode_cache_dir()})"
        else:
            room = memory_bytes()
            where = f"in memory ({room / 1e6:,.1f} MB here)"
        if need > room:
            c, h, w = arr.shape  # decoded images are (C, H, W)
            raise CnnlabError(
                f"{self.expected} images at {h}x{w}x{c} need {need / 1e6:,.1f} MB {where}: "
                "lower data.image_size, or make room"
            )

    def add(self, arr: np.ndarray, rel: str) -> None:
        if self.shape is None:
            self._check_room(arr)
            self.shape, self.first = arr.shape, rel
        elif arr.shape != self.shape:
            if arr.shape[1:] == self.shape[1:] and self.color_mode == "auto":
                raise _MixedChannels
            raise CnnlabError(
                f"images in {self.root} differ in size ({self.first} is {self.shape[2]}x{self.shape[1]}, "
                f"{rel} is {arr.shape[2]}x{arr.shape[1]}); set data.image_size: [H, W]"
            )
        if self.fh is not None:
            self.fh.write(arr.tobytes())
        else:
            self.parts.append(arr)
        self.count += 1

    def full_shape(self) -> tuple[int, ...]:
        return (self.count, *(self.shape or (1, 1, 1)))


def decode_split(
    lst: SplitListing,
    size: tuple[int, int] | None,
    color_mode: str,
    resize: str,
    cache: bool = True,
    workers: int | None = None,
    backend: str = "process",
) -> DecodedSplit:
    """A listed split as tensors: from the cache when the key matches, else decoded (and cached)."""
    key = cache_key(lst, size, color_mode, resize)
    if cache and (hit := read_cache(key)) is not None:
        return hit
    use_file = cache and _writable_cache()
    if cache and not use_file:
        log.warning("decode cache %s is not writable; decoding in memory", decode_cache_dir())
    if len(lst.files) >= 2000:
        log.info("decoding %d images in %s (once: %s)", len(lst.files), lst.root,
                 f"cached in {decode_cache_dir()}" if use_file else "cache off")  # fmt: skip
    mode = color_mode
    for _ in range(2):
        try:
            return _decode_into(
                lst, size, mode, resize, key if use_file else None, workers, backend
            )
        except _MixedChannels:
            log.info("%s mixes gray and colour images: loading all as RGB", lst.root)
            mode = "rgb"
        except OSError as e:  # the cache disk filled up or went away: carry on without it
            if not use_file:
                raise
            log.warning("cannot write the decode cache (%s); decoding in memory", e)
            use_file = False
    raise AssertionError("unreachable")  # pragma: no cover


def _decode_into(
    lst: SplitListing,
    size: tuple[int, int] | None,
    color_mode: str,
    resize: str,
    key: str | None,
    workers: int | None,
    backend: str,
) -> DecodedSplit:
    base = str(lst.root)
    paths = [f"{base}/{rel}" for rel, *_ in lst.files]
    files: list[str] = []
    labels: list[int] = []
    failed: list[tuple[str, str]] = []
    with contextlib.ExitStack() as stack:
        fh = None
        if key is not None:
            tmp = stack.enter_context(atomic_path(decode_cache_dir() / f"{key}.u8"))
            fh = stack.enter_context(open(tmp, "wb"))  # noqa: SIM115 - closed by the stack
        sink = _Sink(lst.root, color_mode, fh, len(paths))
        decoding = decode_many(paths, color_mode, size, resize, workers, backend)
        results = stack.enter_context(contextlib.closing(decoding))  # stops workers on error
        for (rel, _, _, label), (arr, reason) in zip(lst.files, results, strict=True):
            if arr is None:
                failed.append((rel, reason or "unreadable"))
                continue
            sink.add(arr, rel)
            files.append(rel)
            labels.append(label)
        if fh is not None:
            fh.close()
    shape = sink.full_shape()
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    if key is None:
        images = (torch.from_numpy(np.stack(sink.parts)) if sink.parts
                  else torch.zeros(shape, dtype=torch.uint8))  # fmt: skip
        return DecodedSplit(images, label_tensor, files, failed)
    settings = [list(size) if size else None, color_mode, resize]
    meta = {"version": CACHE_VERSION, "root": str(lst.root), "settings": settings,
            "shape": list(shape), "classes": lst.classes, "files": files, "labels": labels,
            "failed": failed}  # fmt: skip
    atomic_write_text(decode_cache_dir() / f"{key}.json", json.dumps(meta))
    prune_cache(str(lst.root), settings, key)
    enforce_limit(keep=key)
    hit = read_cache(key)
    if hit is None:  # pragma: no cover - written a moment ago
        raise OSError(f"the decode cache {decode_cache_dir()} did not keep {key}")
    hit.from_cache = False
    return hit
