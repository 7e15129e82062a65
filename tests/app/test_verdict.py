"""The sentence under each result: the label is headlined only when the model is confident."""

from __future__ import annotations

import csv
import io

from cnnlab.predict import Prediction
from cnnlab.report.rows import prediction_rows, rows_csv
from cnnlab.report.verdict import nice_label, verdict

BINARY = ["NORMAL", "PNEUMONIA"]


def binary_pred(p: float, t: float = 0.37, source: str = "x.png") -> Prediction:
    label = BINARY[int(p >= t)]
    return Prediction(source, label, p if label == "PNEUMONIA" else 1 - p,
                      positive_probability=p, threshold=t)  # fmt: skip


def test_confident_positive_reads_like_the_brief():
    v = verdict(binary_pred(0.91), BINARY, binary=True)
    assert v.sentence == "Pneumonia likely (P(Pneumonia) 0.91; threshold 0.37)"
    assert (v.headline, v.label, v.uncertain) == ("Pneumonia likely", "PNEUMONIA", False)


def test_confident_negative_states_the_same_probability_and_says_which():
    v = verdict(binary_pred(0.04), BINARY, binary=True)
    assert v.sentence == "Normal likely (P(Pneumonia) 0.04; threshold 0.37)"
    assert not v.uncertain and not v.positive  # the page shows it in the negative class's colour
    assert verdict(binary_pred(0.91), BINARY, binary=True).positive


def test_out_of_distribution_says_so_before_any_label_and_keeps_the_label():
    pred = binary_pred(0.91)
    pred.ood_distance, pred.ood_threshold = 40.2, 12.5
    v = verdict(pred, BINARY, binary=True)
    assert v.out_of_distribution and v.uncertain and v.label == "PNEUMONIA"
    assert v.sentence.startswith(
        "Does not look like the training images (distance 40.20, cut-off 12.50)"
    )
    assert "would say Pneumonia" in v.sentence and "likely" not in v.sentence
    pred.ood_distance = 3.0  # inside the cut-off: the ordinary sentence
    assert verdict(pred, BINARY, binary=True).sentence.startswith("Pneumonia likely")
    row = prediction_rows([pred], BINARY, binary=True)[0]
    assert row["out_of_distribution"] is False and row["ood_distance"] == 3.0


def test_above_threshold_but_near_chance_is_uncertain_not_a_headline():
    v = verdict(binary_pred(0.52), BINARY, binary=True)
    assert v.uncertain and v.headline == "Uncertain"
    assert v.sentence.startswith("Uncertain (P(Pneumonia) 0.52; threshold 0.37)")
    assert "would say Pneumonia" in v.sentence and "likely" not in v.sentence


def test_confident_but_next_to_the_threshold_is_uncertain():
    # p(normal) = 0.67 clears the confidence bar, but a 0.03 change flips the decision
    v = verdict(binary_pred(0.33), BINARY, binary=True)
    assert v.uncertain and v.label == "NORMAL"


def test_probability_just_above_threshold_never_prints_equal_to_it():
    v = verdict(binary_pred(0.3712, t=0.371), BINARY, binary=True, margin=0.0, min_confidence=0.0)
    assert "(P(Pneumonia) 0.3712; threshold 0.3710)" in v.sentence


def test_a_probability_never_prints_as_certain():
    assert (
        verdict(binary_pred(0.9992), BINARY, True).sentence
        == "Pneumonia likely (P(Pneumonia) 0.999; threshold 0.37)"
    )
    assert (
        verdict(binary_pred(0.0004), BINARY, True).sentence
        == "Normal likely (P(Pneumonia) 0.0004; threshold 0.37)"
    )


def test_unreadable_input_is_not_classified():
    v = verdict(Prediction("bad.png", error="empty file (0 bytes)"), BINARY, binary=True)
    assert v.error == "empty file (0 bytes)" and v.label is None
    assert v.sentence == "Not classified: empty file (0 bytes)"


def test_multiclass_confident_and_uncertain():
    top = [{"label": "3", "probability": 0.41}, {"label": "8", "probability": 0.38}]
    v = verdict(Prediction("d.png", "3", 0.41, top), [str(i) for i in range(10)], binary=False)
    assert v.uncertain and v.sentence == "Uncertain: 3 (0.41) or 8 (0.38)"
    sure = verdict(Prediction("d.png", "7", 0.97, [{"label": "7", "probability": 0.97}]),
                   [str(i) for i in range(10)], binary=False)  # fmt: skip
    assert sure.sentence == "7 likely (0.97)" and not sure.uncertain


def test_nice_label():
    assert nice_label("PNEUMONIA") == "Pneumonia"
    assert nice_label("cat") == "cat" and nice_label("7") == "7" and nice_label("A") == "A"


def test_rows_round_trip_through_csv():
    preds = [binary_pred(0.91, source="a.png"), Prediction("b.jpg", error="corrupt, truncated")]
    rows = prediction_rows(preds, BINARY, binary=True)
    back = list(csv.DictReader(io.StringIO(rows_csv(rows))))
    assert [r["file"] for r in back] == ["a.png", "b.jpg"]
    assert back[0]["result"] == "Pneumonia likely (P(Pneumonia) 0.91; threshold 0.37)"
    assert float(back[0]["positive_probability"]) == 0.91 and float(back[0]["threshold"]) == 0.37
    assert back[1]["error"] == "corrupt, truncated" and back[1]["label"] == ""
    assert rows_csv([]) == ""
