"""`cnnlab compare`: two tiny bundles on a built folder. The figures are those of each model's
own predictions (as `cnnlab predict` makes them), paired by file, put through paired.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnlab.bundle import load_bundle
from cnnlab.cli import main
from cnnlab.evaluate.medical import binary_metrics
from cnnlab.evaluate.paired import cohen_kappa, delong_test, mcnemar_rates
from cnnlab.predict import predict_sources
from tests.app.conftest import make_app_bundle
from tests.bundle_edit import edit_meta, setter
from tests.conftest import write_image_folder

CLASSES = ["NORMAL", "PNEUMONIA"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Two binary bundles that disagree on some images (each threshold at the median of its
    model's probabilities), and a labelled folder of 20 + 20 images."""
    base = tmp_path_factory.mktemp("compare")
    folder = write_image_folder(base / "site" / "images", CLASSES, 20, size=64, mode="L", seed=4)
    files = sorted(str(p) for p in folder.rglob("*.png"))
    bundles = []
    for seed in (0, 1):
        bundle = make_app_bundle(base / f"model-{'ab'[seed]}", seed=seed)
        p = [r.positive_probability for r in predict_sources(load_bundle(bundle), files)]
        edit_meta(bundle, setter("decision.threshold", float(np.median(p))))
        bundles.append(bundle)
    return *bundles, folder


def _predicted(bundle: Path, folder: Path):
    files = sorted(str(p) for p in folder.rglob("*.png"))
    loaded = load_bundle(bundle)
    rows = predict_sources(loaded, files)
    p = np.array([r.positive_probability for r in rows])
    y = np.array([CLASSES.index(Path(f).parent.name) for f in files])
    return files, p, y, (p >= loaded.threshold).astype(int)


def test_compare_reports_the_paired_tests_of_each_models_predictions(pair, tmp_path, capsys):
    a, b, folder = pair
    out = tmp_path / "gallery"
    code = main(["compare", str(a), str(b), "--data", str(folder), "--json", "--out", str(out),
                 "--bootstrap", "200", "--prevalence", "0.1"])  # fmt: skip
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    files, p_a, y, d_a = _predicted(a, folder)
    _, p_b, _, d_b = _predicted(b, folder)
    assert r["n"] == 40 and r["counts"] == {"NORMAL": 20, "PNEUMONIA": 20}
    expected = delong_test(p_a, p_b, y)
    for key in ("auc_a", "auc_b", "difference", "z", "p_value"):
        assert r["auc_difference"][key] == pytest.approx(expected[key], abs=1e-5)
    tests = mcnemar_rates(d_a, d_b, y)
    for key in ("sensitivity", "specificity"):
        for field in ("only_a", "only_b", "n"):
            assert r["mcnemar"][key][field] == tests[key][field]
        assert r["mcnemar"][key]["p_value"] == pytest.approx(tests[key]["p_value"])
    assert r["agreement"]["same"] == int((d_a == d_b).sum())
    assert r["agreement"]["kappa"] == pytest.approx(cohen_kappa(d_a, d_b), abs=1e-9)
    for m, p in zip(r["models"], (p_a, p_b), strict=True):
        point = binary_metrics(p, y, m["threshold"], 0.1)
        for key in ("sensitivity", "specificity", "ppv_at_prevalence", "npv_at_prevalence"):
            assert m[key] == pytest.approx(point[key], abs=1e-9)
            lo, hi = m[f"{key}_ci"]
            assert lo <= m[key] <= hi
    # the gallery names exactly the images the two decided differently
    differ = {f for f, x, z in zip(files, d_a, d_b, strict=True) if x != z}
    assert differ and {row["file"] for row in r["disagreements"]} == differ
    assert json.loads((out / "disagreements.json").read_text()) == r["disagreements"]
    assert (out / "disagreements.png").stat().st_size > 1000


def test_compare_prints_a_verdict_and_refuses_what_it_cannot_compare(pair, tmp_path, capsys):
    a, b, folder = pair
    assert main(["compare", str(a), str(b), "--data", str(folder), "--bootstrap", "100"]) == 0
    text = capsys.readouterr().out
    assert "AUC difference A - B" in text and "DeLong z" in text and "McNemar exact" in text
    assert "Cohen's kappa" in text and "no evidence" in text  # the same network, other seeds
    digits = make_app_bundle(tmp_path / "digits", binary=False)
    for args, words in (
        ([str(a), str(digits)], "not a binary model"),
        ([str(a), str(b), "--prevalence", "1.5"], "--prevalence must be between 0 and 1"),
        ([str(a), str(b), "--bootstrap", "5"], "--bootstrap must be"),
    ):
        assert main(["compare", *args, "--data", str(folder)]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
