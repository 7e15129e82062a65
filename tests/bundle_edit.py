"""Editing a bundle by hand in a test, as a person (or an attacker) would: change a file, then
recompute the seal (manifest.json) over the files as they now are, so that the test reaches
the check past the seal. Written here, not with cnnlab's own sealing, which refuses to seal
what would not load."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
BASE = ("bundle.json", "model.safetensors", "card.md")
HASHED_UP_TO = 64 * 2**20  # larger (a sparse 2 GB card): recorded by size, digest left at zeros


def sealed_names(folder: Path) -> list[str]:
    path = Path(folder) / MANIFEST
    if path.is_file():
        return list(json.loads(path.read_text())["files"])
    return list(BASE)


def reseal(folder: str | Path, names: Iterable[str] | None = None) -> Path:
    """Write manifest.json over `names` (default: the files it seals now) as they are on disk,
    links followed and FIFOs recorded as empty: the seal of someone who recomputed it."""
    folder = Path(folder)
    files = {}
    for name in names or sealed_names(folder):
        path = folder / name
        st = os.stat(path) if path.exists() else None
        if st is None or not stat.S_ISREG(st.st_mode):
            files[name] = {"bytes": 0, "sha256": hashlib.sha256(b"").hexdigest()}
        elif st.st_size > HASHED_UP_TO:
            files[name] = {"bytes": st.st_size, "sha256": "0" * 64}
        else:
            data = path.read_bytes()
            files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest = {"format": "cnnlab-manifest", "version": 1, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def edit_meta(folder: str | Path, change: Callable[[dict[str, Any]], Any], seal: bool = True):
    """bundle.json changed by `change(meta)` (NaN allowed, as a hand edit or an older cnnlab
    would write it), then resealed unless `seal` is False."""
    folder = Path(folder)
    meta = json.loads((folder / "bundle.json").read_text())
    change(meta)
    (folder / "bundle.json").write_text(json.dumps(meta))
    if seal:
        reseal(folder)
    return folder


def setter(dotted: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change for `edit_meta`: set the value at a dotted key ("decision.threshold")."""

    def change(meta: dict[str, Any]) -> None:
        node = meta
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value

    return change
