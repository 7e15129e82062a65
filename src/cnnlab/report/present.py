"""One prediction as every surface shows it: its verdict (the kind of answer and the sentence),
its row of the one schema (`cnnlab.report.rows`), its line of `cnnlab predict` text and the
line of figures the app shows under the sentence.

The CLI (text, `--json`, `--csv`), the app (its sentences, colours and table) and the API
(`POST /v1/predict`) each call `present` and format nothing themselves, so none of them can
say "Pneumonia likely" where another says "Uncertain".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cnnlab.predict import Prediction
from cnnlab.report.rows import prediction_row
from cnnlab.report.verdict import Verdict, prediction_details, verdict
from cnnlab.runtime.ood import SENTENCE

if TYPE_CHECKING:
    from cnnlab.bundle.loading import Bundle


@dataclass(frozen=True)
class Presented:
    prediction: Prediction
    verdict: Verdict  # verdict.kind: likely, uncertain, out_of_distribution, not_classified
    row: dict[str, Any]  # the schema's row (JSON values): CLI --json/--csv, app table, API
    text: str | None  # the line `cnnlab predict` prints; None when not classified (see error)
    # (an image the bundle does not accept prints "file: not screened: reason")
    details: str | None  # the Markdown line of figures under the app's sentence

    @property
    def error(self) -> str | None:
        return self.verdict.error


def present(pred: Prediction, bundle: Bundle, with_patient_id: bool = False) -> Presented:
    """`pred` as every surface shows it, with `bundle`'s classes (the positive one second); a
    DICOM input's PatientID joins its row only `with_patient_id` (the user asked for it)."""
    v = verdict(pred, bundle.classes, bundle.binary)
    return Presented(
        pred,
        v,
        prediction_row(pred, v, with_patient_id),
        text_line(pred, v),
        None if v.error or v.refused else prediction_details(pred, bundle.classes, bundle.binary),
    )


def text_line(pred: Prediction, v: Verdict) -> str | None:
    """`file: label probability (threshold)   FLAG   [top-k]`: the label and its figures first
    (as scripts read them), then what the verdict says of them when it does not headline the
    label (Uncertain, or does not look like the training images)."""
    if v.refused:
        return f"{pred.source}: not screened: {v.refused}"
    if v.error:
        return None
    threshold = f" (threshold {pred.threshold:.2f})" if pred.threshold is not None else ""
    flag = ""
    if v.out_of_distribution:
        flag = (f"   {SENTENCE.upper()} (distance {pred.ood_distance:.2f}, cut-off "
                f"{pred.ood_threshold:.2f})")  # fmt: skip
    elif v.uncertain:
        flag = "   Uncertain"
    top = ", ".join(f"{t['label']} {float(t['probability']):.2%}" for t in pred.top_k)
    return (
        f"{pred.source}: {pred.label} {float(pred.probability or 0):.2%}{threshold}{flag}   [{top}]"
    )
