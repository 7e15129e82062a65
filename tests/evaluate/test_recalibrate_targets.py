"""recalibrate's targets: a cross-validated figure that misses the target is said, with the
shortfall and what reaching it would cost; a PPV at the site's prevalence can be the target."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cnnlab.cli import main
from cnnlab.cli.judging import missed_text
from cnnlab.config import DecisionConfig
from cnnlab.evaluate.calibration import at_prevalence, fit_decision, rates_by_threshold
from cnnlab.evaluate.medical import binary_metrics
from cnnlab.evaluate.recalibrate import _folds, cross_validated, refit
from tests.app.conftest import make_app_bundle
from tests.conftest import write_image_folder
from tests.evaluate.test_external import CLASSES, site


def _held_out(scores, cfg, folds=5):
    """Each image's probability under the rule fitted on the other folds (brute force)."""
    n = len(scores.labels)
    p = np.zeros(n)
    for test in _folds(scores, folds, 0):
        train = np.setdiff1d(np.arange(n), test)
        rule = fit_decision(scores.logits[train], scores.labels[train], CLASSES, cfg)
        p[test] = torch.sigmoid(scores.logits[test, 0] / rule["temperature"]).numpy()
    return p


def test_a_missed_sensitivity_target_is_said_with_its_cost_in_specificity() -> None:
    scores = site(0.0, n=300, seed=7)
    cfg = DecisionConfig(policy="target_sensitivity", target_sensitivity=0.99)
    report, _ = cross_validated(scores, CLASSES, cfg)
    assert report["sensitivity"] < 0.99  # held out, the in-sample 0.99 is not reached
    m = report["missed_target"]
    assert m["metric"] == "sensitivity" and m["target"] == 0.99
    assert m["short_by"] == pytest.approx(0.99 - report["sensitivity"])
    assert m["cost_metric"] == "specificity" and m["cost_from"] == report["specificity"]
    p, y = _held_out(scores, cfg), scores.labels.numpy()
    at = binary_metrics(p, y, m["threshold"])
    assert at["sensitivity"] >= 0.99 and at["specificity"] == pytest.approx(m["cost_to"])
    higher = p[p > m["threshold"]].min()  # the next threshold up no longer reaches it
    assert binary_metrics(p, y, higher)["sensitivity"] < 0.99
    assert m["cost_to"] < m["cost_from"]
    text = missed_text(m)
    assert "misses the target 0.99 by" in text and "specificity is" in text
    met, _ = cross_validated(scores, CLASSES, DecisionConfig(policy="target_sensitivity",
                                                             target_sensitivity=0.9))  # fmt: skip
    assert met["sensitivity"] >= 0.9 and "missed_target" not in met  # met: nothing said


def test_a_ppv_target_at_the_sites_prevalence() -> None:
    scores = site(0.0, n=300, seed=8)
    cfg = DecisionConfig(policy="target_ppv", target_ppv=0.6, prevalence=0.1)
    rule, _, after, _ = refit(scores, CLASSES, {"threshold": 0.5}, cfg)
    assert (
        rule["policy"] == "target_ppv:0.6@0.1"
        and "PPV >= 0.6 at prevalence 0.1" in rule["policy_text"]
    )
    p = torch.sigmoid(scores.logits[:, 0] / rule["temperature"]).numpy()
    y = scores.labels.numpy()
    fitted = binary_metrics(p, y, rule["threshold"], prevalence=0.1)
    assert fitted["ppv_at_prevalence"] >= 0.6  # in-sample the target holds...
    cuts, sens, spec = rates_by_threshold(p, y)
    ppv = at_prevalence(sens, spec, 0.1)[0]
    lower = cuts[cuts < rule["threshold"]]  # ...and no more sensitive rule reaches it
    assert all(ppv[cuts == c][0] < 0.6 for c in lower[-5:])
    assert after["prevalence"] == 0.1 and "ppv_at_prevalence_ci" in after


def test_recalibrate_cli_prevalence_and_ppv_target(tmp_path, capsys) -> None:
    bundle = make_app_bundle(tmp_path / "xray")
    folder = write_image_folder(tmp_path / "hospital" / "site", CLASSES, 14, size=64, mode="L")
    base = ["recalibrate", str(bundle), "--data", str(folder), "--folds", "3"]
    assert main([*base, "--out", str(tmp_path / "a"), "--prevalence", "0.1"]) == 0
    text = capsys.readouterr().out
    assert "ppv at 0.1" in text and "npv at 0.1" in text
    block = json.loads((tmp_path / "a" / "bundle.json").read_text())["external"][-1]
    assert block["prevalence"] == 0.1 and "ppv_at_prevalence_ci" in block
    assert main([*base, "--out", str(tmp_path / "b"), "--target-ppv", "0.5"]) == 2
    assert "--target-ppv needs --prevalence" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "c"), "--target-ppv", "0.5",
                 "--prevalence", "0.2", "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["decision"]["policy"] == "target_ppv:0.5@0.2"
    assert out["cross_validated"]["prevalence"] == 0.2
