"""What cnnlab keeps on disk to be fast the second time, and the cap on its size.

Under `$CNNLAB_DATA` (default `~/.cache/cnnlab`): `decoded/` (image folders decoded once into
uint8 tensors: CIFAR-10's 50,000 JPEGs, the X-rays at each size asked for), `features/` (a
frozen backbone's pooled features), `extracted/` (archives given as --data, unpacked once) and
`fingerprints.sqlite` (each image's perceptual hashes by file sha256: audit and leakage checks),
`onnx/` (the ONNX graphs `serve --backend onnx` exported, by weights) and `index/` (the model
names table and `summary` answers, by version and sources).
Decoded splits and features together are kept under `$CNNLAB_CACHE_MAX_GB` (default 5): after
each new entry, the least recently used others go. `cnnlab cache` lists all six kinds and
`cnnlab cache clear` empties them (an extracted archive is unpacked again when next used, a
fingerprint, export or summary made again).
Downloaded datasets are not a cache and are never removed here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cnnlab.data.download import cache_dir
from cnnlab.errors import CnnlabError

log = logging.getLogger("cnnlab")

DEFAULT_MAX_GB = 5.0
MAX_GB_ENV = "CNNLAB_CACHE_MAX_GB"
KINDS = ("decoded", "features", "extracted", "fingerprints", "onnx", "index")
CAPPED = ("decoded", "features")  # an extracted folder may be being read: never removed unasked


def decode_cache_dir() -> Path:
    return cache_dir() / "decoded"


def feature_cache_dir() -> Path:
    """`$CNNLAB_FEATURE_CACHE`, else `features/` in cnnlab's cache (benchmarks point it at a
    fresh folder to time a cold start)."""
    return Path(os.environ.get("CNNLAB_FEATURE_CACHE") or cache_dir() / "features")


def max_bytes() -> int:
    """The cap, from `$CNNLAB_CACHE_MAX_GB` (0 keeps nothing but the entry just written)."""
    raw = os.environ.get(MAX_GB_ENV, "")
    try:
        gb = float(raw) if raw else DEFAULT_MAX_GB
    except ValueError:
        raise CnnlabError(f"{MAX_GB_ENV} must be a number of GB, got {raw!r}") from None
    return int(max(gb, 0) * 1e9)


@dataclass
class CacheEntry:
    kind: str  # decoded or features
    key: str
    files: list[Path]
    bytes: int
    last_used: float  # seconds since the epoch
    what: str  # for people: the folder and settings, or the feature shape

    def to_dict(self) -> dict:
        return {"kind": self.kind, "key": self.key, "bytes": self.bytes, "what": self.what,
                "last_used": time.strftime("%Y-%m-%d %H:%M", time.localtime(self.last_used))}  # fmt: skip


def _size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def _decoded_entries() -> list[CacheEntry]:
    entries = []
    for meta in sorted(decode_cache_dir().glob("*.json")):
        data = meta.with_suffix(".u8")
        try:
            with meta.open() as f:
                head = f.read(4096)  # root, settings and shape come first
            root = (
                json.loads(head[: head.index(', "classes"')] + "}") if '"classes"' in head else {}
            )
            what = f"{root.get('root', '?')} {root.get('settings', '')} {root.get('shape', '')}"
            entries.append(CacheEntry("decoded", meta.stem, [meta, data], _size([meta, data]),
                                      meta.stat().st_mtime, what))  # fmt: skip
        except (OSError, ValueError):
            continue
    return entries


def _feature_entries() -> list[CacheEntry]:
    entries = []
    for path in sorted(feature_cache_dir().glob("*.safetensors")):
        try:
            entries.append(CacheEntry("features", path.stem, [path], _size([path]),
                                      path.stat().st_mtime, "pooled backbone features"))  # fmt: skip
        except OSError:
            continue
    return entries


def _extracted_entries() -> list[CacheEntry]:
    entries = []
    root = cache_dir() / "extracted"
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        files = [p for p in folder.rglob("*") if p.is_file()]
        entries.append(CacheEntry("extracted", folder.name, [folder], _size(files),
                                  folder.stat().st_mtime, f"{len(files)} files"))  # fmt: skip
    return entries


def _fingerprint_entries() -> list[CacheEntry]:
    """The audit's fingerprints by file sha256 (cnnlab.data.fingerprints): one small file."""
    path = cache_dir() / "fingerprints.sqlite"
    if not path.is_file():
        return []
    return [CacheEntry("fingerprints", path.name, [path], _size([path]), path.stat().st_mtime,
                       "image fingerprints by sha256 (audit, evaluate, recalibrate)")]  # fmt: skip


def _onnx_entries() -> list[CacheEntry]:
    """Each kept export with the sidecar holding the sha256 of the bytes that passed parity."""
    entries = []
    for path in sorted((cache_dir() / "onnx").glob("*.onnx")):
        files = [path, path.with_suffix(".sha256")]
        with contextlib.suppress(OSError):
            entries.append(CacheEntry("onnx", path.stem, files, _size(files),
                                      path.stat().st_mtime, "ONNX export for serve"))  # fmt: skip
    return entries


def _index_entries() -> list[CacheEntry]:
    """The names table and kept summaries: small JSON files, one entry for them all."""
    files = sorted((cache_dir() / "index").glob("*.json"))
    if not files:
        return []
    return [CacheEntry("index", "index", files, _size(files), max(p.stat().st_mtime for p in files),
                       f"{len(files)} model-name tables and summaries")]  # fmt: skip


def cache_entries(kinds: tuple[str, ...] = KINDS) -> list[CacheEntry]:
    """Every entry of the asked kinds, most recently used first."""
    listers = {"decoded": _decoded_entries, "features": _feature_entries,
               "extracted": _extracted_entries, "fingerprints": _fingerprint_entries,
               "onnx": _onnx_entries, "index": _index_entries}  # fmt: skip
    found = [e for kind in KINDS if kind in kinds for e in listers[kind]()]
    return sorted(found, key=lambda e: e.last_used, reverse=True)


def touch(path: Path) -> None:
    """Mark an entry as used now (its modification time is what 'least recently used' reads)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def remove(entry: CacheEntry) -> None:
    import shutil

    for path in entry.files:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def clear_cache(kinds: tuple[str, ...] = KINDS) -> tuple[int, int]:
    """Remove every entry of the asked kinds: (entries, bytes) freed."""
    entries = cache_entries(kinds)
    for entry in entries:
        remove(entry)
    return len(entries), sum(e.bytes for e in entries)


def enforce_limit(keep: str) -> list[CacheEntry]:
    """Remove the least recently used entries until the caches fit under `max_bytes()`;
    the entry `keep` (just written, in use) stays. Returns what was removed."""
    limit = max_bytes()
    entries = cache_entries(CAPPED)
    total = sum(e.bytes for e in entries)
    removed = []
    for entry in reversed(entries):  # least recently used first
        if total <= limit:
            break
        if entry.key == keep:
            continue
        remove(entry)
        total -= entry.bytes
        removed.append(entry)
    if removed:
        log.info("cache over %.1f GB: removed %d least recently used entries (%.2f GB); "
                 "`cnnlab cache` lists what is kept", limit / 1e9, len(removed),
                 sum(e.bytes for e in removed) / 1e9)  # fmt: skip
    return removed
