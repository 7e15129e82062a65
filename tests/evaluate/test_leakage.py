"""Leakage between a bundle's training images and the data it is judged or recalibrated on:
the fingerprints a bundle keeps (sealed, checked), evaluate's warning, recalibrate's refusal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from cnnlab.bundle import check_bundle, load_bundle
from cnnlab.bundle.save import add_training_hashes
from cnnlab.cli import main
from tests.app.conftest import make_app_bundle
from tests.bundle_edit import reseal
from tests.conftest import write_image_folder
from tests.data.test_audit import structured

CLASSES = ["NORMAL", "PNEUMONIA"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))


@pytest.fixture
def trained_on(tmp_path: Path) -> tuple[Path, Path]:
    """A bundle that keeps the fingerprints of the folder it (notionally) trained on."""
    train = write_image_folder(tmp_path / "train", CLASSES, 12, size=64, mode="L", seed=5)
    for i in range(3):  # pictures with shapes, not noise: what a re-encoded X-ray still is
        Image.fromarray(structured(40 + i, 64)).convert("L").save(train / "PNEUMONIA" / f"s{i}.png")
    bundle = make_app_bundle(tmp_path / "xray")
    record = add_training_hashes(bundle, train)
    assert record["n"] == 27 and record["source"] == f"{tmp_path.name}/train"
    return bundle, train


def site_with_leaks(tmp_path: Path, train: Path) -> Path:
    """14 new images a class, plus one training image copied and one re-encoded (JPEG q70)."""
    site = write_image_folder(tmp_path / "hospital" / "site", CLASSES, 14, size=64, mode="L")
    shutil.copy(train / "NORMAL" / "img_3.png", site / "NORMAL" / "copied.png")
    Image.open(train / "PNEUMONIA" / "s1.png").save(site / "PNEUMONIA" / "again.jpg", quality=70)
    return site


def test_the_fingerprints_are_sealed_and_checked(trained_on, tmp_path, capsys):
    bundle, _ = trained_on
    checks, loaded = check_bundle(bundle)
    assert loaded is not None and len(loaded.training_hashes) == 27
    assert any(c.name == "hashes" and "27 training images" in c.detail for c in checks)
    assert (
        "training_hashes.safetensors" in json.loads((bundle / "manifest.json").read_text())["files"]
    )
    # changed after sealing: the seal names it
    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    data = bytearray((bad / "training_hashes.safetensors").read_bytes())
    data[-1] ^= 1
    (bad / "training_hashes.safetensors").write_bytes(bytes(data))
    assert main(["check", str(bad)]) == 2
    assert "training_hashes.safetensors changed since it was sealed" in capsys.readouterr().err
    # resealed by hand but not matching its record: refused by the load, not trusted
    meta = json.loads((bad / "bundle.json").read_text())
    meta["training_hashes"]["n"] = 28
    (bad / "bundle.json").write_text(json.dumps(meta))
    reseal(bad)
    checks, loaded = check_bundle(bad)
    assert loaded is None and checks[-1].name == "hashes" and "(28, 32)" in checks[-1].detail


def test_evaluate_warns_when_its_data_holds_training_images(trained_on, tmp_path, capsys):
    bundle, train = trained_on
    site = site_with_leaks(tmp_path, train)
    assert main(["evaluate", str(bundle), "--data", str(site), "--json"]) == 0
    captured = capsys.readouterr()
    seen = json.loads(captured.out)["leakage"]["training_overlap"]
    assert (seen["n"], seen["leaked"], seen["exact"], seen["near"]) == (30, 2, 1, 1)
    assert {Path(m["file"]).name for m in seen["list"]} == {"copied.png", "again.jpg"}
    assert "2 of 30 image(s) are in xray's training data" in captured.err
    assert "again.jpg" in captured.err and "copied.png" in captured.err


def test_evaluate_warns_about_duplicates_and_an_unchecked_bundle(tmp_path, capsys):
    bundle = make_app_bundle(tmp_path / "old")  # no fingerprints kept
    site = write_image_folder(tmp_path / "site", CLASSES, 14, size=64, mode="L")
    shutil.copy(site / "NORMAL" / "img_1.png", site / "NORMAL" / "twice.png")
    assert main(["evaluate", str(bundle), "--data", str(site), "--json"]) == 0
    captured = capsys.readouterr()
    leak = json.loads(captured.out)["leakage"]
    assert leak["duplicates"]["exact_groups"] == 1 and leak["training_overlap"] is None
    assert "img_1.png = twice.png" in captured.err and "not checked" in captured.err


def test_recalibrate_refuses_a_site_sample_that_overlaps_training(trained_on, tmp_path, capsys):
    bundle, train = trained_on
    site = site_with_leaks(tmp_path, train)
    out = tmp_path / "xray-site"
    args = ["recalibrate", str(bundle), "--data", str(site), "--out", str(out), "--folds", "3"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "is not a fair site sample: 2 of 30 image(s)" in err and "again.jpg" in err
    assert "Traceback" not in err and not out.exists()
    # without the two leaked images it goes ahead, and the new bundle keeps the fingerprints
    (site / "NORMAL" / "copied.png").unlink()
    (site / "PNEUMONIA" / "again.jpg").unlink()
    assert main(args) == 0
    assert len(load_bundle(out).training_hashes) == 27


def test_fingerprint_adds_them_to_an_older_bundle_or_a_copy(tmp_path, capsys):
    train = write_image_folder(tmp_path / "data", CLASSES, 5, size=64, mode="L", splits=["train"])
    write_image_folder(train, CLASSES, 2, size=64, mode="L", splits=["test"], seed=1)
    old = make_app_bundle(tmp_path / "old")
    weights = (old / "model.safetensors").read_bytes()
    assert (
        main(["fingerprint", str(old), "--data", str(train), "--out", str(tmp_path / "copy")]) == 0
    )
    assert "fingerprints of 10 training images" in capsys.readouterr().out  # not test/'s 4
    assert load_bundle(old).training_hashes is None  # the source is untouched
    copy = load_bundle(tmp_path / "copy")
    assert len(copy.training_hashes) == 10 and copy.name == "copy"
    assert (tmp_path / "copy" / "model.safetensors").read_bytes() == weights
    assert main(["fingerprint", "pneumonia", "--data", str(train)]) == 2
    assert "read-only" in capsys.readouterr().err
