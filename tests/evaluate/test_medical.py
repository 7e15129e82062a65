"""Medical metrics, bootstrap intervals, calibration and threshold policies, checked against
brute force and against data generated with a known answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, roc_auc_score

from cnnlab.config import DecisionConfig
from cnnlab.evaluate.calibration import (
    brier_score,
    choose_threshold,
    expected_calibration_error,
    fit_decision,
    fit_temperature,
)
from cnnlab.evaluate.medical import binary_metrics, binary_report, bootstrap_intervals


def scores(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.7).astype(int)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0, 1)
    return p, y


def test_binary_metrics_match_the_confusion_matrix() -> None:
    p, y = scores()
    m = binary_metrics(p, y, 0.5)
    tn, fp, fn, tp = confusion_matrix(y, (p >= 0.5).astype(int)).ravel()
    assert m["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["ppv"] == pytest.approx(tp / (tp + fp))
    assert m["npv"] == pytest.approx(tn / (tn + fn))
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["accuracy"] == pytest.approx((tp + tn) / len(y))
    assert m["auc"] == pytest.approx(roc_auc_score(y, p))


def test_bootstrap_intervals_hold_the_estimate_and_shrink_with_more_data() -> None:
    p, y = scores(200)
    ci = bootstrap_intervals(p, y, 0.5, n_boot=400)
    point = binary_metrics(p, y, 0.5)
    for key in ("auc", "sensitivity", "specificity", "accuracy", "brier"):
        lo, hi = ci[key]
        assert lo <= point[key] <= hi and hi - lo > 0
    p2, y2 = scores(3200, seed=1)
    ci2 = bootstrap_intervals(p2, y2, 0.5, n_boot=200)
    assert ci2["auc"][1] - ci2["auc"][0] < (ci["auc"][1] - ci["auc"][0]) / 2  # ~ 1/sqrt(n)


def test_target_sensitivity_threshold_is_the_highest_that_reaches_it() -> None:
    p, y = scores()
    t = choose_threshold(p, y, "target_sensitivity", 0.95)
    sens = lambda th: ((p >= th) & (y == 1)).sum() / (y == 1).sum()  # noqa: E731
    assert sens(t) >= 0.95
    above = p[p >= t].min()  # the lowest score still called positive
    assert sens(np.nextafter(above, 1.0)) < 0.95  # any higher cut misses the target
    assert p[p < t].max() < t < above  # halfway between two scores, not on one


def test_youden_threshold_maximises_j_by_brute_force() -> None:
    p, y = scores()
    t = choose_threshold(p, y, "youden")

    def j(th: float) -> float:
        pred = p >= th
        return pred[y == 1].mean() + (~pred[y == 0]).mean() - 1

    assert j(t) == pytest.approx(max(j(c) for c in np.unique(p)))
    assert choose_threshold(p, y, "fixed", fixed=0.3) == 0.3


def test_temperature_recovers_a_known_overconfidence() -> None:
    rng = np.random.default_rng(0)
    z = torch.tensor(rng.normal(0, 3, 4000))
    y = torch.tensor(rng.random(4000) < torch.sigmoid(z / 2.5).numpy()).long()  # true T = 2.5
    t = fit_temperature(z.view(-1, 1).float(), y)
    assert t == pytest.approx(2.5, rel=0.12)
    p_raw, p_cal = torch.sigmoid(z).numpy(), torch.sigmoid(z / t).numpy()
    assert (
        expected_calibration_error(p_cal, y.numpy())
        < expected_calibration_error(p_raw, y.numpy()) / 2
    )
    assert brier_score(p_cal, y.numpy()) < brier_score(p_raw, y.numpy())


def test_ece_and_brier_on_known_values() -> None:
    y = np.array([0, 1, 1, 0])
    assert brier_score(np.array([0.0, 1.0, 1.0, 0.0]), y) == 0.0
    assert brier_score(np.array([0.5] * 4), y) == pytest.approx(0.25)
    assert expected_calibration_error(np.array([0.5] * 4), y) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([0.95] * 4), y) == pytest.approx(0.45)


def test_decision_from_validation_logits_keeps_its_sensitivity() -> None:
    p, y = scores(500)
    logits = torch.tensor(np.log(p.clip(1e-4, 1 - 1e-4) / (1 - p.clip(1e-4, 1 - 1e-4)))).view(-1, 1)
    d = fit_decision(logits.float(), torch.tensor(y), ["NORMAL", "PNEUMONIA"],
                     DecisionConfig(policy="target_sensitivity", target_sensitivity=0.9))  # fmt: skip
    assert d["positive_class"] == "PNEUMONIA" and d["policy"] == "target_sensitivity:0.9"
    calibrated = torch.sigmoid(logits[:, 0] / d["temperature"]).numpy()
    assert binary_metrics(calibrated, y, d["threshold"])["sensitivity"] >= 0.9
    fixed = fit_decision(None, None, ["a", "b"], DecisionConfig(policy="youden", threshold=0.4))
    assert fixed["threshold"] == 0.4 and fixed["policy"] == "fixed" and fixed["temperature"] == 1.0


def test_binary_report_fields_and_plots(tmp_path: Path) -> None:
    p, y = scores(300)
    logits = torch.tensor(np.log(p.clip(1e-4, 1 - 1e-4) / (1 - p.clip(1e-4, 1 - 1e-4)))).view(-1, 1)
    r = binary_report(logits.float(), torch.tensor(y), ["NORMAL", "PNEUMONIA"], 0.5, 1.0, tmp_path,
                      "test", n_boot=200)  # fmt: skip
    for key in ("auc", "sensitivity", "specificity", "ppv", "npv", "f1", "accuracy", "brier"):
        assert 0.0 <= r[key] <= 1.0 and len(r[f"{key}_ci"]) == 2
    assert r["threshold"] == 0.5 and r["positive_class"] == "PNEUMONIA" and 0 <= r["ece"] <= 1
    for png in ("roc_curve.png", "pr_curve.png", "reliability.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
