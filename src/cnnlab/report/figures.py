"""A bundle's validation report drawn from bundle.json alone: metrics with intervals as a table,
the ROC curve, the confusion matrix and the reliability diagram, as matplotlib figures.

Training (`engine.medical`, `engine.evaluate`) writes PNG files from the raw scores; these
draw the same views from what the bundle stores, so the app needs no data to show them.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

NAMES = {
    "auc": "ROC-AUC", "sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV",
    "npv": "NPV", "f1": "F1", "accuracy": "Accuracy", "brier": "Brier score", "ece": "ECE",
    "loss": "Loss", "macro_f1": "Macro F1",
}  # fmt: skip


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def metric_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of (metric, value, 95% CI low, high) for whatever the bundle recorded."""
    from cnnlab.train.medical import INTERVAL_KEYS  # (scikit-learn: loaded when needed)

    wanted = (*INTERVAL_KEYS, "ece") if "auc" in metrics else ("accuracy", "macro_f1", "loss")
    keys = [k for k in wanted if k in metrics]
    rows = []
    for key in keys:
        lo, hi = (metrics.get(f"{key}_ci") or [None, None])[:2]
        rows.append({"metric": NAMES.get(key, key), "value": _num(metrics[key]),
                     "ci_low": _num(lo), "ci_high": _num(hi)})  # fmt: skip
    return rows


def figure_table(metrics: dict[str, Any], externals: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Rows of metric, then one column per data set (validation, each external block): value with
    its interval when there is one, so the app shows them side by side."""
    columns = []
    if metrics:
        columns.append((f"validation ({metrics.get('n', 0)})", metrics))
    for b in externals:
        cv = " CV" if b.get("cross_validated_folds") else ""
        columns.append((f"{b.get('name', 'external')} ({b.get('n', '?')}{cv})", b))
    by_column = [{r["metric"]: r for r in metric_rows(m)} for _, m in columns]
    names = list(dict.fromkeys(name for rows in by_column for name in rows))
    table = []
    for name in names:
        row = {"metric": name}
        for (title, _), rows in zip(columns, by_column, strict=True):
            r = rows.get(name)
            text = "" if r is None or r["value"] is None else f"{r['value']:.4f}"
            if text and r["ci_low"] is not None and r["ci_high"] is not None:
                text += f" ({r['ci_low']:.3f}-{r['ci_high']:.3f})"
            row[title] = text
        table.append(row)
    return table


def _figure(**kwargs):
    """A figure outside pyplot's global state: safe when app sessions draw in parallel threads."""
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def roc_from_bins(bins: list[dict[str, float]]) -> dict[str, list[float]]:
    """A coarse ROC from the stored calibration bins: exact at the bin edges used as thresholds
    (each bin's count and positive rate say how many positives and negatives lie above an edge)."""
    pos = [b["n"] * b["rate"] for b in bins]
    neg = [b["n"] * (1 - b["rate"]) for b in bins]
    if not bins or sum(pos) <= 0 or sum(neg) <= 0:
        return {"fpr": [], "tpr": []}
    fpr, tpr = [0.0], [0.0]
    for i in range(len(bins) - 1, -1, -1):  # lower the threshold one bin at a time
        fpr.append(fpr[-1] + neg[i] / sum(neg))
        tpr.append(tpr[-1] + pos[i] / sum(pos))
    return {"fpr": [round(v, 6) for v in fpr], "tpr": [round(v, 6) for v in tpr]}


def roc_figure(metrics: dict[str, Any], positive: str = "positive"):
    """The stored ROC curve with the operating point; from the calibration bins (coarse) when the
    bundle predates stored ROC points; None when it has neither."""
    roc, coarse = metrics.get("roc_curve"), False
    if not roc or not roc.get("fpr"):
        roc, coarse = roc_from_bins(metrics.get("calibration_bins") or []), True
    if not roc["fpr"]:
        return None
    fig = _figure(figsize=(4.6, 4.4))
    ax = fig.subplots()
    auc = _num(metrics.get("auc"))
    lo, hi = (metrics.get("auc_ci") or [None, None])[:2]
    label = f"ROC (AUC {auc:.3f}" if auc is not None else "ROC ("
    label += (
        f", 95% CI {lo:.3f}-{hi:.3f})" if _num(lo) is not None and _num(hi) is not None else ")"
    )
    if coarse:
        label += f" from {len(metrics['calibration_bins'])} calibration bins"
    ax.plot(roc["fpr"], roc["tpr"], "o-" if coarse else "-", ms=3, label=label)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    sens, spec = _num(metrics.get("sensitivity")), _num(metrics.get("specificity"))
    if sens is not None and spec is not None:
        t = _num(metrics.get("threshold"))
        where = f"threshold {t:.3f}: " if t is not None else ""
        ax.plot(1 - spec, sens, "o", color="C3",
                label=f"{where}sens {sens:.3f}, spec {spec:.3f}")  # fmt: skip
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel(f"sensitivity ({positive} found)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("ROC curve (validation)", fontsize=10)
    return fig


def confusion_figure(cm: list[list[int]], classes: list[str]):
    """Counts in the cells, colour = share of the true class (rows true, columns predicted)."""
    m = np.asarray(cm)
    k = len(classes)
    side = max(3.6, 0.5 * k + 2)
    fig = _figure(figsize=(side + 0.8, side))
    ax = fig.subplots()
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8 if k > 12 else 11,
                    color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    ax.set_title("confusion matrix (validation)", fontsize=10)
    return fig


def reliability_figure(bins: list[dict[str, float]], ece: float | None = None):
    """Observed positive rate against mean predicted probability per stored bin, sized by count."""
    if not bins:
        return None
    fig = _figure(figsize=(4.6, 5.2))
    ax, hist = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    ax.plot([b["mean_p"] for b in bins], [b["rate"] for b in bins], "o-", label="model")
    ax.set_ylabel("observed positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("calibration" + (f" (ECE {ece:.3f})" if _num(ece) is not None else ""),
                 fontsize=10)  # fmt: skip
    hist.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["n"] for b in bins],
             width=[b["hi"] - b["lo"] for b in bins], color="C0", alpha=0.7)  # fmt: skip
    hist.set_xlabel("predicted probability of the positive class")
    hist.set_ylabel("images")
    return fig


def card_section(card: str, title: str) -> str:
    """The text under a '## title' heading of a model card (empty when there is none)."""
    match = re.search(rf"^##\s+{re.escape(title)}\s*$(.*?)(?=^#{{1,2}}\s|\Z)", card, re.M | re.S)
    return match.group(1).strip() if match else ""
