"""Fitting a bundle's out-of-distribution check (applied by cnnlab.runtime.ood).

For each view of the features (an early stage's channel statistics, the head's input): class
means and one shared covariance of the training images' features (Ledoit-Wolf shrinkage, so
a feature wider than the images are many stays invertible), kept as its leading eigenvectors
plus one variance for the rest. Each view's distances are scaled by their percentile (99th
by default) on the held-out validation images, and the check's threshold is that percentile
of the larger scaled distance: about 1% of images like the validation split are flagged, and
inputs unlike anything trained on far more (benchmarks/ood.py measures it).
`cnnlab train` fits it after training; `cnnlab ood-fit` adds it to an existing bundle.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from cnnlab.bundle.check import OOD_SCALE_BOUNDS, OOD_THRESHOLD_BOUNDS, read_meta
from cnnlab.data.dataset import ImageData
from cnnlab.data.preprocess import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.runtime.device import Runtime
from cnnlab.runtime.inference import logits_and_features
from cnnlab.runtime.ood import OOD_FILE, OODCheck, OODPart, default_parts, save_ood

log = logging.getLogger("cnnlab")

MAX_RANK = 256  # eigenvectors kept; the rest of the space shares one variance
MAX_FIT_IMAGES = 20_000  # training images the means and covariances are estimated from


def fit_part(
    features: torch.Tensor, labels: torch.Tensor, layer: str = "", take: str = "input",
    max_rank: int = MAX_RANK,
) -> tuple[OODPart, dict[str, Any]]:  # fmt: skip
    """Means of each class present and the shrunk shared covariance in low-rank form (scale 1
    until `fit_ood` sets it), and what the record keeps of it."""
    from sklearn.covariance import ledoit_wolf

    x = features.double().numpy()
    y = labels.numpy()
    classes = list(np.unique(y))
    if len(x) < 2 or not classes:
        raise CnnlabError("the out-of-distribution check needs at least 2 training images")
    means = np.stack([x[y == k].mean(0) for k in classes])
    centred = x - means[np.searchsorted(classes, y)]
    cov, shrinkage = ledoit_wolf(centred, assume_centered=True)
    eigvals, eigvecs = np.linalg.eigh(cov)  # ascending
    eigvals = np.clip(eigvals[::-1], 1e-12, None)
    eigvecs = eigvecs[:, ::-1]
    k = min(max_rank, len(eigvals))
    residual = float(eigvals[k:].mean()) if k < len(eigvals) else float(eigvals[k - 1])
    part = OODPart(
        layer, take, torch.from_numpy(means).float(),
        torch.from_numpy(np.ascontiguousarray(eigvecs[:, :k].T)).float(),
        torch.from_numpy(eigvals[:k].copy()).float(), residual,
    )  # fmt: skip
    return part, {"layer": layer, "take": take, "features": int(x.shape[1]), "rank": k,
                  "shrinkage": round(float(shrinkage), 6)}  # fmt: skip


def fit_ood(
    model: nn.Module,
    train: ImageData,
    held_out: ImageData | None,
    preprocess: Preprocess,
    runtime: Runtime,
    percentile: float = 99.0,
    batch_size: int = 256,
    seed: int = 0,
) -> OODCheck:
    """The check for `model`: fitted on (at most MAX_FIT_IMAGES of) the training images, scaled
    and cut off at `percentile` of the held-out images' distances (the training images' own
    when there are none: then more new in-distribution images are flagged)."""
    if not 50 <= percentile < 100:
        raise CnnlabError(f"the cut-off percentile must be in [50, 100), got {percentile:g}")
    pre_shape = (train.channels, *train.size)
    layers = default_parts(model, pre_shape)
    pick = torch.arange(len(train))
    if len(train) > MAX_FIT_IMAGES:
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        pick = pick[:MAX_FIT_IMAGES].sort().values
    _, feats = logits_and_features(
        model, train.images[pick], preprocess, runtime, layers, batch_size
    )
    fitted = [fit_part(f, train.labels[pick], layer, take) for f, (layer, take) in zip(feats, layers, strict=True)]  # fmt: skip
    parts, records = [p for p, _ in fitted], [r for _, r in fitted]
    if held_out is not None and len(held_out):
        _, held = logits_and_features(
            model, held_out.images, preprocess, runtime, layers, batch_size
        )
        where = "val"
    else:
        held, where = feats, "train"
    low, high = OOD_SCALE_BOUNDS  # a degenerate model's distances can fall outside
    for part, record, f in zip(parts, records, held, strict=True):
        scale = float(np.percentile(part.distances(f).numpy(), percentile))
        part.scale = min(max(scale, low), high)
        record["scale"] = round(part.scale, 6)
    check = OODCheck(parts, 0.0)
    distances = check.distances(held)
    threshold = float(np.percentile(distances.numpy(), percentile))
    check.threshold = min(threshold, OOD_THRESHOLD_BOUNDS[1])  # stricter, never off
    if check.threshold != threshold or any(p.scale in (low, high) for p in parts):
        log.warning("the out-of-distribution check is degenerate (features that barely vary): "
                    "its scales or cut-off were held to the bounds a bundle allows")  # fmt: skip
    check.record = {
        "score": "mahalanobis",
        "parts": records,
        "threshold": round(check.threshold, 6),
        "percentile": percentile,
        "fitted_on": where,
        "n_fit": len(pick),
        "n_cutoff": len(distances),
        "file": OOD_FILE,
    }
    log.info("out-of-distribution check: Mahalanobis distance on %s; cut-off at the %gth "
             "percentile of %d %s images", " and ".join(f"{r['layer']} ({r['take']}, "
             f"{r['features']} wide)" for r in records), percentile, len(distances), where)  # fmt: skip
    return check


def add_ood(
    ref: str | Path, data_path: str, out: str | Path | None = None, percentile: float = 99.0
) -> tuple[Path, dict[str, Any]]:
    """`cnnlab ood-fit`: fit the check of an existing bundle on the training data it was trained
    on (its own split repeated: fitted on the training part, cut off on the validation part),
    and write it into the bundle, or into a copy at `out`. Returns (bundle folder, record)."""
    from cnnlab.bundle.catalog import META, resolve_bundle, shipped_bundles
    from cnnlab.bundle.loading import load_bundle
    from cnnlab.bundle.save import _json_default
    from cnnlab.bundle.seal import seal_bundle
    from cnnlab.evaluate.scores import load_splits_for
    from cnnlab.fileio import atomic_write_text, data_name
    from cnnlab.report.card import write_card

    src = resolve_bundle(ref)
    if out is None and src in shipped_bundles().values():
        raise CnnlabError(f"{ref} ships with cnnlab and is read-only: write the check into a "
                          "copy with --out DIR")  # fmt: skip
    if out is not None and Path(out).exists():
        raise CnnlabError(f"--out {out} exists; name a new folder")
    bundle = load_bundle(src)
    splits = load_splits_for(bundle, data_path, ("train", "val"), need_val=False)
    check = fit_ood(bundle.model, splits["train"], splits.get("val"), bundle.preprocess,
                    bundle.runtime, percentile, batch_size=64)  # fmt: skip
    check.record["data"] = data_name(data_path)  # no machine path in a bundle that may ship
    target = src
    if out is not None:
        target = Path(out)
        shutil.copytree(src, target)
    save_ood(target, check)
    meta = read_meta(target, META)
    meta["ood"] = check.record
    if out is not None:
        meta["name"] = target.name
    atomic_write_text(target / META, json.dumps(meta, indent=2, default=_json_default) + "\n")
    write_card(target, meta)
    seal_bundle(target)
    return target, check.record
