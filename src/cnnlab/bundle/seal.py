"""The seal: manifest.json records the size and sha256 of every file of a bundle, bundle.json
included (which cannot hash itself), so that any edit, deletion or replacement made outside
cnnlab's own commands is found at load and named, and nothing in bundle.json can switch the
check off. Every command that writes a bundle seals it last (`seal_bundle`); a bundle made
before sealing, or changed by hand, is trusted only by a person running `cnnlab seal BUNDLE`.

The seal finds edits; it does not say who made the bundle: anyone who can write the folder
can recompute it. That is what a signature is for (`cnnlab.bundle.sign`), and it covers
manifest.json with the rest.

A bundle's files are plain names inside its folder, read without following links and without
blocking on a FIFO, each with a size cap (`cnnlab.fileio.open_inside`). Other files in a run
folder (history.jsonl, checkpoint.pt, figures) are not part of the bundle and are not sealed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

from cnnlab.bundle.catalog import META
from cnnlab.bundle.check import META_MAX_BYTES, parse_meta
from cnnlab.data.fingerprints import HASH_FILE, HASH_MAX_BYTES
from cnnlab.errors import CnnlabError
from cnnlab.fileio import GIB, MIB, atomic_write_text, open_inside, plain_name, read_inside
from cnnlab.models.registry import MAX_PARAMS
from cnnlab.runtime.ood import OOD_FILE, OOD_MAX_BYTES
from cnnlab.strict import strict_json

log = logging.getLogger("cnnlab")

WEIGHTS, CARD = "model.safetensors", "card.md"
MANIFEST = "manifest.json"
SIGNATURE = "bundle.sig"  # written by `cnnlab sign`; a re-seal that changes files removes it
MANIFEST_FORMAT, MANIFEST_VERSION = "cnnlab-manifest", 1
MANIFEST_MAX_BYTES = MIB
SIGNATURE_MAX_BYTES = MIB  # a sigstore bundle: a few KB
CARD_MAX_BYTES = MIB  # a model card is a page of Markdown: a few KB
# float32 weights of the largest model cnnlab builds, in whole GiB (room for buffers, header): 4
WEIGHTS_MAX_BYTES = math.ceil(4 * MAX_PARAMS / GIB) * GIB
# the largest file a seal or a signature covers: a digest of any is read within this
SEALED_MAX_BYTES = max(
    META_MAX_BYTES, WEIGHTS_MAX_BYTES, CARD_MAX_BYTES, OOD_MAX_BYTES, HASH_MAX_BYTES
)


def bundle_files(meta: dict[str, Any]) -> dict[str, int]:
    """{file name: the most bytes it may have} for every file a load of this bundle reads."""
    files = {META: META_MAX_BYTES, WEIGHTS: WEIGHTS_MAX_BYTES, CARD: CARD_MAX_BYTES}
    ood = meta.get("ood")
    if ood:
        if not isinstance(ood, dict):
            raise CnnlabError(f"ood must be a mapping, got {type(ood).__name__}")
        name = plain_name(ood.get("file", OOD_FILE), "ood.file")
        if name in files or name in (MANIFEST, SIGNATURE):
            raise CnnlabError(f"ood.file must name a file of its own, got {name!r}")
        files[name] = OOD_MAX_BYTES
    hashes = meta.get("training_hashes")
    if hashes:
        if not isinstance(hashes, dict) or hashes.get("file") != HASH_FILE:
            raise CnnlabError(f"training_hashes must be a mapping whose file is {HASH_FILE}")
        files[HASH_FILE] = HASH_MAX_BYTES
    return files


def read_manifest(folder: Path) -> tuple[dict[str, dict[str, Any]], bytes]:
    """({file name: {bytes, sha256}} that manifest.json seals, its bytes); a bundle without
    one is refused with the way to trust it."""
    if not (folder / MANIFEST).exists() and not (folder / MANIFEST).is_symlink():
        raise CnnlabError(
            f"{folder} is not sealed (no {MANIFEST}): it was made before cnnlab sealed bundles, "
            f"or its seal was removed; if you trust its files as they are, review it and run "
            f"`cnnlab seal {folder}`"
        )
    where = folder / MANIFEST
    data = read_inside(folder, MANIFEST, MANIFEST_MAX_BYTES)
    try:
        manifest = strict_json(data.decode(), str(where))
    except UnicodeDecodeError:
        raise CnnlabError(f"{where} is not UTF-8 text") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != MANIFEST_FORMAT
        or manifest.get("version") != MANIFEST_VERSION
        or not isinstance(files, dict)
    ):
        raise CnnlabError(f"{where} is not a cnnlab manifest (version {MANIFEST_VERSION})")
    for name, entry in files.items():
        plain_name(name, f"{where}: a sealed file")
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("bytes"), int)
            and isinstance(entry.get("sha256"), str)
            and len(entry["sha256"]) == 64
        ):
            raise CnnlabError(f"{where}: {name} must be recorded as {{bytes, sha256}}")
    if META not in files:
        raise CnnlabError(f"{where} does not seal {META}")
    return files, data


def check_listed(folder: Path, files: dict[str, int], sealed: dict[str, Any] | None) -> str:
    """Every file bundle.json names is a plain file inside the folder (no link, no FIFO, not
    over its cap: opened without reading), and with a seal, exactly the files it seals."""
    for name, limit in files.items():
        if not (folder / name).exists() and not (folder / name).is_symlink():
            raise CnnlabError(f"bundle {folder} has no {name} (missing); copy the bundle again "
                              "or re-train it")  # fmt: skip
        with open_inside(folder, name, limit):
            pass
    if sealed is None:
        return ", ".join(files) + ": plain files inside the bundle folder (not sealed yet)"
    unsealed = [n for n in files if n not in sealed]
    if unsealed:
        raise CnnlabError(f"{folder / META} names {unsealed[0]}, which {MANIFEST} does not seal "
                          "(added after the bundle was sealed)")  # fmt: skip
    unnamed = [n for n in sealed if n not in files]
    if unnamed:
        raise CnnlabError(f"{folder / MANIFEST} seals {unnamed[0]}, which {META} does not name "
                          "(removed from bundle.json after sealing)")  # fmt: skip
    return ", ".join(files) + ": plain files inside the bundle folder, each sealed"


def read_sealed(
    folder: Path, name: str, limit: int, sealed: dict[str, Any] | None
) -> tuple[bytes, dict[str, Any]]:
    """(A bundle file's bytes, their {bytes, sha256}), checked against its seal (unchecked when
    `sealed` is None: the bundle is being sealed). The bytes checked are the bytes then used."""
    data = read_inside(folder, name, limit)
    found = hashlib.sha256(data).hexdigest()
    if sealed is not None:
        want = sealed[name]
        if len(data) != want["bytes"] or found != want["sha256"]:
            raise CnnlabError(
                f"{folder / name} changed since it was sealed: {MANIFEST} records "
                f"{want['bytes']:,} bytes, sha256 {want['sha256'][:16]}..., found {len(data):,} "
                f"bytes, sha256 {found[:16]}...; copy the bundle again, or if the change is "
                f"yours, review it and run `cnnlab seal {folder}`"
            )
    return data, {"bytes": len(data), "sha256": found}


def sealed_line(name: str, entry: dict[str, Any], sealed: bool = True) -> str:
    return f"{name}: {entry['bytes']:,} bytes, sha256 {entry['sha256'][:16]}... " + (
        "verified" if sealed else "(not sealed yet)"
    )


def manifest_text(record: dict[str, dict[str, Any]]) -> str:
    body = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "files": record}
    return json.dumps(body, indent=2) + "\n"


def write_manifest(folder: Path, record: dict[str, dict[str, Any]]) -> list[str]:
    """Write manifest.json atomically; returns what changed since the previous seal, in words.
    A signature over other contents no longer verifies: it is removed, and said."""
    text = manifest_text(record)
    try:
        before = read_manifest(folder)[0]
    except CnnlabError:
        before = None
    changes = []
    if before is None:
        changes.append(f"{folder} had no valid seal")
    else:
        for name, entry in record.items():
            old = before.get(name)
            if old is None:
                changes.append(f"{name} was not sealed")
            elif old["sha256"] != entry["sha256"]:
                changes.append(f"{name} changed (sha256 {old['sha256'][:16]}... -> "
                               f"{entry['sha256'][:16]}...)")  # fmt: skip
        changes += [
            f"{name} is no longer part of the bundle" for name in before if name not in record
        ]
    atomic_write_text(folder / MANIFEST, text)
    sig = folder / SIGNATURE
    if changes and (sig.exists() or sig.is_symlink()):
        sig.unlink()
        log.warning("%s removed: the bundle changed since it was signed; sign it again "
                    "(`cnnlab sign %s --key PRIVATE.pem`)", sig, folder)  # fmt: skip
    return changes


def seal_bundle(folder: str | Path) -> Path:
    """Seal a bundle cnnlab has just written (save, `evaluate --record`, `recalibrate`,
    `ood-fit`): manifest.json over the files bundle.json names, written last."""
    folder = Path(folder)
    meta = parse_meta(read_inside(folder, META, META_MAX_BYTES), folder / META)
    record = {
        name: digest_inside(folder, name, limit) for name, limit in bundle_files(meta).items()
    }
    write_manifest(folder, record)
    return folder / MANIFEST


def digest_inside(folder: Path, name: str, limit: int) -> dict[str, Any]:
    """{bytes, sha256} of a bundle file, read in 1 MB chunks (weights may be GBs)."""
    h, size = hashlib.sha256(), 0
    with open_inside(folder, name, limit) as (f, _):
        for chunk in iter(lambda: f.read(MIB), b""):
            h.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": h.hexdigest()}
