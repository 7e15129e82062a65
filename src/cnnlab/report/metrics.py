"""Metrics as people read them: names, rows of value and 95% interval, the table that puts
validation and external figures side by side, and the lines `cnnlab evaluate` prints.

`INTERVAL_KEYS` are the binary figures reported with a bootstrap interval, in the order every
report shows them; `cnnlab.train.medical` computes exactly these.
"""

from __future__ import annotations

import math
from typing import Any

INTERVAL_KEYS = ("auc", "sensitivity", "specificity", "ppv", "npv", "f1", "accuracy", "brier")

NAMES = {
    "auc": "ROC-AUC", "sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV",
    "npv": "NPV", "f1": "F1", "accuracy": "Accuracy", "brier": "Brier score", "ece": "ECE",
    "loss": "Loss", "macro_f1": "Macro F1",
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
    wanted = (*INTERVAL_KEYS, "ece") if "auc" in metrics else ("accuracy", "macro_f1", "loss")
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
    return lines
