"""Every page of the app, headless (Streamlit AppTest): what a user sees and can do."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import cnnlab.app.resources as resources
import cnnlab.bundle.catalog as catalog
from cnnlab.bundle import load_bundle
from cnnlab.predict import predict_sources
from cnnlab.report.verdict import verdict
from tests.app.conftest import SIZE, dicom_image, encode, xray_like
from tests.bundle_edit import reseal


def texts(at, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def page_texts(at) -> str:
    kinds = ("markdown", "success", "warning", "error", "info", "caption", "title")
    return "\n".join(t for k in kinds for t in texts(at, k))


def upload(at, *files: tuple[str, bytes, str]):
    at.file_uploader(key="classify_files").set_value(list(files)).run()
    assert not at.exception, at.exception
    return at


def test_classify_several_uploads_batched_with_sentences_and_csv(app_env, app_bundle):
    at = app_env(app_bundle).run()
    assert not at.exception
    assert texts(at, "title") == ["Classify"]
    assert len(at.success) == 0 and len(at.dataframe) == 0  # no results before an upload
    calls = []  # every forward pass of the cached model: batch size, gradients on?
    model = resources.get_bundle(str(app_bundle)).model
    hook = model.register_forward_hook(
        lambda m, args, out: calls.append((args[0].shape[0], torch.is_grad_enabled()))
    )
    files = [("a.png", encode(xray_like(0)), "image/png"),
             ("b.jpg", encode(xray_like(5, 200), "JPEG"), "image/jpeg"),
             ("c.dcm", dicom_image(xray_like(9)), "application/dicom")]  # fmt: skip
    at.file_uploader(key="classify_files").set_value(files).run()  # classified on arrival
    at.toggle(key="gradcam").set_value(False).run()  # a rerun without new uploads: no new pass
    hook.remove()
    assert not at.exception
    assert calls == [(3, False)]  # one batch for the three uploads, no autograd
    bundle = load_bundle(app_bundle)
    expected = predict_sources(bundle, [f[1] for f in files], [f[0] for f in files])
    sentences = (
        texts(at, "error")
        + texts(at, "success")
        + [w for w in texts(at, "warning") if "threshold" in w]
    )
    for pred in expected:
        assert verdict(pred, bundle.classes, True).sentence in sentences
        assert (
            f"calibrated probability of Pneumonia: **{pred.positive_probability:.3f}** · "
            f"threshold: **0.370**" in " ".join(texts(at, "markdown"))
        )
    assert len(at.error) == 3 and all(  # the positive class in its own colour (red)
        t.startswith("Pneumonia likely (P(Pneumonia) 0.") for t in texts(at, "error")
    )
    assert len(at.success) == 0
    assert len(at.image) == 3  # each image as the model sees it
    table = at.dataframe[0].value
    assert list(table["file"]) == ["a.png", "b.jpg", "c.dcm"]
    assert list(table["positive_probability"]) == pytest.approx(
        [p.positive_probability for p in expected]
    )
    assert at.get("download_button")[0].label == "Download results (CSV)"
    notes = " ".join(texts(at, "caption"))
    assert "JPEG 200x200 resized to 64x64" in notes and "DICOM: windowed" in notes


def test_an_uncertain_result_is_not_headlined(app_env, app_bundle, tmp_path):
    import json

    unsure = tmp_path / "unsure"
    shutil.copytree(app_bundle, unsure)
    meta = json.loads((unsure / "bundle.json").read_text())
    meta["decision"]["temperature"] = 20.0  # the most calibration fits: it hardly knows (p ~0.5)
    (unsure / "bundle.json").write_text(json.dumps(meta))
    reseal(unsure)
    at = upload(app_env(unsure).run(), ("a.png", encode(xray_like(0)), "image/png"))
    assert len(at.success) == 0
    warning = next(w for w in texts(at, "warning") if "threshold" in w)
    assert warning.startswith("Uncertain (P(Pneumonia) 0.5") and "likely" not in warning
    assert list(at.dataframe[0].value["uncertain"]) == [True]


def test_gradcam_toggle_adds_an_overlay_and_keeps_the_results(app_env, app_bundle):
    at = upload(app_env(app_bundle).run(), ("a.png", encode(xray_like(1)), "image/png"))
    before = texts(at, "error") + texts(at, "success") + texts(at, "warning")
    assert len(at.image) == 1
    at.toggle(key="gradcam").set_value(True).run()
    assert not at.exception
    assert len(at.image) == 3  # the image, its overlay and the overlay's colour bar
    assert at.image[1].proto.imgs[0].caption.startswith("Grad-CAM for ")
    assert texts(at, "error") + texts(at, "success") + texts(at, "warning") == before


def test_model_is_loaded_once_per_process(app_env, app_bundle, tmp_path, monkeypatch):
    own = tmp_path / "own-bundle"  # a path no other test has loaded, so the cache starts cold
    shutil.copytree(app_bundle, own)
    calls = []
    real = resources.load_bundle
    monkeypatch.setattr(resources, "load_bundle", lambda p, **kw: calls.append(p) or real(p, **kw))
    at = app_env(own).run()
    upload(at, ("a.png", encode(xray_like(0)), "image/png"))
    at.toggle(key="gradcam").set_value(True).run()
    app_env(own).run()  # a second session (another browser tab)
    assert calls == [str(own)]


def test_model_picker_lists_every_bundle_and_switches(
    app_env, app_bundle, digits_bundle, tmp_path, monkeypatch
):
    runs = tmp_path / "more-runs"
    shutil.copytree(digits_bundle, runs / "digits")
    monkeypatch.setattr(catalog, "shipped_bundles", lambda: {"pneumonia": app_bundle})
    at = app_env(None, [runs]).run()
    picker = at.sidebar.selectbox[0]
    assert picker.label == "Model"
    assert picker.options[0] == "pneumonia (shipped)" and picker.value == "pneumonia (shipped)"
    assert any(o.endswith("more-runs/digits") for o in picker.options)
    picker.set_value(next(o for o in picker.options if o.endswith("digits"))).run()
    assert not at.exception
    assert "classes 0 / 1 / 2" in texts(at, "caption")[0]
    upload(at, ("d.png", encode(xray_like(2, SIZE)), "image/png"))
    assert "top classes:" in " ".join(texts(at, "markdown"))
    assert "p_PNEUMONIA" not in at.dataframe[0].value.columns


def test_sidebar_about_says_intended_use_and_not_for_diagnosis(app_env, app_bundle):
    at = app_env(app_bundle).run()
    assert "About" in texts(at.sidebar, "header")
    about = " ".join(texts(at.sidebar, "markdown"))
    assert "**Intended use.** Teaching and research" in about
    assert any("Not for diagnosis" in w for w in texts(at.sidebar, "warning"))
    assert any("MB each" in c for c in texts(at.sidebar, "caption"))


def test_no_bundle_says_how_to_get_one(app_env, monkeypatch):
    monkeypatch.setattr(catalog, "shipped_bundles", dict)
    for page in (None, "views/explain_page.py", "views/model_page.py"):
        at = app_env(None)
        if page:
            at.run()
            at.switch_page(page)
        at.run()
        assert not at.exception
        message = " ".join(texts(at, "warning"))
        assert "No model bundle is available" in message
        assert "cnnlab train recipes/chest_xray_best.yaml" in message
        assert "cnnlab app pneumonia" in message


def test_a_broken_bundle_is_reported_not_crashed(app_env, app_bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(app_bundle, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    at = app_env(broken).run()
    assert not at.exception
    assert "cannot be loaded" in texts(at, "error")[0]
    assert "safetensors" in texts(at, "error")[0]


def test_explain_page_filters_maps_and_layer_table(app_env, app_bundle):
    at = app_env(app_bundle).run()
    at.switch_page("views/explain_page.py").run()
    assert not at.exception
    assert texts(at, "title") == ["Explain"]
    layer = at.selectbox(key="explain_layer")
    assert layer.options[0].startswith("features.stage1_conv1  (Conv2d, output 60x60x4, RF 5x5)")
    assert len(at.image) == 1  # filters need no image
    table = at.dataframe[0].value
    assert {"layer", "output", "params", "receptive_field", "jump"} <= set(table.columns)
    assert table.loc[table["layer"] == "features.stage2_conv1", "receptive_field"].item() == "14x14"
    at.file_uploader(key="explain_file").set_value(
        ("x.png", encode(xray_like(4)), "image/png")
    ).run()
    assert not at.exception and len(at.image) == 2
    layer.set_value("features.stage2_conv1").run()
    assert not at.exception
    assert "output 26x26x8" in " ".join(texts(at, "markdown"))
    assert [i.proto.imgs[0].caption for i in at.image] == [
        "learned filters",
        "feature maps for x.png",
    ]
    at.file_uploader(key="explain_file").set_value(
        ("bad.png", b"\x89PNG broken", "image/png")
    ).run()
    assert not at.exception
    assert "Cannot show feature maps" in texts(at, "error")[0]


def test_model_page_card_metrics_and_plots(app_env, app_bundle):
    at = app_env(app_bundle).run()
    at.switch_page("views/model_page.py").run()
    assert not at.exception
    assert texts(at, "title") == ["Model"]
    metrics = at.dataframe[0].value
    assert list(metrics["metric"])[:3] == ["ROC-AUC", "Sensitivity", "Specificity"]
    auc = json.loads((app_bundle / "bundle.json").read_text())["metrics"]
    lo, hi = auc["auc_ci"]
    assert list(metrics.iloc[0]) == ["ROC-AUC", f"{auc['auc']:.4f} ({lo:.3f}-{hi:.3f})"]
    assert metrics.loc[metrics["metric"] == "ECE", "validation (120)"].item() == f"{auc['ece']:.4f}"
    assert [i.proto.imgs[0].caption for i in at.image] == [
        "ROC curve", "confusion matrix", "calibration (reliability diagram)"
    ]  # fmt: skip
    card = " ".join(texts(at, "markdown"))
    assert "Not for clinical use" in card and "## Decision rule" in card  # the card, ...
    assert "## Figures" not in card and "| auc |" not in card  # ... without the table above it
    assert len(at.dataframe) == 1  # the figures once
    assert any("threshold **0.370**" in t for t in texts(at, "markdown"))


def test_model_page_shows_external_figures_beside_validation(app_env, app_bundle, tmp_path):
    from cnnlab.evaluate.external import external_block, record_external

    site = tmp_path / "site"
    shutil.copytree(app_bundle, site)
    meta = json.loads((site / "bundle.json").read_text())
    meta["decision"].update(fitted_on="site", data="hospital/xrays", n=312)
    (site / "bundle.json").write_text(json.dumps(meta))
    reseal(site)
    report = {**meta["metrics"], "n": 312, "auc": 0.9612, "auc_ci": [0.94, 0.98]}
    record_external(site, external_block(report, "hospital/xrays", ["NORMAL", "PNEUMONIA"],
                                         "the rule refitted on this site", cross_validated=5))  # fmt: skip
    at = app_env(site).run()
    at.switch_page("views/model_page.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table.columns) == ["metric", "validation (120)", "hospital/xrays (312 CV)"]
    assert table.iloc[0].tolist()[2] == "0.9612 (0.940-0.980)"
    assert any("fitted on the site sample `hospital/xrays` (312 images)" in t
               for t in texts(at, "markdown"))  # fmt: skip
    assert any("rule fitted on the other folds" in t for t in texts(at, "caption"))


def test_model_page_of_a_bundle_without_metrics(app_env, digits_bundle, tmp_path):
    import json

    bare = tmp_path / "bare"
    shutil.copytree(digits_bundle, bare)
    meta = json.loads((bare / "bundle.json").read_text())
    meta["metrics"] = {}
    (bare / "bundle.json").write_text(json.dumps(meta))
    reseal(bare)
    at = app_env(bare).run()
    at.switch_page("views/model_page.py").run()
    assert not at.exception
    assert "holds no validation metrics" in texts(at, "info")[0]


def test_runs_page_lists_the_runs_and_overlays_their_curves(app_env, app_bundle, tiny_runs):
    at = app_env(app_bundle, [tiny_runs[0].parent]).run()
    at.switch_page("views/runs_page.py").run()
    assert not at.exception
    assert texts(at, "title") == ["Runs"]
    table = at.dataframe[0].value
    assert list(table["name"]) == ["tiny-a", "tiny-b"]
    assert list(table["epochs"]) == ["2", "1"] and set(table["model"]) == {"fastnet"}
    assert at.multiselect(key="runs_picked").value == [str(p) for p in tiny_runs]
    charts = at.get("vega_lite_chart")  # the overlaid curves: loss, val loss, val accuracy
    assert len(charts) == 3 and len(at.image) == 0
    assert all('"tooltip"' in c.proto.spec for c in charts)  # a value on hover
    at.multiselect(key="runs_picked").set_value([]).run()
    assert len(at.get("vega_lite_chart")) == 0 and "Pick runs" in texts(at, "info")[0]


def test_runs_page_without_runs_says_how_to_make_one(app_env, app_bundle):
    at = app_env(app_bundle).run()
    at.switch_page("views/runs_page.py").run()
    assert not at.exception and "cnnlab train recipes/mnist_fast.yaml" in texts(at, "info")[0]


def test_model_page_of_a_trained_run_mistakes_ood_and_a_readable_matrix(
    app_env, tiny_runs, tmp_path
):
    assert json.loads((tiny_runs[1] / "mistakes.json").read_text())  # one epoch: some mistakes
    at = app_env(tiny_runs[1]).run()
    at.switch_page("views/model_page.py").run()
    assert not at.exception
    captions = [i.proto.imgs[0].caption for i in at.image]
    assert captions[0].startswith("confusion matrix (validation)")  # alone: no ROC placeholders
    assert captions[1].startswith("per true class, the wrong answers")  # mistakes.png
    assert not any("ROC" in t for t in texts(at, "info"))
    table = at.dataframe[0].value
    assert list(table.columns) == ["metric", "validation (120)"]  # no empty interval columns
    assert any(
        "farther than" in t and "from the training images" in t for t in texts(at, "markdown")
    )
    flawless = tmp_path / "flawless"  # all right: it says so instead of an empty gallery
    shutil.copytree(tiny_runs[1], flawless)
    (flawless / "mistakes.json").write_text("[]\n")
    perfect = app_env(flawless).run()
    perfect.switch_page("views/model_page.py").run()
    assert texts(perfect, "success") == ["No mistakes on the validation split."]
    assert len(perfect.image) == 1


def test_model_page_warns_about_a_degenerate_model(app_env, digits_bundle, tmp_path):
    one = tmp_path / "one-class"
    shutil.copytree(digits_bundle, one)
    meta = json.loads((one / "bundle.json").read_text())
    meta["metrics"]["confusion_matrix"] = [
        [12 if j == 3 else 0 for j in range(10)] for _ in range(10)
    ]
    (one / "bundle.json").write_text(json.dumps(meta))
    reseal(one)
    at = app_env(one).run()
    at.switch_page("views/model_page.py").run()
    assert not at.exception
    assert texts(at, "error")[0].startswith("Warning: it predicts 3 for 100% of the 120")
    assert "no gallery of its mistakes" in " ".join(texts(at, "info"))
    assert "no out-of-distribution check" in " ".join(texts(at, "info"))


def test_classify_says_when_an_image_does_not_look_like_the_training_images(app_env, tiny_runs):
    from tests.conftest import digit_images

    x, _ = digit_images(1, seed=3)
    at = app_env(tiny_runs[0]).run()
    upload(
        at,
        ("like.png", encode(x[0]), "image/png"),
        ("inverted.png", encode(255 - x[0]), "image/png"),
    )
    flagged = texts(at, "info")
    assert len(flagged) == 1 and flagged[0].startswith("Does not look like the training images")
    assert list(at.dataframe[0].value["out_of_distribution"]) == [False, True]
    assert "distance from the training images" in " ".join(texts(at, "markdown"))


def test_model_page_reads_a_run_folders_extra_files_capped(app_env, tiny_runs, tmp_path):
    """mistakes.json and mistakes.png sit beside the sealed files, unsealed: a 1 GB sparse one
    was read whole by the page; now each is read capped and the page says what it left out."""
    import os
    import resource

    run = tmp_path / "huge"
    shutil.copytree(tiny_runs[1], run)
    for name in ("mistakes.json", "mistakes.png"):
        os.truncate(run / name, 2**30)  # sparse: no disk used
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    at = app_env(run).run()
    at.switch_page("views/model_page.py").run()
    assert not at.exception
    assert any("mistakes.png" in t and "not shown" in t for t in texts(at, "warning"))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before < 2**29
