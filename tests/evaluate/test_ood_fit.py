"""The out-of-distribution check: the distance is Mahalanobis's, training fits it into the
bundle, predict / the rows / the API report it with the label, `cnnlab ood-fit` adds it to an
older bundle, and bundles without it keep working."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from cnnlab.bundle import load_bundle
from cnnlab.evaluate.ood_fit import fit_part
from cnnlab.predict import predict_sources
from cnnlab.report.rows import prediction_rows
from cnnlab.runtime.ood import OOD_FILE
from tests.bundle_edit import BASE, reseal
from tests.conftest import digit_images


def test_distance_is_mahalanobis_to_the_nearest_class_mean():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))).float()
    y = torch.from_numpy(rng.integers(0, 3, 400))
    x += torch.nn.functional.one_hot(y, 5)[:, :5].float() * 4
    check, record = fit_part(x, y)
    assert record["rank"] == 5  # narrow features are kept whole: the distance is exact
    means = np.stack([x[y == k].numpy().mean(0) for k in range(3)])
    cov = check.components.T.numpy() @ np.diag(check.variances.numpy()) @ check.components.numpy()
    prec = np.linalg.inv(cov)
    q = x[:7].numpy()
    expected = [min(np.sqrt((v - m) @ prec @ (v - m)) for m in means) for v in q]
    assert check.distances(x[:7]).numpy() == pytest.approx(expected, rel=1e-4)


def test_low_rank_form_still_ranks_far_inputs_far():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(600, 300))).float()
    y = torch.from_numpy(rng.integers(0, 2, 600))
    check, record = fit_part(x, y, max_rank=32)
    assert check.components.shape == (32, 300) and record["rank"] == 32
    near, far = check.distances(x[:50]), check.distances(x[:50] * 4)
    assert bool((far > near).all())


def test_training_fits_the_check_and_predict_flags_foreign_inputs(tiny_runs):
    run = tiny_runs[0]
    meta = json.loads((run / "bundle.json").read_text())
    ood = meta["ood"]
    assert ood["score"] == "mahalanobis" and ood["percentile"] == 99 and ood["fitted_on"] == "val"
    # the first stage at <= 1/4 of the input's height: its channel statistics (mean and std of
    # 16 channels), and the head's input
    assert [(p["layer"], p["take"]) for p in ood["parts"]] == [
        ("features.stage2_pool", "stats"), ("head.fc", "input")]  # fmt: skip
    assert ood["parts"][0]["features"] == 32 and (run / OOD_FILE).is_file()
    assert "does not look like the training images" in (run / "card.md").read_text()
    bundle = load_bundle(run)
    x, _ = digit_images(200, seed=7)  # new images like the training ones
    same = torch.from_numpy(x)[:, None]
    _, d_same = bundle.predict_checked(same)
    _, d_inverted = bundle.predict_checked(255 - same)
    assert float((d_same > bundle.ood.threshold).float().mean()) <= 0.05
    assert float((d_inverted > bundle.ood.threshold).float().mean()) >= 0.95
    preds = predict_sources(bundle, [(255 - x[0]).tobytes()], ["inv.raw"])  # unreadable bytes
    assert preds[0].error and preds[0].out_of_distribution is None


def test_rows_carry_the_flag_and_the_label(tiny_runs, tmp_path, capsys):
    from PIL import Image

    bundle = load_bundle(tiny_runs[0])
    x, _ = digit_images(2, seed=9)
    files = []
    for name, arr in (("like.png", x[0]), ("inverted.png", 255 - x[1])):
        Image.fromarray(arr).save(tmp_path / name)
        files.append(tmp_path / name)
    preds = predict_sources(bundle, files, [f.name for f in files])
    rows = prediction_rows(preds, bundle.classes, bundle.binary)
    assert [r["out_of_distribution"] for r in rows] == [False, True]
    assert rows[1]["label"] in bundle.classes  # the label is still given
    assert rows[1]["result"].startswith("Does not look like the training images (distance ")
    assert rows[1]["ood_distance"] > bundle.ood.threshold > rows[0]["ood_distance"]
    from cnnlab.cli import main

    assert main(["predict", str(tiny_runs[0]), *map(str, files)]) == 0
    like, inverted = capsys.readouterr().out.splitlines()  # the plain text says so too
    assert "DOES NOT LOOK LIKE" not in like and "DOES NOT LOOK LIKE THE TRAINING IMAGES" in inverted


def test_a_bundle_without_the_check_keeps_working(tiny_runs, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_runs[0], old)
    meta = json.loads((old / "bundle.json").read_text())
    del meta["ood"]
    (old / "bundle.json").write_text(json.dumps(meta))
    (old / OOD_FILE).unlink()
    reseal(old, BASE)
    bundle = load_bundle(old)
    assert bundle.ood is None
    x, _ = digit_images(3, seed=2)
    probs, distances = bundle.predict_checked(torch.from_numpy(x)[:, None])
    assert distances is None and probs.shape == (3, 10)
    row = prediction_rows(predict_sources(bundle, [_png(x[0])]), bundle.classes, False)[0]
    assert row["out_of_distribution"] is None and row["ood_distance"] is None
    assert "likely" in row["result"] or row["result"].startswith("Uncertain")


def test_copy_bundle_ships_the_check_and_the_gallery(tiny_runs, tmp_path):
    from cnnlab.bundle import copy_bundle

    shipped = copy_bundle(tiny_runs[0], tmp_path / "shipped")
    assert sorted(p.name for p in shipped.iterdir()) == [
        "bundle.json", "card.md", "manifest.json", "mistakes.png", "model.safetensors",
        OOD_FILE]  # fmt: skip
    assert load_bundle(shipped).ood is not None


def test_ood_fit_adds_the_check_to_an_older_bundle(tiny_runs, tmp_path, capsys):
    from cnnlab.cli import main

    def cli(*args):
        code = main([str(a) for a in args])
        return code, capsys.readouterr()

    old = tmp_path / "old"
    shutil.copytree(tiny_runs[0], old)
    meta = json.loads((old / "bundle.json").read_text())
    fitted = meta.pop("ood")
    (old / "bundle.json").write_text(json.dumps(meta))
    (old / OOD_FILE).unlink()
    reseal(old, BASE)
    data = tiny_runs[0].parents[1] / "idx"
    code, out = cli("ood-fit", old, "--data", data, "--percentile", "95")
    assert code == 0, out.err
    assert "cut-off" in out.out and "95th percentile of 120 val images" in out.out
    meta = json.loads((old / "bundle.json").read_text())
    assert meta["ood"]["percentile"] == 95 and meta["ood"]["n_cutoff"] == fitted["n_cutoff"]
    for new, old_part in zip(meta["ood"]["parts"], fitted["parts"], strict=True):
        assert new["scale"] < old_part["scale"]  # each 95th percentile below the 99th
    assert load_bundle(old).ood is not None
    copy = tmp_path / "copy"
    assert cli("ood-fit", old, "--data", data, "--out", copy)[0] == 0
    assert (copy / OOD_FILE).is_file() and json.loads((copy / "bundle.json").read_text())[
        "name"
    ] == "copy"
    code, out = cli("ood-fit", "pneumonia", "--data", data)
    assert code == 2 and "read-only" in out.err


def test_a_recalibrated_bundle_keeps_its_check(tmp_path, capsys, monkeypatch):
    from cnnlab.cli import main

    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    from tests.app.conftest import make_app_bundle
    from tests.conftest import write_image_folder

    xray = make_app_bundle(tmp_path / "xray")
    train = write_image_folder(tmp_path / "train", ["NORMAL", "PNEUMONIA"], 30, size=64, mode="L")
    site = write_image_folder(tmp_path / "site", ["NORMAL", "PNEUMONIA"], 12, size=64, mode="L",
                              seed=1)  # fmt: skip
    assert main(["ood-fit", str(xray), "--data", str(train)]) == 0
    out = tmp_path / "xray-site"
    assert main(["recalibrate", str(xray), "--data", str(site), "--out", str(out)]) == 0
    capsys.readouterr()
    again = load_bundle(out)
    assert again.ood is not None and again.ood.threshold == load_bundle(xray).ood.threshold
    assert "does not look like the training images" in (out / "card.md").read_text()


def test_the_api_answers_with_the_flag_and_the_label(tiny_runs):
    from fastapi.testclient import TestClient

    from cnnlab.serve import create_app

    bundle = load_bundle(tiny_runs[0])
    x, _ = digit_images(1, seed=4)
    files = [("files", ("like.png", _png(x[0]), "image/png")),
             ("files", ("inverted.png", _png(255 - x[0]), "image/png"))]  # fmt: skip
    with TestClient(create_app(bundle)) as client:
        body = client.post("/v1/predict", files=files).json()
        models = client.get("/v1/models").json()
    flags = [p["out_of_distribution"] for p in body["predictions"]]
    assert flags == [False, True]
    assert all(p["label"] in bundle.classes for p in body["predictions"])
    assert models[0]["ood_threshold"] == pytest.approx(bundle.ood.threshold, rel=1e-6)


def _png(arr: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_the_check_reads_a_dense_layer_narrow_enough_for_a_covariance():
    """The brief's 150x150 folder CNN flattens 36,992 features into its first dense layer: a
    covariance of that width would need 11 GB, so the check reads the next one (512 wide)."""
    import torch.nn as nn

    from cnnlab.models import create_model
    from cnnlab.runtime.ood import MAX_FEATURES, default_parts

    model = create_model("keras_folder_cnn")
    parts = dict((take, layer) for layer, take in default_parts(model, (3, 150, 150)))
    dense = dict(model.named_modules())[parts["input"]]
    assert isinstance(dense, nn.Linear) and dense.in_features == 512 <= MAX_FEATURES
    mnist = create_model("keras_mnist_cnn")  # 1,600 wide: its first dense layer, as before
    first = [n for n, m in mnist.named_modules() if isinstance(m, nn.Linear)][0]
    assert default_parts(mnist, (1, 28, 28))[-1] == (first, "input")
