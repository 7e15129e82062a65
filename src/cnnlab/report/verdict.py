"""Predictions as people read them: a plain sentence that admits when the model is unsure, and
the line of figures under it. (The table and CSV of predictions: `cnnlab.report.rows`.)

A label is headlined only when the model is confident: for a binary bundle, when the
calibrated probability of the decided class is at least `MIN_CONFIDENCE` and the
probability is not within `THRESHOLD_MARGIN` of the threshold (where a small change in
the image would flip the decision). Otherwise the sentence says "Uncertain".
"""

from __future__ import annotations

from dataclasses import dataclass

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


def prediction_details(pred: Prediction, classes: list[str], binary: bool) -> str:
    """The line under the sentence (Markdown): the decision and the figures it came from."""
    if binary:
        return (
            f"Prediction: **{nice_label(pred.label or '')}** · calibrated probability of "
            f"{nice_label(classes[1])}: **{pred.positive_probability:.3f}** · "
            f"threshold: **{pred.threshold:.3f}**"
        )
    top = ", ".join(f"{t['label']} {float(t['probability']):.3f}" for t in pred.top_k)
    return (
        f"Prediction: **{pred.label}** (calibrated probability {pred.probability:.3f}) · "
        f"top classes: {top}"
    )
