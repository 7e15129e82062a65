"""Where the ONNX backend's graph comes from: a file the user exported, BUNDLE/model.onnx, or
an export kept between starts under the data folder (`serve --backend onnx` without a file
used to export and parity-check on every start: 18.8 s for the pneumonia model)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from cnnlab.bundle.loading import Bundle
from cnnlab.deploy.onnx import (
    OPSET,
    OnnxBackend,
    ParityReport,
    export_onnx,
    parity_check,
    synthetic_images,
    weights_digest,
)
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_path

log = logging.getLogger("cnnlab")


def onnx_backend_for(bundle: Bundle, onnx_file: str | Path | None = None) -> OnnxBackend:
    """The backend for a bundle: `onnx_file`, else BUNDLE/model.onnx, else an export in memory.

    A file exported from other weights than the bundle's is refused (it would answer for
    another model). A bundle loaded without its model (`build_model=False`) has it built, and
    so checked, here, except where the export cnnlab keeps for these weights answers: it was
    made from this bundle, checked in full, and found again by the weights' sha256."""
    if getattr(bundle, "signed", False):  # no ONNX file is covered by the bundle's signature
        if onnx_file:
            raise CnnlabError("--onnx FILE is not covered by the bundle's signature: with "
                              "--require-signed, --backend onnx exports the verified weights "
                              "in memory")  # fmt: skip
        log.info("ONNX backend: exporting %s in memory from its signed weights", bundle.name)
        data, result = export_onnx(bundle)
        return OnnxBackend(data)
    candidates = [Path(onnx_file)] if onnx_file else []
    if not onnx_file and bundle.path is not None:
        candidates.append(bundle.path / "model.onnx")
    for path in candidates:
        if not path.is_file():
            if onnx_file:
                raise CnnlabError(f"no ONNX file at {path} (write one with `cnnlab export`)")
            continue
        backend = OnnxBackend(path)
        made_from, ours = backend.metadata.get("cnnlab.weights_sha256", ""), weights_digest(bundle)
        if made_from and ours and made_from != ours:
            raise CnnlabError(
                f"{path} was exported from other weights than {bundle.path}; "
                f"re-export it with `cnnlab export {bundle.path} --onnx {path}`"
            )
        if bundle.ood is not None and backend.parts != bundle.ood.layers:
            raise CnnlabError(  # else PyTorch would have to run beside it for the features
                f"{path} does not output the features of {bundle.name}'s out-of-distribution "
                f"check (exported before the check, or by an older cnnlab); re-export it with "
                f"`cnnlab export {bundle.path} --onnx {path}`"
            )
        bundle.model  # noqa: B018 -- the load's model checks, deferred: a user's file is not ours
        log.info("ONNX backend: %s", path)
        return backend
    return OnnxBackend(cached_export(bundle))


def export_key(bundle: Bundle) -> str:
    """What an export depends on: the weights' sha256, everything bundle.json says (model,
    preprocessing, temperature, classes, the check's layers), the opset and the versions of
    torch, onnx and cnnlab. Any change is a new key, so a stale graph is never found."""
    from importlib import metadata

    from cnnlab.version import __version__

    versions = [__version__, torch.__version__, metadata.version("onnx"), str(OPSET)]
    digest = hashlib.sha256(json.dumps([weights_digest(bundle), bundle.meta, versions],
                                       sort_keys=True, default=str).encode())  # fmt: skip
    return digest.hexdigest()


def export_cache_path(bundle: Bundle) -> Path:
    """Under the data folder, never in the bundle: sealed bundles are read-only, and a bundle
    shared by several users must not be written by whichever serves it first."""
    from cnnlab.data.download import cache_dir

    return cache_dir() / "onnx" / f"{export_key(bundle)}.onnx"


def cached_export(bundle: Bundle) -> bytes:
    """The bundle's graph: exported and parity-checked once, then read back from the cache.
    Beside it, the sha256 of the bytes that passed the check: a kept file whose digest still
    matches is used at once (the check again would cost a torch and an ONNX forward pass, 2 s
    of a warm start); any other file is checked again on a few synthetic images, and exported
    again when it fails."""
    path = export_cache_path(bundle) if weights_digest(bundle) else None
    if path is not None and path.is_file():
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        stamp = path.with_suffix(".sha256")
        if stamp.is_file() and stamp.read_text().strip() == digest:
            log.info("ONNX backend: the export of these weights kept in %s", path)
            return data
        try:
            diff, ood_diff = parity_check(bundle, data, synthetic_images(bundle.preprocess, 4))
            report = ParityReport(diff, 4, "synthetic images", ood_diff)
            if report.passed:
                log.info("ONNX backend: the export kept in %s checked again", path)
                _keep(stamp, digest.encode())
                return data
            log.warning("ONNX export in %s failed its parity check; exporting again", path)
        except CnnlabError as e:
            log.warning("ONNX export in %s unreadable (%s); exporting again", path, e)
    log.info("ONNX backend: exporting %s (kept for the next start; `cnnlab export` writes a "
             "file of your own)", bundle.name)  # fmt: skip
    data, result = export_onnx(bundle)  # parity-checked on export: refused if it fails
    log.info("%s; %.1f s", result.parity.describe(), result.seconds)
    if path is not None and _keep(path, data):
        _keep(path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())
    return data


def _keep(path: Path, data: bytes) -> bool:
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return True
    except OSError as e:  # a read-only data folder: correct, only slower next start
        log.warning("could not keep the ONNX export in %s (%s)", path.parent, e)
        return False
