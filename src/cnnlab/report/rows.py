"""Prediction rows: the one schema in which the CLI (`cnnlab predict --json` and `--csv`), the
app (its results table and CSV download) and the API (`POST /v1/predict`) give predictions.

    file                  the input's name
    label                 the class the decision rule picks (empty: the file was unreadable)
    probability           the calibrated probability of `label`
    positive_probability  binary models: calibrated p(positive class), held against threshold
    threshold             binary models: the decision threshold
    top_k                 the most probable classes, [{label, probability}, ...]
    result                the sentence people read: "Pneumonia likely (P(Pneumonia) 0.91;
                          threshold 0.37)"
    uncertain             whether that sentence says the model is unsure
    out_of_distribution   whether the input does not look like the training images (the
                          bundle's check; the label is still given); null without a check
    ood_distance          its distance from the training images (the check's cut-off is in
                          the bundle); null without a check
    error                 why the input could not be classified

JSON keeps `top_k` a list and what does not apply null; CSV has the same columns in the same
order, `top_k` as `label:probability;...` and an empty cell for what does not apply.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from cnnlab.predict import Prediction
from cnnlab.report.verdict import Verdict, verdict

FIELDS = ("file", "label", "probability", "positive_probability", "threshold", "top_k", "result",
          "uncertain", "out_of_distribution", "ood_distance", "error")  # fmt: skip


def prediction_row(pred: Prediction, v: Verdict) -> dict[str, Any]:
    """One prediction and its verdict as a row of the schema (JSON values)."""
    return {
        "file": pred.source,
        "label": pred.label,
        "probability": pred.probability,
        "positive_probability": pred.positive_probability,
        "threshold": pred.threshold,
        "top_k": pred.top_k,
        "result": v.sentence,
        "uncertain": None if v.error else v.uncertain,
        "out_of_distribution": pred.out_of_distribution,
        "ood_distance": pred.ood_distance,
        "error": pred.error,
    }


def prediction_rows(preds: list[Prediction], classes: list[str], binary: bool) -> list[dict]:
    """One row per prediction; `classes` and `binary` are the bundle's (for the sentence)."""
    return [prediction_row(p, verdict(p, classes, binary)) for p in preds]


def flat_row(row: dict[str, Any], empty: Any = "") -> dict[str, Any]:
    """A row as CSV cells (and table cells): top_k as text, `empty` where nothing applies (a
    table keeps None, so a number column stays numeric when an image had an error)."""
    out = {k: (empty if v is None else v) for k, v in row.items()}
    out["top_k"] = ";".join(f"{t['label']}:{float(t['probability']):.4f}" for t in row["top_k"])
    return out


def rows_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV text with the schema's header, for a download button or stdout."""
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat_row(r) for r in rows)
    return buf.getvalue()
