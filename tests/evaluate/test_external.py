"""External validation and site recalibration: the refitted threshold moves the way the site's
scores moved, the reported figures come from held-out folds, and the records round-trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.bundle import load_bundle
from cnnlab.cli import main
from cnnlab.config import DecisionConfig
from cnnlab.evaluate.calibration import fit_decision
from cnnlab.evaluate.external import SiteScores
from cnnlab.evaluate.medical import binary_metrics
from cnnlab.evaluate.recalibrate import _folds, cross_validated, refit
from tests.app.conftest import make_app_bundle
from tests.conftest import write_image_folder

CLASSES = ["NORMAL", "PNEUMONIA"]
POLICY = DecisionConfig(policy="target_sensitivity", target_sensitivity=0.95)


def site(shift: float, n: int = 300, seed: int = 0) -> SiteScores:
    """Logits of a model that separates the classes, moved by `shift` (another site's exposure
    makes every image look more, or less, like the positive class)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.6).astype(int)
    z = rng.normal(np.where(y == 1, 1.8, -1.8), 1.2) + shift
    groups = [f"p{i // 2}" for i in range(n)]  # two images per patient
    return SiteScores(
        torch.tensor(z, dtype=torch.float32).view(-1, 1), torch.tensor(y), groups, "site"
    )


@pytest.mark.parametrize("shift", [1.5, -1.5])
def test_refit_moves_the_threshold_the_way_the_site_moved(shift: float) -> None:
    home = site(0.0, seed=1)
    trained = fit_decision(home.logits, home.labels, CLASSES, POLICY)
    away = site(shift, seed=2)
    new, before, after, folds = refit(away, CLASSES, trained, POLICY)
    assert folds == 5 and new["fitted_on"] == "site" and new["n"] == 300
    # the threshold is on calibrated probabilities: compare the logits they stand for
    cut = lambda d: d["temperature"] * np.log(d["threshold"] / (1 - d["threshold"]))  # noqa: E731
    if shift > 0:  # everything scores higher: the old rule over-calls, the new one is stricter
        assert cut(new) > cut(trained) + 0.8
        assert before["specificity"] < after["specificity"] - 0.1
    else:  # everything scores lower: the old rule misses positives, the new one finds them
        assert cut(new) < cut(trained) - 0.8
        assert before["sensitivity"] < 0.9 <= after["sensitivity"]
    assert abs(after["sensitivity"] - 0.95) < 0.05  # held out, so near the target, not exactly


def test_cross_validated_figures_come_from_rules_fitted_without_the_image() -> None:
    scores = site(0.7, n=240, seed=3)
    report, used = cross_validated(scores, CLASSES, POLICY, folds=4, seed=0)
    held = _folds(scores, 4, 0)
    assert used == 4 and sorted(np.concatenate(held).tolist()) == list(range(240))
    for test in held:  # no patient on both sides
        inside = {scores.groups[i] for i in test}
        outside = {scores.groups[i] for i in np.setdiff1d(np.arange(240), test)}
        assert not inside & outside
    p, thr = np.zeros(240), np.zeros(240)
    for test in held:  # brute force: fit on the other folds, judge this one
        train = np.setdiff1d(np.arange(240), test)
        rule = fit_decision(scores.logits[train], scores.labels[train], CLASSES, POLICY)
        p[test] = torch.sigmoid(scores.logits[test, 0] / rule["temperature"]).numpy()
        thr[test] = rule["threshold"]
    expected = binary_metrics(p, scores.labels.numpy(), thr)
    for key in ("sensitivity", "specificity", "accuracy", "ppv", "npv"):
        assert report[key] == pytest.approx(expected[key])
    assert report["threshold_range"][0] < report["threshold_range"][1]  # one rule per fold
    in_sample = fit_decision(scores.logits, scores.labels, CLASSES, POLICY)
    p_all = torch.sigmoid(scores.logits[:, 0] / in_sample["temperature"]).numpy()
    fitted = binary_metrics(p_all, scores.labels.numpy(), in_sample["threshold"])
    assert fitted["sensitivity"] >= 0.95  # in-sample meets the target by construction
    assert ((p_all >= in_sample["threshold"]) != (p >= thr)).any()  # held out: other decisions


@pytest.fixture
def xray_bundle(tmp_path: Path) -> Path:
    return make_app_bundle(tmp_path / "xray")


@pytest.fixture
def site_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "hospital" / "site", CLASSES, 14, size=64, mode="L")


