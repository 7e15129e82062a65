"""Metrics as people read them: names, rows of value and 95% interval, the table that puts
validation and external figures side by side, and the lines `cnnlab evaluate` prints.

`INTERVAL_KEYS` are the binary figures reported with a bootstrap interval, in the order every
report shows them; `cnnlab.evaluate.medical` computes exactly these.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

INTERVAL_KEYS = ("auc", "sensitivity", "specificity", "ppv", "npv", "f1", "accuracy", "brier")
# PPV and NPV at a site's prevalence (`--prevalence`), beside those at the data's own
PREVALENCE_KEYS = ("ppv_at_prevalence", "npv_at_prevalence")

NAMES = {
    "auc": "ROC-AUC", "sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV",
    "npv": "NPV", "f1": "F1", "accuracy": "Accuracy", "brier": "Brier score", "ece": "ECE",
    "loss": "Loss", "macro_f1": "Macro F1", "ppv_at_prevalence": "PPV at site prevalence",
    "npv_at_prevalence": "NPV at site prevalence",
}  # fmt: skip


def finite_number(x: Any) -> float | None:
    """x as a float, or None when it is not a finite number (NaN, None, text)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def metric_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of (metric, value, 95% CI low, high) for whatever the bundle recorded."""
    binary = (*INTERVAL_KEYS, "ece", *PREVALENCE_KEYS)
    wanted = binary if "auc" in metrics else ("accuracy", "macro_f1", "loss")
    keys = [k for k in wanted if k in metrics]
    rows = []
    for key in keys:
        lo, hi = (metrics.get(f"{key}_ci") or [None, None])[:2]
        rows.append({"metric": NAMES.get(key, key), "value": finite_number(metrics[key]),
                     "ci_low": finite_number(lo), "ci_high": finite_number(hi)})  # fmt: skip
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


def format_binary(report: dict[str, Any]) -> list[str]:
    """Human lines for `cnnlab evaluate`: each metric with its 95% interval."""
    lines = [f"positive class {report['positive_class']}, threshold {report['threshold']:.3f}, "
             f"temperature {report['temperature']:.3f}"]  # fmt: skip
    for key in INTERVAL_KEYS:
        lo, hi = report[f"{key}_ci"]
        lines.append(f"  {key:<12}{report[key]:.4f}  (95% CI {lo:.4f} - {hi:.4f})")
    lines.append(f"  {'ece':<12}{report['ece']:.4f}")
    return lines + prevalence_lines(report)


def prevalence_lines(report: dict[str, Any], indent: str = "  ") -> list[str]:
    """PPV and NPV at the site's prevalence, when one was given (none otherwise)."""
    if report.get("prevalence") is None:
        return []
    lines = [f"{indent}at prevalence {report['prevalence']:g} (Bayes from sensitivity and "
             "specificity; 95% CI from their bootstrap):"]  # fmt: skip
    for key, name in zip(PREVALENCE_KEYS, ("ppv", "npv"), strict=True):
        lo, hi = report[f"{key}_ci"]
        lines.append(f"{indent}  {name:<10}{report[key]:.4f}  (95% CI {lo:.4f} - {hi:.4f})")
    return lines


def degenerate_warning(
    confusion_matrix: list[list[int]] | None, classes: list[str], where: str = "validation"
) -> str | None:
    """One line when a model has not learned to tell the classes apart: it predicts (almost)
    one class for everything (>= 95% of the images, 5 points more than that class's share),
    or a class is never recognised (recall 0 on its images). None when neither holds."""
    if not confusion_matrix:
        return None
    m = np.asarray(confusion_matrix, dtype=np.int64)
    n = int(m.sum())
    if n == 0 or m.shape[0] < 2:
        return None
    predicted, true = m.sum(0) / n, m.sum(1) / n
    k = int(predicted.argmax())
    problems = []
    if predicted[k] >= 0.95 and predicted[k] >= true[k] + 0.05:
        problems.append(f"it predicts {classes[k]} for {predicted[k]:.0%} of the {n} {where} "
                        f"images ({true[k]:.0%} are {classes[k]})")  # fmt: skip
    never = [classes[i] for i in range(len(m)) if m[i].sum() > 0 and m[i, i] == 0]
    if never:
        shown = ", ".join(never[:6]) + (f" and {len(never) - 6} more" if len(never) > 6 else "")
        problems.append(f"{shown} {'is' if len(never) == 1 else 'are'} never recognised (recall 0)")
    if not problems:
        return None
    return (
        "Warning: " + "; ".join(problems) + ": the model has not learned to tell the classes apart."
    )
