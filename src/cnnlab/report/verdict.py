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
from cnnlab.runtime.ood import SENTENCE

MIN_CONFIDENCE = 0.65  # the decided class's calibrated probability must reach this
THRESHOLD_MARGIN = 0.05  # ... and p(positive) must lie this far from the threshold


@dataclass(frozen=True)
class Verdict:
    headline: (
        str  # "Pneumonia likely", "Uncertain", "Not classified", SENTENCE (out of distribution)
    )
    sentence: str  # "Pneumonia likely (P(Pneumonia) 0.91; threshold 0.37)"
    label: str | None  # the class the decision rule picks (None when unreadable)
    uncertain: bool  # the label is not headlined (unsure, or out of distribution)
    error: str | None = None
    out_of_distribution: bool = False
    positive: bool = False  # a binary model's positive class headlined (shown in its own colour)
    refused: str | None = None  # why the bundle does not screen this image (its `accepts`)

    @property
    def kind(self) -> str:
        """likely, uncertain, out_of_distribution, not_screened or not_classified: what the
        colour shows."""
        if self.refused:
            return "not_screened"
        if self.error:
            return "not_classified"
        if self.out_of_distribution:
            return "out_of_distribution"
        return "uncertain" if self.uncertain else "likely"


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
    if pred.refused:
        return Verdict("Not screened", f"Not screened: {pred.refused}", None, False,
                       refused=pred.refused)  # fmt: skip
    if pred.error or pred.label is None:
        reason = pred.error or "no prediction"
        return Verdict("Not classified", f"Not classified: {reason}", None, False, reason)
    if pred.out_of_distribution:
        said = (f"{nice_label(pred.label)}, P({nice_label(classes[1])}) "
                f"{pred.positive_probability:.2f}" if binary and pred.positive_probability is not None
                else f"{nice_label(pred.label)} ({float(pred.probability or 0):.2f})")  # fmt: skip
        return Verdict(
            SENTENCE,
            f"{SENTENCE} (distance {pred.ood_distance:.2f}, cut-off {pred.ood_threshold:.2f}): the "
            f"model would say {said}, but an answer for an image unlike its training images "
            "means little",
            pred.label,
            True,
            out_of_distribution=True,
        )
    if binary and pred.positive_probability is not None and pred.threshold is not None:
        p, t = pred.positive_probability, pred.threshold
        positive, negative = nice_label(classes[1]), nice_label(classes[0])
        decided = nice_label(pred.label)
        confidence = p if pred.label == classes[1] else 1 - p
        ps, ts = _pair(p, t)
        shown = f"P({positive}) {ps}; threshold {ts}"
        if confidence >= min_confidence and abs(p - t) >= margin:
            return Verdict(f"{decided} likely", f"{decided} likely ({shown})", pred.label, False,
                           positive=pred.label == classes[1])  # fmt: skip
        return Verdict(
            "Uncertain",
            f"Uncertain ({shown}): the model cannot tell {positive} from {negative} "
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
    ood = ""
    if pred.ood_distance is not None and pred.ood_threshold is not None:
        ood = (f" · distance from the training images: **{pred.ood_distance:.2f}** (cut-off "
               f"{pred.ood_threshold:.2f})")  # fmt: skip
    if binary:
        return (
            f"Prediction: **{nice_label(pred.label or '')}** · calibrated probability of "
            f"{nice_label(classes[1])}: **{pred.positive_probability:.3f}** · "
            f"threshold: **{pred.threshold:.3f}**{ood}"
        )
    top = ", ".join(f"{t['label']} {float(t['probability']):.3f}" for t in pred.top_k)
    return (
        f"Prediction: **{pred.label}** (calibrated probability {pred.probability:.3f}) · "
        f"top classes: {top}{ood}"
    )
