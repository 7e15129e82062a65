"""Fitting a bundle's out-of-distribution check (applied by cnnlab.runtime.ood).

Class means and one shared covariance of the penultimate features of the training images
(Ledoit-Wolf shrinkage, so a feature wider than the images are many stays invertible), kept
as its leading eigenvectors plus one variance for the rest; the cut-off is a percentile
(99th by default) of the held-out validation images' distances, so about 1% of images like
the validation split are flagged, and inputs unlike anything trained on are flagged far more.
`cnnlab train` fits it after training; `cnnlab ood-fit` adds it to an existing bundle.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from cnnlab.data.dataset import ImageData
from cnnlab.data.preprocess import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.runtime.device import Runtime
from cnnlab.runtime.ood import OOD_FILE, OODCheck, feature_layer, logits_and_features, save_ood

log = logging.getLogger("cnnlab")

MAX_RANK = 256  # eigenvectors kept; the rest of the space shares one variance
MAX_FIT_IMAGES = 20_000  # training images the means and covariance are estimated from


def fit_check(features: torch.Tensor, labels: torch.Tensor, max_rank: int = MAX_RANK) -> OODCheck:
    """Means of each class present and the shrunk shared covariance, in low-rank form (no
    cut-off yet: `threshold` is infinity until `fit_ood` sets it)."""
    from sklearn.covariance import ledoit_wolf

    x = features.double().numpy()
    y = labels.numpy()
    classes = [k for k in np.unique(y)]
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
    check = OODCheck(
        layer="",
        means=torch.from_numpy(means).float(),
        components=torch.from_numpy(np.ascontiguousarray(eigvecs[:, :k].T)).float(),
        variances=torch.from_numpy(eigvals[:k].copy()).float(),
        residual_variance=residual,
        threshold=float("inf"),
    )
    check.record = {"shrinkage": round(float(shrinkage), 6), "rank": k, "features": int(x.shape[1])}
    return check


def fit_ood(
    model: nn.Module,
    train: ImageData,
    held_out: ImageData | None,
    preprocess: Preprocess,
    runtime: Runtime,
    percentile: float = 99.0,
    layer: str | None = None,
    batch_size: int = 256,
    seed: int = 0,
) -> OODCheck:
    """The check for `model`: fitted on (at most MAX_FIT_IMAGES of) the training images, cut
    off at `percentile` of the held-out images' distances (the training images' own when there
    are none: then fewer new in-distribution images pass)."""
    if not 50 <= percentile < 100:
        raise CnnlabError(f"the cut-off percentile must be in [50, 100), got {percentile:g}")
    layer = layer or feature_layer(model)
    pick = torch.arange(len(train))
    if len(train) > MAX_FIT_IMAGES:
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        pick = pick[:MAX_FIT_IMAGES].sort().values
    _, feats = logits_and_features(
        model, train.images[pick], preprocess, runtime, layer, batch_size
    )
    check = fit_check(feats, train.labels[pick])
    if held_out is not None and len(held_out):
        _, held = logits_and_features(
            model, held_out.images, preprocess, runtime, layer, batch_size
        )
        where = "val"
    else:
        held, where = feats, "train"
    distances = check.distances(held)
    check.layer = layer
    check.threshold = float(np.percentile(distances.numpy(), percentile))
    check.record = {
        "score": "mahalanobis",
        "layer": layer,
        **check.record,
        "threshold": round(check.threshold, 4),
        "percentile": percentile,
        "fitted_on": where,
        "n_fit": len(pick),
        "n_cutoff": len(held),
        "median_distance": round(float(distances.median()), 4),
        "file": OOD_FILE,
    }
    log.info("out-of-distribution check: Mahalanobis distance of the %d-wide input of %s, cut-off "
             "%.2f (%gth percentile of %d %s images)", check.record["features"], layer,
             check.threshold, percentile, len(held), where)  # fmt: skip
    return check


def add_ood(
    ref: str | Path,
    data_path: str,
    out: str | Path | None = None,
    percentile: float = 99.0,
    layer: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """`cnnlab ood-fit`: fit the check of an existing bundle on the training data it was trained
    on (its own split repeated: fitted on the training part, cut off on the validation part),
    and write it into the bundle, or into a copy at `out`. Returns (bundle folder, record)."""
    import json

    from cnnlab.bundle import META, load_bundle, resolve_bundle, shipped_bundles
    from cnnlab.fileio import atomic_write_text
    from cnnlab.report.card import model_card
    from cnnlab.train.evaluate import load_splits_for

    src = resolve_bundle(ref)
    if out is None and src in shipped_bundles().values():
        raise CnnlabError(f"{ref} ships with cnnlab and is read-only: write the check into a "
                          "copy with --out DIR")  # fmt: skip
    bundle = load_bundle(src)
    splits = load_splits_for(bundle, data_path, ("train", "val"), need_val=False)
    check = fit_ood(bundle.model, splits["train"], splits.get("val"), bundle.preprocess,
                    bundle.runtime, percentile, layer, batch_size=64)  # fmt: skip
    check.record["data"] = data_path
    target = src
    if out is not None:
        target = Path(out)
        if target.exists():
            raise CnnlabError(f"--out {target} exists; name a new folder")
        shutil.copytree(src, target)
    save_ood(target, check)
    meta = json.loads((target / META).read_text())
    meta["ood"] = check.record
    if out is not None:
        meta["name"] = target.name
    from cnnlab.bundle import _json_default

    atomic_write_text(target / META, json.dumps(meta, indent=2, default=_json_default) + "\n")
    atomic_write_text(target / "card.md", model_card(meta))
    return target, check.record
