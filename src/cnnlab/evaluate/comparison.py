"""`cnnlab compare`: two binary bundles on the same labelled images, each at its own decision
rule, and whether their differences are more than chance (paired.py's tests).

Each bundle reads the folder at its own input size and is scored by evaluate's one loop
(`scores.split_logits`); the images are then paired by file, so a model that could not read an
image does not shift the pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.bundle.loading import Bundle
from cnnlab.errors import CnnlabError
from cnnlab.evaluate.medical import binary_metrics, bootstrap_intervals
from cnnlab.evaluate.paired import cohen_kappa, delong_auc, delong_test, mcnemar_rates
from cnnlab.fileio import data_name
from cnnlab.report.metrics import PREVALENCE_KEYS

PER_MODEL = ("auc", "sensitivity", "specificity", "ppv", "npv")
GALLERY_MAX = 24


def _scored(bundle: Bundle, data_path: str, batch_size: int):
    from cnnlab.evaluate.scores import split_logits

    data, logits = split_logits(bundle, data_path, "test", batch_size)
    p = bundle.decision.probabilities(logits)[:, 1].numpy().astype(np.float64)
    keys = data.paths if data.paths is not None else [str(i) for i in range(len(data))]
    return data, p, keys


def _check_pair(a: Bundle, b: Bundle) -> None:
    for bundle in (a, b):
        if not bundle.binary:
            raise CnnlabError(
                f"{bundle.name} is not a binary model; compare judges binary screeners"
            )
    if list(a.classes) != list(b.classes):
        raise CnnlabError(f"the two models know different classes ({', '.join(a.classes)} and "
                          f"{', '.join(b.classes)}); compare needs the same two")  # fmt: skip


def compare_bundles(
    a: Bundle,
    b: Bundle,
    data_path: str,
    prevalence: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
    out_dir: Path | None = None,
    by: str | None = None,
    meta: str | Path | None = None,
) -> dict[str, Any]:
    """Per model: AUC, sensitivity, specificity, PPV, NPV at its own rule with stratified
    bootstrap 95% intervals (the same resamples for both); the paired AUC difference (DeLong),
    McNemar's exact test for sensitivity and for specificity, and Cohen's kappa. With `out_dir`,
    disagreements.png and .json: the images where the two decisions differ; with `by`, each
    model's figures per group (subgroups.py)."""
    _check_pair(a, b)
    data_a, p_a, keys_a = _scored(a, data_path, batch_size)
    data_b, p_b, keys_b = _scored(b, data_path, batch_size)
    where_b = {k: i for i, k in enumerate(keys_b)}
    ia = np.array([i for i, k in enumerate(keys_a) if k in where_b], dtype=int)
    ib = np.array([where_b[keys_a[i]] for i in ia], dtype=int)
    y = data_a.labels.numpy()[ia].astype(int)
    if not len(ia) or not np.array_equal(y, data_b.labels.numpy()[ib]):
        raise CnnlabError(f"the two models read different images or labels from {data_path}")
    p_a, p_b = p_a[ia], p_b[ib]
    if y.min() == y.max():
        raise CnnlabError(f"{data_path} has images of one class only; comparing needs both")
    pred_a, pred_b = (p_a >= a.threshold).astype(int), (p_b >= b.threshold).astype(int)
    name = data_name(Path(data_path).resolve())
    report: dict[str, Any] = {
        "data": str(data_path), "n": int(len(y)),
        "counts": {c: int((y == k).sum()) for k, c in enumerate(a.classes)},
        "positive_class": a.classes[1], "bootstrap": {"resamples": n_boot, "seed": seed,
                                                       "stratified": True},
        "models": [_model_block(m, p, y, n_boot, seed, prevalence, name)
                   for m, p in ((a, p_a), (b, p_b))],
        "auc_difference": delong_test(p_a, p_b, y),
        "mcnemar": mcnemar_rates(pred_a, pred_b, y),
        "agreement": {"same": int((pred_a == pred_b).sum()), "kappa": cohen_kappa(pred_a, pred_b)},
    }  # fmt: skip
    if prevalence is not None:
        report["prevalence"] = float(prevalence)
    if by is not None:
        from cnnlab.evaluate.subgroups import group_of_each, subgroup_figures

        groups = group_of_each([keys_a[i] for i in ia], by, meta)
        report["subgroups"] = {"field": by, "models": [
            subgroup_figures(p, y, m.threshold, groups, n_boot, seed)
            for m, p in ((a, p_a), (b, p_b))]}  # fmt: skip
    dropped = len(keys_a) + len(keys_b) - 2 * len(ia)
    if dropped:
        report["unpaired"] = dropped  # images only one of the two models could read
    disagree = np.flatnonzero(pred_a != pred_b)
    order = disagree[np.argsort(-np.abs(p_a - p_b)[disagree], kind="stable")]
    report["disagreements"] = [
        {"file": keys_a[ia[i]], "true": a.classes[y[i]], "a": round(float(p_a[i]), 4),
         "b": round(float(p_b[i]), 4)}
        for i in order
    ]  # fmt: skip
    if out_dir is not None:
        _save_gallery(Path(out_dir), report, data_a.images.numpy()[ia[order[:GALLERY_MAX]]],
                      (a.name, b.name), (a.threshold, b.threshold))  # fmt: skip
    return report


def _model_block(bundle: Bundle, p, y, n_boot: int, seed: int, prevalence, name: str) -> dict:
    point = binary_metrics(p, y, bundle.threshold, prevalence)
    ci = bootstrap_intervals(p, y, bundle.threshold, n_boot, seed, True, prevalence)
    block: dict[str, Any] = {"name": bundle.name, "threshold": float(bundle.threshold),
                             "temperature": float(bundle.temperature)}  # fmt: skip
    for key in PER_MODEL + (PREVALENCE_KEYS if prevalence is not None else ()):
        block[key], block[f"{key}_ci"] = point[key], ci[key]
    block["auc_ci_delong"] = delong_auc(p, y)["ci"]
    if bundle.decision.get("data") == name:  # its rule was fitted on these very images
        block["warning"] = (f"{bundle.name}'s threshold was fitted on {name} itself: its "
                            "sensitivity and specificity here are optimistic")  # fmt: skip
    return block


def _save_gallery(out: Path, report: dict, images, names, thresholds) -> None:
    import json

    from cnnlab.fileio import atomic_write_text
    from cnnlab.report.figures import disagreement_figure, save_figure

    out.mkdir(parents=True, exist_ok=True)
    title = (f"{names[0]} vs {names[1]}: {len(report['disagreements'])} of {report['n']} "
             "images decided differently")  # fmt: skip
    fig = disagreement_figure(list(images), report["disagreements"][:GALLERY_MAX], names,
                              thresholds, report["positive_class"], title)  # fmt: skip
    save_figure(fig, out / "disagreements.png")
    atomic_write_text(
        out / "disagreements.json", json.dumps(report["disagreements"], indent=1) + "\n"
    )
