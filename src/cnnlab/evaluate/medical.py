"""What clinicians ask of a binary classifier: ROC-AUC, sensitivity, specificity, PPV, NPV,
F1 and accuracy, each with a bootstrap 95% interval; ROC and precision-recall curves;
calibration (reliability diagram, ECE, Brier). The positive class is the bundle's second
class (e.g. PNEUMONIA after NORMAL), the one whose probability the single logit gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_curve

from cnnlab.errors import CnnlabError
from cnnlab.evaluate.calibration import (
    at_prevalence,
    brier_score,
    calibration_bins,
    expected_calibration_error,
)
from cnnlab.report.figures import pr_figure, reliability_figure, roc_figure, save_figure
from cnnlab.report.metrics import INTERVAL_KEYS, PREVALENCE_KEYS


def positive_probability(logits: torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    from cnnlab.runtime.decision import probabilities

    return probabilities(logits, temperature)[:, 1].numpy().astype(np.float64)


def _auc_rows(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row at once (Mann-Whitney U from mid-ranks); NaN for one-class rows."""
    from scipy.stats import rankdata

    ranks = rankdata(p, axis=1)
    n1 = y.sum(1).astype(np.float64)
    n0 = y.shape[1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        u = (ranks * y).sum(1) - n1 * (n1 + 1) / 2
        return np.where((n1 > 0) & (n0 > 0), u / (n1 * n0), np.nan)


def _rates(
    pred: np.ndarray, y: np.ndarray, prevalence: float | None = None
) -> dict[str, np.ndarray]:
    """Metrics of (B, N) or (N,) predictions against labels; NaN where a denominator is 0."""
    tp = ((pred == 1) & (y == 1)).sum(-1).astype(np.float64)
    tn = ((pred == 0) & (y == 0)).sum(-1).astype(np.float64)
    fp = ((pred == 1) & (y == 0)).sum(-1).astype(np.float64)
    fn = ((pred == 0) & (y == 1)).sum(-1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "ppv": tp / (tp + fp),
            "npv": tn / (tn + fn),
            "f1": 2 * tp / (2 * tp + fp + fn),
            "accuracy": (tp + tn) / (tp + tn + fp + fn),
        }
    if prevalence is not None:
        out["ppv_at_prevalence"], out["npv_at_prevalence"] = at_prevalence(
            out["sensitivity"], out["specificity"], prevalence
        )
    return out


def check_prevalence(prevalence: float | None) -> float | None:
    if prevalence is not None and not 0 < prevalence < 1:
        raise CnnlabError(
            f"--prevalence must be between 0 and 1 (a share, e.g. 0.1), got {prevalence}"
        )
    return prevalence


def _decide(p: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    """Positive when p >= threshold; one threshold, or one per image (cross-validated rules)."""
    return (p >= np.asarray(threshold, dtype=np.float64)).astype(int)


def binary_metrics(
    p: np.ndarray, y: np.ndarray, threshold: float | np.ndarray, prevalence: float | None = None
) -> dict[str, float]:
    """Point estimates at `threshold` (positive when p >= threshold); with a `prevalence`, also
    PPV and NPV there (`ppv_at_prevalence`, `npv_at_prevalence`)."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y).astype(int)
    out = {k: float(v) for k, v in _rates(_decide(p, threshold), y, prevalence).items()}
    out["auc"] = float(_auc_rows(p[None], y[None])[0])
    out["brier"] = brier_score(p, y)
    return out


def bootstrap_intervals(
    p: np.ndarray,
    y: np.ndarray,
    threshold: float | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    stratified: bool = False,
    prevalence: float | None = None,
) -> dict[str, list[float]]:
    """Percentile 95% intervals over `n_boot` resamples of the images (with replacement);
    `stratified` resamples positives and negatives apart, keeping their counts. With a
    `prevalence`, PPV and NPV there too: Bayes' theorem on each resample's sensitivity and
    specificity, so their intervals carry both rates' uncertainty (not the prevalence's: it is
    the site's figure, taken as known)."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y).astype(int)
    keys = INTERVAL_KEYS + (PREVALENCE_KEYS if prevalence is not None else ())
    if len(y) < 2:
        return {k: [float("nan"), float("nan")] for k in keys}
    idx = resample_indices(y, n_boot, seed, stratified)
    ys, ps = y[idx], p[idx]
    samples = _rates(_decide(p, threshold)[idx], ys, prevalence)
    samples["brier"] = ((ps - ys) ** 2).mean(1)
    samples["auc"] = _auc_rows(ps, ys)
    out = {}
    for key in keys:
        v = samples[key][np.isfinite(samples[key])]
        out[key] = (
            [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
            if len(v)
            else [float("nan"), float("nan")]
        )
    return out


def resample_indices(y: np.ndarray, n_boot: int, seed: int, stratified: bool) -> np.ndarray:
    """(n_boot, N) bootstrap indices, the same for the same labels and seed (so two models on
    the same images are resampled alike); stratified: each class drawn from itself."""
    rng = np.random.default_rng(seed)
    if not stratified:
        return rng.integers(0, len(y), (n_boot, len(y)))
    parts = [np.flatnonzero(y == k) for k in np.unique(y)]
    return np.concatenate([c[rng.integers(0, len(c), (n_boot, len(c)))] for c in parts], axis=1)


def roc_points(p: np.ndarray, y: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    """The ROC curve's corners (at most `max_points`, 4 decimals), small enough for bundle.json,
    so the app can draw it without the validation images."""
    if y.min() == y.max():
        return {"fpr": [], "tpr": []}
    fpr, tpr, _ = roc_curve(y, p)
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 4) for v in fpr], "tpr": [round(float(v), 4) for v in tpr]}


def binary_report(
    logits: torch.Tensor,
    labels: torch.Tensor,
    classes: list[str],
    threshold: float,
    temperature: float = 1.0,
    out_dir: Path | None = None,
    title: str = "",
    n_boot: int = 1000,
    prevalence: float | None = None,
) -> dict[str, Any]:
    """The medical fields for a binary model's report (flat `<metric>` and `<metric>_ci`)."""
    p = positive_probability(logits, temperature)
    report = probability_report(p, labels.numpy(), classes, threshold, n_boot, prevalence)
    report["temperature"] = float(temperature)
    if out_dir is not None:
        save_figures(report, p, labels.numpy().astype(int), Path(out_dir), title)
    return report


def probability_report(
    p: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    threshold: float | np.ndarray,
    n_boot: int = 1000,
    prevalence: float | None = None,
) -> dict[str, Any]:
    """binary_report's fields from calibrated p(positive); `threshold` may be one per image, as
    when each image was judged by the rule of the cross-validation fold that left it out. With
    a site's `prevalence`, PPV and NPV there as well (`ppv_at_prevalence`, ...)."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y).astype(int)
    point = binary_metrics(p, y, threshold, prevalence)
    ci = bootstrap_intervals(p, y, threshold, n_boot, prevalence=prevalence)
    shown = float(threshold) if np.ndim(threshold) == 0 else float(np.median(threshold))
    report: dict[str, Any] = {"positive_class": classes[1], "threshold": shown}
    for key in INTERVAL_KEYS + (PREVALENCE_KEYS if prevalence is not None else ()):
        report[key] = point[key]
        report[f"{key}_ci"] = ci[key]
    if prevalence is not None:
        report["prevalence"] = float(prevalence)
    report["ece"] = expected_calibration_error(p, y)
    report["average_precision"] = (
        float(average_precision_score(y, p)) if y.min() != y.max() else float("nan")
    )
    report["calibration_bins"] = calibration_bins(p, y)
    report["roc_curve"] = roc_points(p, y)
    return report


def save_figures(
    report: dict[str, Any], p: np.ndarray, y: np.ndarray, out: Path, title: str
) -> None:
    """roc_curve.png and pr_curve.png (none for a one-class split) and reliability.png."""
    if y.min() != y.max():
        roc = roc_figure(report, report["positive_class"], f"{title} ROC".strip())
        if roc is not None:
            save_figure(roc, out / "roc_curve.png")
        save_figure(
            pr_figure(p, y, report, f"{title} precision-recall".strip()), out / "pr_curve.png"
        )
    ece = f"{title}: ECE {report['ece']:.3f}, Brier {report['brier']:.3f}"
    save_figure(
        reliability_figure(report["calibration_bins"], report["ece"], ece), out / "reliability.png"
    )
