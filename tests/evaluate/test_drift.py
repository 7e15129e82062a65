"""`cnnlab drift`: a period whose scores moved is called drift, one drawn like the validation
split is not, from the decision store and from `predict --json` logs alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cnnlab.cli import main
from cnnlab.evaluate.drift import drift_report, population_stability_index
from cnnlab.records.store import Decision, DecisionStore
from tests.app.conftest import make_app_bundle
from tests.bundle_edit import edit_meta, setter

T = 1.2  # make_app_bundle's temperature


def _logits(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.6
    return rng.normal(np.where(y, 1.5, -1.5), 1.0) + shift


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A binary bundle whose bundle.json keeps 400 validation logits, as a trained one does."""
    folder = make_app_bundle(tmp_path_factory.mktemp("drift") / "xray")
    z = _logits(400, 0)
    scores = {"logits": [round(float(v), 4) for v in z], "labels": [int(v > 0) for v in z]}
    return edit_meta(folder, setter("validation_scores", scores))


def _record(z: np.ndarray, temperature: float, start: datetime) -> None:
    p = 1 / (1 + np.exp(-z / temperature))
    DecisionStore().record(
        Decision(surface="api", bundle="xray", probability=float(v), temperature=temperature,
                 threshold=0.37, time=start + timedelta(minutes=i))
        for i, v in enumerate(p)
    )  # fmt: skip


def test_drift_is_found_in_a_shifted_period_and_not_in_an_unshifted_one(bundle, capsys) -> None:
    week1 = datetime(2026, 11, 2, tzinfo=UTC)
    week2 = datetime(2026, 11, 9, tzinfo=UTC)
    week3 = datetime(2026, 11, 16, tzinfo=UTC)
    _record(_logits(300, 1), T, week1)  # drawn like the validation split
    _record(_logits(300, 2, shift=1.2), T, week2)  # every image scores higher: new exposure
    _record(_logits(300, 3), 2.5, week3)  # unshifted, recorded by a recalibrated rule (T 2.5)
    verdicts = {}
    for name, since, until in (("same", "2026-11-02", "2026-11-09"),
                               ("shifted", "2026-11-09", "2026-11-16"),
                               ("recalibrated", "2026-11-16", "2026-11-23")):  # fmt: skip
        assert main(["drift", "--bundle", str(bundle), "--since", since, "--until", until,
                     "--json"]) == 0  # fmt: skip
        verdicts[name] = r = json.loads(capsys.readouterr().out)
        assert r["n"] == 300 and r["reference_n"] == 400
    assert verdicts["same"]["verdict"] == "stable" and verdicts["same"]["psi"] < 0.1
    assert verdicts["recalibrated"]["verdict"] == "stable"  # put back on the bundle's scale
    shifted = verdicts["shifted"]
    assert shifted["verdict"] == "drift" and shifted["psi"] > 0.25
    assert shifted["ks"]["p_value"] < 1e-6
    assert shifted["positive_share"]["period"] > shifted["positive_share"]["reference"] + 0.1
    assert main(["drift", "--bundle", str(bundle), "--since", "2026-11-09", "--until",
                 "2026-11-16"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "DRIFT: the inputs (or the share of positive cases) have moved" in text and "PSI" in text


def test_drift_from_predict_json_logs(bundle, tmp_path, capsys) -> None:
    for name, shift in (("same", 0.0), ("shifted", -1.5)):
        p = 1 / (1 + np.exp(-_logits(200, 5, shift) / T))
        rows = [{"file": f"{i}.png", "positive_probability": float(v), "screened": True}
                for i, v in enumerate(p)]  # fmt: skip
        rows.append({"file": "x.dcm", "screened": False, "reason": "not a chest X-ray"})
        (tmp_path / f"{name}.json").write_text(json.dumps({"model": "xray", "predictions": rows}))
        assert main(["drift", "--bundle", str(bundle), "--from-json", str(tmp_path / f"{name}.json"),
                     "--json"]) == 0  # fmt: skip
        r = json.loads(capsys.readouterr().out)
        assert r["n"] == 200  # the unscreened input is no decision
        assert r["verdict"] == ("stable" if name == "same" else "drift")
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["drift", "--bundle", str(bundle), "--from-json", str(tmp_path / "bad.json")]) == 2
    assert "not `cnnlab predict --json` output" in capsys.readouterr().err
    assert main(["drift", "--bundle", str(bundle), "--since", "last tuesday"]) == 2
    assert "--since 'last tuesday': not a date or time" in capsys.readouterr().err


def test_out_of_distribution_share_and_small_periods() -> None:
    rng = np.random.default_rng(0)
    ref = {
        "n": 500,
        "p": rng.random(500),
        "positive_share": 0.5,
        "ood_share": 0.01,
        "threshold": 0.5,
    }
    same = {"n": 400, "p": rng.random(400), "ood_checked": 400, "ood_flagged": 5}
    many = {**same, "ood_flagged": 40}  # 10% unlike the training images, against 1%
    assert drift_report(ref, same)["verdict"] == "stable"
    r = drift_report(ref, many)
    assert r["verdict"] == "drift" and "did not look like the training images" in r["reasons"][0]
    few = {"n": 12, "p": rng.random(12), "ood_checked": 0, "ood_flagged": 0}
    assert drift_report(ref, few)["verdict"] == "too few"
    # PSI: 0 for the same sample, large for a moved one, and finite with empty bins
    x = rng.normal(size=1000)
    assert population_stability_index(x, x) == pytest.approx(0.0, abs=1e-12)
    assert population_stability_index(x, x + 3) > 1.0