def test_evaluate_records_an_external_block_that_round_trips(
    xray_bundle, site_folder, capsys
) -> None:
    assert (
        main(["evaluate", str(xray_bundle), "--data", str(site_folder), "--record", "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    meta = json.loads((xray_bundle / "bundle.json").read_text())
    (block,) = meta["external"]
    assert block["name"] == "hospital/site" and block["n"] == 28 == report["n"]
    assert block["counts"] == {"NORMAL": 14, "PNEUMONIA": 14}
    for key in ("auc", "sensitivity", "specificity", "accuracy"):
        assert block[key] == pytest.approx(report[key]) and len(block[f"{key}_ci"]) == 2
    assert "fitted on the validation split" in block["rule"]
    assert load_bundle(xray_bundle).meta["external"] == meta["external"]  # still loads
    card = (xray_bundle / "card.md").read_text()
    assert "external: hospital/site (28 images)" in card and "validation (120 images)" in card
    # recorded again under the same name: replaced, not appended; another name: added
    assert main(["evaluate", str(xray_bundle), "--data", str(site_folder), "--record"]) == 0
    assert main(["evaluate", str(xray_bundle), "--data", str(site_folder), "--record",
                 "--name", "second look"]) == 0  # fmt: skip
    names = [b["name"] for b in json.loads((xray_bundle / "bundle.json").read_text())["external"]]
    assert names == ["hospital/site", "second look"]


def test_recalibrate_writes_a_new_bundle_with_both_rules(xray_bundle, site_folder, capsys) -> None:
    before = (xray_bundle / "bundle.json").read_bytes()
    out = xray_bundle.parent / "xray-site"
    args = ["recalibrate", str(xray_bundle), "--data", str(site_folder), "--out", str(out),
            "--target-sensitivity", "0.9", "--folds", "4"]  # fmt: skip
    assert main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (xray_bundle / "bundle.json").read_bytes() == before  # the source bundle is untouched
    meta = json.loads((out / "bundle.json").read_text())
    d = meta["decision"]
    assert d["fitted_on"] == "site" and d["data"] == "hospital/site" and d["n"] == 28
    assert d["threshold"] == printed["decision"]["threshold"] and "site sample" in d["policy_text"]
    (old,) = meta["decision_history"]
    assert old["threshold"] == 0.37 and old["temperature"] == 1.2
    (block,) = meta["external"]
    assert block["cross_validated_folds"] == 4 == printed["folds"]
    assert block["sensitivity"] == pytest.approx(printed["cross_validated"]["sensitivity"])
    assert meta["recalibrated_from"] == "xray" and meta["name"] == "xray-site"
    bundle = load_bundle(out)
    assert bundle.threshold == d["threshold"] and bundle.temperature == d["temperature"]
    card = (out / "card.md").read_text()
    assert "fitted on the site sample `hospital/site` (28 images)" in card
    assert "replaced: threshold 0.3700" in card and "4-fold cross-validated" in card
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".xray-site")]  # no temp left
    assert out.stat().st_mode & 0o055 and (out / "bundle.json").stat().st_mode & 0o044  # not 0700
    # an existing --out is refused and left alone
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err


def test_bad_site_folders_get_a_clear_error(xray_bundle, tmp_path, capsys) -> None:
    one_class = write_image_folder(tmp_path / "one", ["PNEUMONIA"], 12, size=64, mode="L")
    few = write_image_folder(tmp_path / "few", CLASSES, 3, size=64, mode="L")
    empty = tmp_path / "empty"
    (empty / "NORMAL").mkdir(parents=True)
    (empty / "PNEUMONIA").mkdir()
    broken = tmp_path / "broken"
    for c in CLASSES:
        (broken / c).mkdir(parents=True)
        for i in range(12):
            (broken / c / f"{i}.png").write_bytes(b"not a png at all")
    unknown = write_image_folder(tmp_path / "unknown", ["NORMAL", "COVID"], 12, size=64, mode="L")
    expect = {one_class: "readable NORMAL images", few: "at least 10 of each class",
              empty: "no dataset found", broken: "no readable images", unknown: "COVID"}  # fmt: skip
    for folder, words in expect.items():
        code = main(["recalibrate", str(xray_bundle), "--data", str(folder),
                     "--out", str(tmp_path / f"out-{folder.name}")])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and words in err, (folder.name, err)
        assert "Traceback" not in err and not (tmp_path / f"out-{folder.name}").exists()
