"""Image fingerprints: the same picture found again after resizing, JPEG recompression or a
small change of brightness, as `cnnlab audit`, `evaluate` and `recalibrate` need to see leakage.

Each image gets its file's sha256 (exact copies), a 64-bit DCT perceptual hash (pHash: the 8x8
lowest frequencies of a 32x32 thumbnail above their median) that indexes candidates, and a
255-bit "fine" DCT hash (the 16x16 lowest, the constant term left out) that confirms them.
pHash alone is not enough for X-rays: on the 5,528 chest X-rays of chest_xray/{train,external},
175 pairs of *different* images lie within 4 bits and 10 within 2, while the fine hashes of
those candidate pairs differ by at least 38 bits, and a copy resized to half, re-encoded at JPEG
quality 70 or brightened differs by at most 4 (pHash) and 12 (fine) bits (measured on 150 of
them). A near duplicate is therefore: pHash within NEAR_BITS and fine hash within FINE_BITS.
A crop of more than a few percent is not found (pHash moves 12 bits for a 2% crop). Blank
(flat) images have no meaningful hash: they match by sha256 only.

Fingerprints are kept by file sha256 in `$CNNLAB_DATA/fingerprints.sqlite`, so a folder is
decoded once. A bundle keeps its training images' fingerprints (no pixels) in
`training_hashes.safetensors`, sealed like its other files.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cnnlab.data.download import cache_dir
from cnnlab.errors import CnnlabError

log = logging.getLogger("cnnlab")

NEAR_BITS = 8  # pHash bits (of 64) two images may differ by to be candidates
FINE_BITS = 24  # fine-hash bits (of 255) that confirm a candidate as a near duplicate
FLAT_STD = 2.0  # a thumbnail this flat (grey levels) has no usable perceptual hash
HASH_VERSION = 1  # bump when the hashes change: cached and stored ones are then not compared
HASH_FILE = "training_hashes.safetensors"
HASH_MAX_BYTES = 64 * 1024 * 1024  # 72 bytes an image: room for 900,000 training images


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)
    m = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


_DCT32 = _dct_matrix(32)


def phash(gray: np.ndarray) -> int:
    """64-bit perceptual hash of a 32x32 grayscale array: low DCT frequencies above their median.

    Survives resizing, recompression and small brightness changes, unlike a content hash."""
    coeffs = _DCT32 @ gray.astype(np.float64) @ _DCT32.T
    low = coeffs[:8, :8].ravel()
    bits = low > np.median(low)
    return int(np.packbits(bits).view(">u8")[0])


def fine_hash(gray: np.ndarray) -> bytes:
    """255 bits (32 bytes, the last bit 0): the 16x16 lowest DCT frequencies of a 32x32
    thumbnail but the constant one, above their median. Tells look-alike X-rays apart."""
    coeffs = (_DCT32 @ gray.astype(np.float64) @ _DCT32.T)[:16, :16].ravel()[1:]
    return np.packbits(np.r_[coeffs > np.median(coeffs), False]).tobytes()


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


@dataclass(frozen=True)
class Fingerprint:
    sha256: str
    width: int
    height: int
    mode: str
    format: str
    phash: int | None  # None: a blank image (matched by sha256 only)
    fine: bytes | None


def fingerprint_bytes(data: bytes, name: str) -> Fingerprint:
    """The fingerprint of an image file's bytes, decoded by the one reader training and predict
    use (so a file fails here as it fails there: ImageReadError)."""
    from cnnlab.data.images import read_image_facts

    # JPEGs decode at 1/2 to 1/8 scale: the hashes need 32x32
    arr, source = read_image_facts(data, "auto", name=name, draft=(64, 64))
    gray = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).convert("L")
    box = np.asarray(gray.resize((32, 32), Image.Resampling.BOX), dtype=np.float64)
    flat = float(box.std()) < FLAT_STD
    small = np.asarray(gray.resize((32, 32), Image.Resampling.BILINEAR))
    mode = source.mode or ("L" if arr.shape[2] == 1 else "RGB")
    return Fingerprint(hashlib.sha256(data).hexdigest(), source.size[0], source.size[1], mode,
                       source.format, None if flat else phash(small),
                       None if flat else fine_hash(box))  # fmt: skip


# ----------------------------------------------------------------------------- the cache


def _cache_path() -> Path:
    return cache_dir() / "fingerprints.sqlite"


_COLUMNS = "sha256, width, height, mode, format, phash, fine"


def cached(shas: list[str]) -> dict[str, Fingerprint]:
    """The fingerprints cached for these contents (one read-only connection; any failure is
    a miss: the images are decoded again)."""
    path = _cache_path()
    found: dict[str, Fingerprint] = {}
    if not path.is_file() or not shas:
        return found
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as c:
            for i in range(0, len(shas), 500):
                chunk = shas[i : i + 500]
                marks = ", ".join("?" * len(chunk))
                for row in c.execute(f"SELECT {_COLUMNS} FROM v{HASH_VERSION} WHERE sha256 IN "
                                     f"({marks})", chunk):  # fmt: skip
                    ph = None if row[5] is None else int.from_bytes(row[5], "big")
                    found[row[0]] = Fingerprint(row[0], row[1], row[2], row[3], row[4], ph, row[6])
    except sqlite3.Error:
        return {}
    return found


def remember(prints: list[Fingerprint]) -> None:
    """Add fingerprints to the cache (one transaction); a cache that cannot be written is
    only slower next time, never an error."""
    if not prints:
        return
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as c, c:
            c.execute(f"CREATE TABLE IF NOT EXISTS v{HASH_VERSION} (sha256 TEXT PRIMARY KEY, "
                      "width INT, height INT, mode TEXT, format TEXT, phash BLOB, fine BLOB)")  # fmt: skip
            c.executemany(
                f"INSERT OR REPLACE INTO v{HASH_VERSION} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(p.sha256, p.width, p.height, p.mode, p.format,
                  None if p.phash is None else p.phash.to_bytes(8, "big"), p.fine)
                 for p in prints],
            )  # fmt: skip
    except (OSError, sqlite3.Error) as e:
        log.warning("fingerprint cache %s not written (%s): the next audit decodes again", path, e)


def fingerprint_paths(paths: list[str], workers: int | None = None) -> list[Fingerprint | str]:
    """Each file's fingerprint, or the reason it cannot be read. Files are read and hashed
    (sha256) first, in threads (hashlib lets go of the GIL); only those not in the cache are
    decoded, in `workers` processes, and then cached."""
    from cnnlab.data.decode import parallel_map

    read = list(parallel_map(_sha_of, list(paths), (), workers, backend="thread"))
    shas: list[str | None] = [sha for sha, _ in read]
    out: list[Fingerprint | str] = [problem for _, problem in read]
    known = cached(sorted({s for s in shas if s}))
    todo = [i for i, s in enumerate(shas) if s and s not in known]
    fresh = list(parallel_map(_decode_one, [paths[i] for i in todo], (), workers))
    for i, fp in zip(todo, fresh, strict=True):
        out[i] = fp
    for i, s in enumerate(shas):
        if s and s in known:
            out[i] = known[s]
    remember([fp for fp in fresh if isinstance(fp, Fingerprint)])
    return out


def _sha_of(path: str) -> tuple[str | None, str]:
    """(the file's sha256, "") or (None, why it cannot be read)."""
    from cnnlab.data.images import ImageReadError, read_source

    try:
        return hashlib.sha256(read_source(path)).hexdigest(), ""
    except ImageReadError as e:
        return None, str(e)


def _decode_one(path: str) -> Fingerprint | str:
    from cnnlab.data.images import ImageReadError, read_source

    try:
        return fingerprint_bytes(read_source(path), path)
    except ImageReadError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - one odd file must not stop the others
        return f"cannot decode: {type(e).__name__}: {e}"


# ----------------------------------------------------------------------------- an index


class FingerprintIndex:
    """Fingerprints of a reference set (a training folder, a bundle's training images) to
    look other images up in: exact by sha256, near by pHash bands (pigeonhole: two hashes
    within NEAR_BITS agree on one of NEAR_BITS + 1 bands) then the fine hash."""

    def __init__(self, sha256: np.ndarray, phashes: np.ndarray, fine: np.ndarray):
        self.sha256 = sha256  # (N, 32) uint8
        self.phash = phashes  # (N,) uint64; blank images are left out of `_bands`
        self.fine = fine  # (N, 32) uint8
        self.has_hash = (fine != 0).any(axis=1)
        self._exact: dict[bytes, list[int]] = {}
        for i, row in enumerate(sha256):
            self._exact.setdefault(row.tobytes(), []).append(i)
        self._hashed = np.flatnonzero(self.has_hash)
        self._bands = []  # per band: (sorted band values, the hashed entries in that order)
        for lo, hi in band_edges():
            keys = band(phashes[self._hashed], lo, hi)
            order = np.argsort(keys, kind="stable")
            self._bands.append((keys[order], self._hashed[order]))

    def __len__(self) -> int:
        return len(self.sha256)

    @classmethod
    def of(cls, prints: list[Fingerprint]) -> FingerprintIndex:
        return cls(*as_arrays(prints))

    def matches(self, prints: list[Fingerprint]) -> list[list[dict[str, Any]]]:
        """For each image, [{index, kind: exact|near, bits (pHash), fine_bits}], exact first.
        All at once: the (image, entry) pairs sharing a band value are gathered with sorted
        arrays, then their distances computed together."""
        out = [[{"index": i, "kind": "exact", "bits": 0, "fine_bits": 0}
                for i in self._exact.get(bytes.fromhex(fp.sha256), [])] for fp in prints]  # fmt: skip
        q = np.array([i for i, fp in enumerate(prints) if fp.phash is not None and fp.fine])
        if not len(q) or not len(self._hashed):
            return out
        qh = np.array([prints[i].phash for i in q], dtype=np.uint64)
        qf = np.stack([np.frombuffer(prints[i].fine, np.uint8) for i in q])  # type: ignore[arg-type]
        pairs = []
        for (lo, hi), (keys, entries) in zip(band_edges(), self._bands, strict=True):
            qk = band(qh, lo, hi)
            starts = np.searchsorted(keys, qk, "left")
            counts = np.searchsorted(keys, qk, "right") - starts
            rows = np.repeat(np.arange(len(q)), counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            cols = entries[np.repeat(starts, counts) + offsets]
            close = np.bitwise_count(qh[rows] ^ self.phash[cols]) <= NEAR_BITS
            pairs.append(rows[close] * len(self) + cols[close])
        both = np.unique(np.concatenate(pairs))
        rows, cols = both // len(self), both % len(self)
        bits = np.bitwise_count(qh[rows] ^ self.phash[cols])
        fine_bits = np.bitwise_count(qf[rows] ^ self.fine[cols]).sum(1)
        keep = (bits <= NEAR_BITS) & (fine_bits <= FINE_BITS)
        for r, c, b, f in sorted(zip(rows[keep].tolist(), cols[keep].tolist(), bits[keep].tolist(),
                                     fine_bits[keep].tolist(), strict=True),
                                 key=lambda t: (t[0], t[3], t[1], t[2])):  # fmt: skip
            listed = out[int(q[r])]
            if not any(m["index"] == c for m in listed):
                listed.append({"index": c, "kind": "near", "bits": b, "fine_bits": f})
        return out


def band_edges(max_bits: int = NEAR_BITS) -> list[tuple[int, int]]:
    """max_bits + 1 bands of the 64 bits: two hashes within max_bits agree on one of them
    (pigeonhole), so only hashes sharing a band value need comparing."""
    edges = np.linspace(0, 64, max_bits + 2).astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def band(h: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return (h >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)


def as_arrays(prints: list[Fingerprint]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(prints)
    sha = np.zeros((n, 32), np.uint8)
    ph = np.zeros(n, np.uint64)
    fine = np.zeros((n, 32), np.uint8)
    for i, p in enumerate(prints):
        sha[i] = np.frombuffer(bytes.fromhex(p.sha256), np.uint8)
        if p.phash is not None and p.fine is not None:
            ph[i] = np.uint64(p.phash)
            fine[i] = np.frombuffer(p.fine, np.uint8)
    return sha, ph, fine


# ----------------------------------------------------------------------------- in a bundle


def save_training_hashes(folder: Path, prints: list[Fingerprint], source: str) -> dict[str, Any]:
    """Write training_hashes.safetensors (sha256, pHash and fine hash of each training image:
    72 bytes an image, no pixels) into a bundle folder; returns bundle.json's record of it."""
    from safetensors.numpy import save

    from cnnlab.fileio import atomic_write_bytes

    sha, ph, fine = as_arrays(prints)
    tensors = {"sha256": sha, "phash": ph.astype(">u8").view(np.uint8).reshape(-1, 8),
               "fine": fine}  # fmt: skip
    atomic_write_bytes(Path(folder) / HASH_FILE, save(tensors))
    return {"file": HASH_FILE, "n": len(prints), "version": HASH_VERSION, "source": source,
            "hash": "sha256, 64-bit DCT pHash, 255-bit DCT fine hash"}  # fmt: skip


def load_training_hashes(where: Path, record: Any, data: bytes) -> FingerprintIndex:
    """The bundle's training fingerprints, checked against bundle.json's record of them."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    if not isinstance(record, dict) or not isinstance(record.get("n"), int) or record["n"] < 0:
        raise CnnlabError(f"{where}: training_hashes must be a mapping with a count n")
    if record.get("version") != HASH_VERSION:
        raise CnnlabError(f"{where}: training_hashes version {record.get('version')!r}; this "
                          f"cnnlab reads version {HASH_VERSION}")  # fmt: skip
    try:
        t = load(data)
    except SafetensorError as e:
        raise CnnlabError(f"{where} is not a readable safetensors file: {e}") from None
    n = record["n"]
    want = {"sha256": (n, 32), "phash": (n, 8), "fine": (n, 32)}
    if set(t) != set(want):
        raise CnnlabError(f"{where}: holds {sorted(t)}; expected {sorted(want)}")
    for key, shape in want.items():
        if t[key].shape != shape or t[key].dtype != np.uint8:
            raise CnnlabError(f"{where}: tensor {key} has shape {t[key].shape} ({t[key].dtype}); "
                              f"the record says {shape} uint8")  # fmt: skip
    ph = t["phash"].copy().view(">u8").reshape(-1).astype(np.uint64)
    return FingerprintIndex(t["sha256"], ph, t["fine"])
