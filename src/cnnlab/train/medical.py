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
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_curve,
)

from cnnlab.fileio import atomic_path
from cnnlab.train.calibration import (
    brier_score,
    calibration_bins,
    expected_calibration_error,
    plot_reliability,
)

METRICS = ("auc", "sensitivity", "specificity", "ppv", "npv", "f1", "accuracy")
INTERVAL_KEYS = (*METRICS, "brier")


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


def _rates(pred: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics of (B, N) or (N,) predictions against labels; NaN where a denominator is 0."""
    tp = ((pred == 1) & (y == 1)).sum(-1).astype(np.float64)
    tn = ((pred == 0) & (y == 0)).sum(-1).astype(np.float64)
    fp = ((pred == 1) & (y == 0)).sum(-1).astype(np.float64)
    fn = ((pred == 0) & (y == 1)).sum(-1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "ppv": tp / (tp + fp),
            "npv": tn / (tn + fn),
            "f1": 2 * tp / (2 * tp + fp + fn),
            "accuracy": (tp + tn) / (tp + tn + fp + fn),
        }


def _decide(p: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    """Positive when p >= threshold; one threshold, or one per image (cross-validated rules)."""
    return (p >= np.asarray(threshold, dtype=np.float64)).astype(int)


def binary_metrics(p: np.ndarray, y: np.ndarray, threshold: float | np.ndarray) -> dict[str, float]:
    """Point estimates at `threshold` (positive when p >= threshold)."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y).astype(int)
    out = {k: float(v) for k, v in _rates(_decide(p, threshold), y).items()}
    out["auc"] = float(_auc_rows(p[None], y[None])[0])
    out["brier"] = brier_score(p, y)
    return out


def bootstrap_intervals(
    p: np.ndarray,
    y: np.ndarray,
    threshold: float | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Percentile 95% intervals over `n_boot` resamples of the images (with replacement)."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y).astype(int)
    if len(y) < 2:
        return {k: [float("nan"), float("nan")] for k in INTERVAL_KEYS}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), (n_boot, len(y)))
    ys, ps = y[idx], p[idx]
    samples = _rates(_decide(p, threshold)[idx], ys)
    samples["brier"] = ((ps - ys) ** 2).mean(1)
    samples["auc"] = _auc_rows(ps, ys)
    out = {}
    for key in INTERVAL_KEYS:
        v = samples[key][np.isfinite(samples[key])]
        out[key] = (
            [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
            if len(v)
            else [float("nan"), float("nan")]
        )
    return out


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
) -> dict[str, Any]:
    """The medical fields for a binary model's report (flat `<metric>` and `<metric>_ci`)."""
    p = positive_probability(logits, temperature)
    report = probability_report(p, labels.numpy(), classes, threshold, n_boot)
    report["temperature"] = float(temperature)
    if out_dir is not None:
        y = labels.numpy().astype(int)
        plot_curves(p, y, threshold, Path(out_dir), title, classes[1])
        plot_reliability(p, y, Path(out_dir) / "reliability.png",
                         f"{title}: ECE {report['ece']:.3f}, Brier {report['brier']:.3f}")  # fmt: skip
    return report


def probability_report(
    p: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    threshold: float | np.ndarray,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """binary_report's fields from calibrated p(positive); `threshold` may be one per image, as
    when each image was judged by the rule of the cross-validation fold that left it out."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y).astype(int)
    point = binary_metrics(p, y, threshold)
    ci = bootstrap_intervals(p, y, threshold, n_boot)
    shown = float(threshold) if np.ndim(threshold) == 0 else float(np.median(threshold))
    report: dict[str, Any] = {"positive_class": classes[1], "threshold": shown}
    for key in INTERVAL_KEYS:
        report[key] = point[key]
        report[f"{key}_ci"] = ci[key]
    report["ece"] = expected_calibration_error(p, y)
    report["average_precision"] = (
        float(average_precision_score(y, p)) if y.min() != y.max() else float("nan")
    )
    report["calibration_bins"] = calibration_bins(p, y)
    report["roc_curve"] = roc_points(p, y)
    return report


def plot_curves(
    p: np.ndarray, y: np.ndarray, threshold: float, out: Path, title: str, positive: str
) -> None:
    """roc_curve.png and pr_curve.png, with the operating point at `threshold` marked."""
    if y.min() == y.max():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    at = binary_metrics(p, y, threshold)
    fpr, tpr, _ = roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"ROC (AUC {at['auc']:.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.plot(1 - at["specificity"], at["sensitivity"], "o", color="C3",
            label=f"threshold {threshold:.3f}: sens {at['sensitivity']:.3f}, spec {at['specificity']:.3f}")  # fmt: skip
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel(f"sensitivity ({positive} found)")
    ax.set_title(f"{title} ROC".strip())
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, out / "roc_curve.png")
    precision, recall, _ = precision_recall_curve(y, p)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(recall, precision, label=f"PR (AP {average_precision_score(y, p):.3f})")
    ax.axhline(y.mean(), ls="--", color="grey", label=f"prevalence {y.mean():.3f}")
    ax.plot(at["sensitivity"], at["ppv"], "o", color="C3", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (PPV)")
    ax.set_title(f"{title} precision-recall".strip())
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, out / "pr_curve.png")


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def format_binary(report: dict[str, Any]) -> list[str]:
    """Human lines for `cnnlab evaluate`: each metric with its 95% interval."""
    lines = [f"positive class {report['positive_class']}, threshold {report['threshold']:.3f}, "
             f"temperature {report['temperature']:.3f}"]  # fmt: skip
    for key in INTERVAL_KEYS:
        lo, hi = report[f"{key}_ci"]
        lines.append(f"  {key:<12}{report[key]:.4f}  (95% CI {lo:.4f} - {hi:.4f})")
    lines.append(f"  {'ece':<12}{report['ece']:.4f}")
    return lines
