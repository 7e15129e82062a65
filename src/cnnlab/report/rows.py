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
    screened              whether the model gave it a label; false with `reason` when the
                          bundle does not accept it (a lateral view, a CT slice: its DICOM
                          tags against the bundle's `accepts`) or it could not be read
    reason                why it was not screened ("a left lateral view (ViewPosition LL);
                          this model reads PA/AP views only"); null when it was
    study_uid, series_uid, sop_uid, accession
                          a DICOM input's StudyInstanceUID, SeriesInstanceUID,
                          SOPInstanceUID and AccessionNumber; null for other files
    patient_id            a DICOM input's PatientID: only where asked for (`--with-patient-id`)

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
          "uncertain", "out_of_distribution", "ood_distance", "error", "screened", "reason",
          "study_uid", "series_uid", "sop_uid", "accession")  # fmt: skip
PATIENT = "patient_id"  # a column only where the user asked for it


def prediction_row(pred: Prediction, v: Verdict, with_patient_id: bool = False) -> dict[str, Any]:
    """One prediction and its verdict as a row of the schema (JSON values)."""
    tags = pred.dicom
    row = {
        "file": pred.source,
        "label": pred.label,
        "probability": pred.probability,
        "positive_probability": pred.positive_probability,
        "threshold": pred.threshold,
        "top_k": pred.top_k,
        "result": v.sentence,
        "uncertain": None if v.error or v.refused else v.uncertain,
        "out_of_distribution": pred.out_of_distribution,
        "ood_distance": pred.ood_distance,
        "error": pred.error,
        "screened": pred.screened,
        "reason": None if pred.screened else (pred.refused or pred.error or "no prediction"),
        "study_uid": (tags.study_uid or None) if tags else None,
        "series_uid": (tags.series_uid or None) if tags else None,
        "sop_uid": (tags.sop_uid or None) if tags else None,
        "accession": (tags.accession or None) if tags else None,
    }
    if with_patient_id:
        row[PATIENT] = (tags.patient_id or None) if tags else None
    return row


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
    names = FIELDS + ((PATIENT,) if any(PATIENT in r for r in rows) else ())
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat_row(r) for r in rows)
    return buf.getvalue()
