"""`present`: one prediction's verdict, row and line of text from one function, so the CLI's
text says what the sentence says (Uncertain included)."""

from __future__ import annotations

from types import SimpleNamespace

from cnnlab.predict import Prediction
from cnnlab.report.present import present
from cnnlab.report.rows import FIELDS, prediction_row
from cnnlab.report.verdict import prediction_details, verdict

BINARY = SimpleNamespace(classes=["NORMAL", "PNEUMONIA"], binary=True)
DIGITS = SimpleNamespace(classes=[str(i) for i in range(10)], binary=False)


def binary_pred(p: float, t: float = 0.37, source: str = "x.png") -> Prediction:
    label = BINARY.classes[int(p >= t)]
    return Prediction(source, label, p if label == "PNEUMONIA" else 1 - p,
                      [{"label": label, "probability": p if p >= t else 1 - p}],
                      positive_probability=p, threshold=t)  # fmt: skip


def test_each_kind_of_answer_reads_the_same_in_the_sentence_the_row_and_the_text():
    ood = binary_pred(0.91, source="odd.png")
    ood.ood_distance, ood.ood_threshold = 40.2, 12.5
    top = [{"label": "3", "probability": 0.41}, {"label": "8", "probability": 0.38}]
    cases = [  # (prediction, bundle, verdict kind)
        (binary_pred(0.91), BINARY, "likely"),
        (binary_pred(0.52), BINARY, "uncertain"),
        (binary_pred(0.33), BINARY, "uncertain"),  # confident, but next to the threshold
        (Prediction("d.png", "3", 0.41, top), DIGITS, "uncertain"),
        (Prediction("s.png", "7", 0.97, [{"label": "7", "probability": 0.97}]), DIGITS, "likely"),
        (ood, BINARY, "out_of_distribution"),
        (Prediction("bad.png", error="empty file (0 bytes)"), BINARY, "not_classified"),
    ]
    for pred, bundle, kind in cases:
        shown = present(pred, bundle)
        v = verdict(pred, bundle.classes, bundle.binary)
        assert shown.verdict == v and v.kind == kind, (pred, v)
        assert shown.row == prediction_row(pred, v) and tuple(shown.row) == FIELDS
        assert shown.row["result"] == v.sentence
        if kind == "not_classified":
            assert shown.text is None and shown.details is None
            assert shown.error == "empty file (0 bytes)"
            continue
        assert shown.details == prediction_details(pred, bundle.classes, bundle.binary)
        assert shown.text.startswith(f"{pred.source}: {pred.label} {pred.probability:.2%}")
        assert ("Uncertain" in shown.text) == (kind == "uncertain")
        assert ("DOES NOT LOOK LIKE THE TRAINING IMAGES" in shown.text) == (
            kind == "out_of_distribution"
        )
    assert present(binary_pred(0.52), BINARY).text == (
        "x.png: PNEUMONIA 52.00% (threshold 0.37)   Uncertain   [PNEUMONIA 52.00%]"
    )
    assert present(ood, BINARY).text == (
        "odd.png: PNEUMONIA 91.00% (threshold 0.37)   DOES NOT LOOK LIKE THE TRAINING IMAGES "
        "(distance 40.20, cut-off 12.50)   [PNEUMONIA 91.00%]"
    )
