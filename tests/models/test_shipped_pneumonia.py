"""The shipped `pneumonia` model: found by name, small, carries its decision and card, and
classifies real chest X-rays (JPEG and the same pixels as DICOM) the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.bundle import load_bundle, shipped_bundles
from cnnlab.cli import main
from cnnlab.predict import predict_sources
from tests.conftest import shared_path
from tests.data.test_dicom import write_dicom


@pytest.fixture(scope="module")
def bundle():
    return load_bundle("pneumonia")


def test_shipped_bundle_is_complete_and_small() -> None:
    path = shipped_bundles()["pneumonia"]
    assert (path / "model.safetensors").stat().st_size < 20 * 2**20
    card = (path / "card.md").read_text()
    for text in ("Not for clinical use", "cnnlab train recipes/chest_xray_best.yaml", "95% CI",
                 "threshold policy", "Intended use", "Limitations", "patient"):  # fmt: skip
        assert text in card, text


def test_decision_travels_with_the_model(bundle) -> None:
    d = bundle.decision
    assert bundle.binary and bundle.classes == ["NORMAL", "PNEUMONIA"]
    assert d["positive_class"] == "PNEUMONIA" and d["policy"].startswith("target_sensitivity")
    assert 0 < bundle.threshold < 1 and bundle.temperature > 0
    # the rule was refitted on the external site sample, and both rules are recorded
    assert d["fitted_on"] == "site" and d["data"] == "chest_xray/external" and d["n"] == 312
    (trained,) = bundle.meta["decision_history"]
    assert trained["fitted_on"] == "val" and trained["threshold"] != d["threshold"]
    (site,) = bundle.meta["external"]
    assert site["name"] == "chest_xray/external" and site["n"] == 312
    assert site["cross_validated_folds"] == 5 and site["sensitivity"] >= 0.95  # held-out folds
    assert bundle.meta["metrics"]["n"] == 522 and bundle.meta["metrics"]["auc"] > 0.99
    card = (bundle.path / "card.md").read_text()
    assert "validation (522 images)" in card and "external: chest_xray/external (312 images" in card
    assert "fitted on the site sample `chest_xray/external`" in card
    assert "/work/" not in card  # no machine's absolute path in a card that ships


def test_real_xrays_are_classified(bundle) -> None:
    root = shared_path("chest_xray", "train")
    files = [f for c in ("NORMAL", "PNEUMONIA") for f in sorted((root / c).iterdir())[:4]]
    preds = predict_sources(bundle, files)
    truth = [f.parent.name for f in files]
    correct = sum(p.label == t for p, t in zip(preds, truth, strict=True))
    assert correct >= 7, [(p.label, round(p.positive_probability, 3)) for p in preds]
    for p in preds:
        assert p.threshold == bundle.threshold
        assert p.label == ("PNEUMONIA" if p.positive_probability >= bundle.threshold else "NORMAL")


def test_dicom_of_the_same_xray_gives_the_same_answer(bundle, tmp_path: Path) -> None:
    jpeg = sorted((shared_path("chest_xray", "train") / "PNEUMONIA").iterdir())[0]
    gray = np.asarray(Image.open(jpeg).convert("L"))
    m2 = write_dicom(tmp_path / "m2.dcm", gray)
    m1 = write_dicom(tmp_path / "m1.dcm", (255 - gray).astype(np.uint8), photometric="MONOCHROME1")
    wide = write_dicom(tmp_path / "w.dcm", (gray.astype(np.uint16) * 16), bits=12,
                       WindowCenter=2040, WindowWidth=4081)  # fmt: skip
    ref, *dicoms = predict_sources(bundle, [jpeg, m2, m1, wide])
    for p in dicoms:
        assert p.error is None and p.label == ref.label
        assert p.positive_probability == pytest.approx(ref.positive_probability, abs=0.02)


def test_cli_predict_by_name(capsys) -> None:
    image = sorted((shared_path("chest_xray", "train") / "NORMAL").iterdir())[0]
    assert main(["predict", "pneumonia", str(image)]) == 0
    out = capsys.readouterr().out
    assert str(image) in out and ("NORMAL" in out or "PNEUMONIA" in out) and "threshold" in out
