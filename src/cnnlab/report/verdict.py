"""Predictions as people read them: a plain sentence that admits when the model is unsure,
and the results table (and CSV) the app offers for download.

A label is headlined only when the model is confident: for a binary bundle, when the
calibrated probability of the decided class is at least `MIN_CONFIDENCE` and the
probability is not within `THRESHOLD_MARGIN` of the threshold (where a small change in
the image would flip the decision). Otherwise the sentence says "Uncertain".
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from cnnlab.predict import Prediction

MIN_CONFIDENCE = 0.65  # the decided class's calibrated probability must reach this
THRESHOLD_MARGIN = 0.05  # ... and p(positive) must lie this far from the threshold


@dataclass(frozen=True)
class Verdict:
    headline: str  # "Pneumonia likely", "Uncertain", "Not classified"
    sentence: str  # "Pneumonia likely (0.91; threshold 0.37)"
    label: str | None  # the class the decision rule picks (None when unreadable)
    uncertain: bool
    error: str | None = None


def nice_label(name: str) -> str:
    """'PNEUMONIA' -> 'Pneumonia' for sentences; other names stay as they are."""
    return name.capitalize() if name.isupper() and len(name) > 1 else name


def _pair(p: float, t: float) -> tuple[str, str]:
    """p and t with enough decimals that p never prints equal to t, nor as a certain 0 or 1."""
    sep = next((d for d in (2, 3, 4) if f"{p:.{d}f}" != f"{t:.{d}f}"), 4)
    digits = next((d for d in range(sep, 5) if float(f"{p:.{d}f}") not in (0.0, 1.0)), 4)
    return f"{p:.{digits}f}", f"{t:.{sep}f}"


def verdict(
    pred: Prediction,
    classes: list[str],
    binary: bool,
    min_confidence: float = MIN_CONFIDENCE,
    margin: float = THRESHOLD_MARGIN,
) -> Verdict:
    """The sentence for one prediction; `classes` are the bundle's (positive second if binary)."""
    if pred.error or pred.label is None:
        reason = pred.error or "no prediction"
        return Verdict("Not classified", f"Not classified: {reason}", None, False, reason)
    if binary and pred.positive_probability is not None and pred.threshold is not None:
        p, t = pred.positive_probability, pred.threshold
        positive, negative = nice_label(classes[1]), nice_label(classes[0])
        decided = nice_label(pred.label)
        confidence = p if pred.label == classes[1] else 1 - p
        ps, ts = _pair(p, t)
        if confidence >= min_confidence and abs(p - t) >= margin:
            return Verdict(f"{decided} likely", f"{decided} likely ({ps}; threshold {ts})",
                           pred.label, False)  # fmt: skip
        return Verdict(
            "Uncertain",
            f"Uncertain ({ps}; threshold {ts}): the model cannot tell {positive} from {negative} "
            f"with confidence; the threshold alone would say {decided}",
            pred.label,
            True,
        )
    top = pred.top_k or [{"label": pred.label, "probability": pred.probability or 0.0}]
    p1 = float(pred.probability or 0.0)
    decided = nice_label(pred.label)
    if p1 >= min_confidence:
        return Verdict(f"{decided} likely", f"{decided} likely ({p1:.2f})", pred.label, False)
    other = (
        f" or {nice_label(str(top[1]['label']))} ({float(top[1]['probability']):.2f})"
        if len(top) > 1
        else ""
    )
    return Verdict("Uncertain", f"Uncertain: {decided} ({p1:.2f}){other}", pred.label, True)


def result_rows(preds: list[Prediction], classes: list[str], binary: bool) -> list[dict[str, Any]]:
    """One row per input: what the app shows in its table and writes to the CSV."""
    rows = []
    for pred in preds:
        v = verdict(pred, classes, binary)
        row: dict[str, Any] = {
            "file": pred.source,
            "result": v.sentence,
            "label": pred.label or "",
            "probability": pred.probability if pred.probability is not None else "",
            "uncertain": v.uncertain if not v.error else "",
        }
        if binary:
            row[f"p_{classes[1]}"] = (
                pred.positive_probability if pred.positive_probability is not None else ""
            )
            row["threshold"] = pred.threshold if pred.threshold is not None else ""
        row["error"] = pred.error or ""
        rows.append(row)
    return rows


def rows_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV text (header from the first row), for a download button or a file."""
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
