"""PPV and NPV at a site's prevalence: Bayes' theorem on a published worked example, and the
figures through `evaluate --prevalence` (printed, in JSON, recorded on the card)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnlab.cli import main
from cnnlab.evaluate.medical import at_prevalence, binary_metrics, bootstrap_intervals
from tests.app.conftest import make_app_bundle
from tests.conftest import write_image_folder


def liver_scans() -> tuple[np.ndarray, np.ndarray]:
    """Altman & Bland, 'Diagnostic tests 2: predictive values', BMJ 1994;309:102 (data of their
    note 1): 344 liver scans against pathology. 258 abnormal (231 scans abnormal, 27 normal),
    86 normal (32 scans abnormal, 54 normal). p is the scan's verdict, 1 or 0."""
    y = np.array([1] * 258 + [0] * 86)
    p = np.array([1.0] * 231 + [0.0] * 27 + [1.0] * 32 + [0.0] * 54)
    return p, y


def test_predictive_values_at_another_prevalence_as_published() -> None:
    p, y = liver_scans()
    m = binary_metrics(p, y, 0.5, prevalence=0.25)
    # "If the same test was used in a different clinical setting where the prevalence of
    # abnormality was 0.25 we would have a positive predictive value of 0.45 and a negative
    # predictive value of 0.95." (Altman & Bland 1994)
    assert round(m["ppv_at_prevalence"], 2) == 0.45 and round(m["npv_at_prevalence"], 2) == 0.95
    # at the study's own prevalence (258/344 = 0.75) Bayes gives back the table's 231/263, 54/81
    ppv, npv = at_prevalence(m["sensitivity"], m["specificity"], 258 / 344)
    assert ppv == pytest.approx(231 / 263) == pytest.approx(m["ppv"])
    assert npv == pytest.approx(54 / 81) == pytest.approx(m["npv"])


def test_intervals_at_the_prevalence_come_from_the_bootstrap_of_both_rates() -> None:
    p, y = liver_scans()
    ci = bootstrap_intervals(p, y, 0.5, n_boot=500, seed=1, stratified=True, prevalence=0.25)
    m = binary_metrics(p, y, 0.5, prevalence=0.25)
    lo, hi = ci["ppv_at_prevalence"]
    assert lo < m["ppv_at_prevalence"] < hi
    # the ends are Bayes at the rates' own bootstrap distribution, so about as wide: PPV at a
    # low prevalence hangs on specificity (86 normals), far looser than the table's PPV
    assert hi - lo > 2 * (ci["ppv"][1] - ci["ppv"][0])


def test_evaluate_prints_records_and_carries_the_prevalence(tmp_path, capsys) -> None:
    bundle = make_app_bundle(tmp_path / "xray")
    folder = write_image_folder(tmp_path / "hospital" / "site", ["NORMAL", "PNEUMONIA"], 12,
                                size=64, mode="L")  # fmt: skip
    args = ["evaluate", str(bundle), "--data", str(folder), "--prevalence", "0.1"]
    assert main([*args, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["prevalence"] == 0.1
    ppv, npv = at_prevalence(r["sensitivity"], r["specificity"], 0.1)
    assert r["ppv_at_prevalence"] == pytest.approx(ppv) and len(r["npv_at_prevalence_ci"]) == 2
    assert main([*args, "--record"]) == 0
    text = capsys.readouterr().out
    assert "at prevalence 0.1" in text and "ppv" in text
    card = (bundle / "card.md").read_text()
    assert "| ppv_at_prevalence |" in card and "at prevalence 0.1" in card
    assert main([*args[:-1], "0"]) == 2
    assert "--prevalence must be between 0 and 1" in capsys.readouterr().err
