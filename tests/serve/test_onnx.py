"""ONNX export: parity with PyTorch on real image files, dynamic batch, calibrated binary
decisions identical to the PyTorch path, refusals that leave no file behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from fastapi.testclient import TestClient

from cnnlab.cli import main
from cnnlab.deploy import use_backend
from cnnlab.deploy.backends import load_with_backend
from cnnlab.deploy.onnx import OnnxBackend, export_onnx, parity_images
from cnnlab.errors import CnnlabError
from cnnlab.predict import predict_sources
from cnnlab.serve import create_app
from tests.conftest import digit_images, write_image_folder
from tests.serve.conftest import make_bundle, png_bytes


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    return write_image_folder(root, ["a", "b", "c"], per_class=8, size=40, mode="L")


def test_export_writes_a_checked_file_with_dynamic_batch(digit_bundle, image_folder, tmp_path):
    images, source = parity_images(digit_bundle, [str(image_folder)], n=16)
    assert images.shape == (16, 1, 28, 28) and "files under" in source
    out = tmp_path / "m.onnx"
    data, result = export_onnx(digit_bundle, out, images, source)
    assert out.read_bytes() == data and result.size_bytes == len(data)
    assert result.parity.n == 16 and result.parity.max_abs_diff <= 1e-4
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["cnnlab.classes"]) == digit_bundle.classes
    assert json.loads(meta["cnnlab.preprocess"]) == digit_bundle.preprocess.to_dict()
    dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param and not dim0.dim_value  # symbolic batch axis
    backend = OnnxBackend(out)
    ref = digit_bundle.predict_proba(images)
    for n in (1, 3, 16):  # any batch size runs and matches
        got = torch.softmax(backend.logits(images[:n]), 1)
        assert torch.allclose(got, ref[:n], atol=1e-5)
    probs = backend.session.run(["probabilities"], {"images": images.numpy()})[0]
    assert torch.allclose(torch.from_numpy(probs), ref, atol=1e-5)  # calibrated output too


def test_test_time_augmentation_is_in_the_exported_graph(image_folder, tmp_path):
    bundle = make_bundle(tmp_path / "tta", tta="mirror+translate")
    images, source = parity_images(bundle, [str(image_folder)], n=8)
    _, result = export_onnx(bundle, tmp_path / "tta.onnx", images, source)
    assert result.parity.max_abs_diff <= 1e-4
    bundle.model.tta = "none"  # the views change the answer, so parity above covered them
    assert not torch.allclose(
        bundle.predict_proba(images),
        OnnxBackend(tmp_path / "tta.onnx").logits(images).softmax(1),
        atol=1e-4,
    )


def test_binary_bundle_decides_alike_on_both_backends(binary_bundle, digits, tmp_path):
    uploads = [png_bytes(d) for d in digits]
    torch_preds = predict_sources(binary_bundle, uploads, top_k=2)
    export_onnx(binary_bundle, binary_bundle.path / "model.onnx")
    use_backend(binary_bundle, "onnx")  # finds BUNDLE/model.onnx
    try:
        onnx_preds = predict_sources(binary_bundle, uploads, top_k=2)
    finally:
        use_backend(binary_bundle, "torch")
    for a, b in zip(torch_preds, onnx_preds, strict=True):
        assert a.label == b.label and b.threshold == 0.3
        assert abs(a.positive_probability - b.positive_probability) <= 1e-5
    # the decision is threshold 0.3 on p = sigmoid(z / 2): check one by hand
    z = binary_bundle.model(binary_bundle.preprocess.normalize(
        binary_bundle.preprocess.load(uploads[0])[None]))[0, 0].item()  # fmt: skip
    p = torch.sigmoid(torch.tensor(z / 2.0)).item()
    assert abs(onnx_preds[0].positive_probability - p) < 1e-5
    assert onnx_preds[0].label == ("PNEUMONIA" if p >= 0.3 else "NORMAL")


def test_failed_parity_or_stale_file_is_refused(digit_bundle, tmp_path, monkeypatch):
    import cnnlab.deploy.onnx as deploy_onnx

    out = tmp_path / "m.onnx"
    monkeypatch.setattr(deploy_onnx, "PARITY_LIMIT", -1.0)  # any difference now fails
    with pytest.raises(CnnlabError, match="parity check"):
        export_onnx(digit_bundle, out)
    assert not out.exists() and not list(tmp_path.iterdir())  # no file, no temporary left
    monkeypatch.undo()
    other = make_bundle(tmp_path / "other", seed=7)
    export_onnx(other, out)
    with pytest.raises(CnnlabError, match="other weights"):
        use_backend(digit_bundle, "onnx", out)
    with pytest.raises(CnnlabError, match="no ONNX file"):
        use_backend(digit_bundle, "onnx", tmp_path / "missing.onnx")


def test_cli_export_and_predict_with_onnx(digit_bundle, image_folder, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export", str(digit_bundle.path), "--onnx", str(out),
                 "--images", str(image_folder)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "parity: max |p_torch - p_onnx| = " in printed and "24 images" in printed
    assert out.is_file()
    files = sorted(str(p) for p in image_folder.rglob("*.png"))[:5]
    results = []
    for backend in (["--backend", "torch"], ["--backend", "onnx", "--onnx", str(out)]):
        assert main(["predict", str(digit_bundle.path), *files, "--json", *backend]) == 0
        results.append(json.loads(capsys.readouterr().out)["predictions"])
    for a, b in zip(*results, strict=True):
        assert a["label"] == b["label"] and abs(a["probability"] - b["probability"]) < 1e-5
    assert main(["export", str(digit_bundle.path), "--onnx", str(tmp_path / "x.onnx"),
                 "--images", str(tmp_path / "nowhere")]) == 2  # fmt: skip
    assert "no such file or folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def checked_bundle(tmp_path_factory):
    """A digits bundle with an out-of-distribution check fitted on toy digits (held in memory)."""
    from cnnlab.data.dataset import ImageData
    from cnnlab.evaluate.ood_fit import fit_ood

    bundle = make_bundle(tmp_path_factory.mktemp("bundles") / "checked", seed=3)
    x, y = digit_images(300, seed=11)
    split = [ImageData(torch.from_numpy(x[s])[:, None], torch.from_numpy(y[s]), bundle.classes)
             for s in (slice(0, 240), slice(240, None))]  # fmt: skip
    bundle.ood = fit_ood(bundle.model, *split, bundle.preprocess, bundle.runtime)
    return bundle


def test_onnx_runs_one_engine_per_batch_with_the_ood_distances_of_torch(checked_bundle, digits):
    bundle = checked_bundle
    x = torch.from_numpy(np.concatenate([digits[:12], 255 - digits[:4]]))[:, None]
    torch_probs, torch_distances = bundle.predict_checked(x)
    use_backend(bundle, "onnx")  # no file: exported in memory, with the check's features
    forwards, runs = [], []  # PyTorch forward passes; ONNX Runtime session runs
    hook = bundle.model.register_forward_pre_hook(lambda m, args: forwards.append(len(args[0])))
    session, real_run = bundle.backend.session, bundle.backend.session.run
    session.run = lambda *a, **kw: runs.append(1) or real_run(*a, **kw)
    try:
        probs, distances = bundle.predict_checked(x, batch_size=len(x))
        assert (forwards, len(runs)) == ([], 1)  # one engine, one run for the batch
        with TestClient(create_app(bundle)) as client:  # the API's batches: the same
            upload = [("files", (f"{i}.png", png_bytes(digits[i]), "image/png")) for i in range(3)]
            rows = client.post("/v1/predict", files=upload).json()["predictions"]
        assert forwards == [] and len(runs) == 2 and len(rows) == 3
    finally:
        hook.remove()
        use_backend(bundle, "torch")
    assert torch.allclose(probs, torch_probs, atol=1e-5)
    assert torch.allclose(distances, torch_distances, rtol=1e-4, atol=1e-4)
    flags = bundle.ood.flags(distances)
    assert torch.equal(flags, bundle.ood.flags(torch_distances)) and flags[-4:].all()


def test_an_export_carries_the_check_and_one_from_before_it_is_refused(checked_bundle, tmp_path):
    bundle = checked_bundle
    _, result = export_onnx(bundle, tmp_path / "checked.onnx")
    assert result.parity.ood_max_diff is not None and result.parity.ood_max_diff <= 1e-3
    assert "out-of-distribution distances: max |d_torch - d_onnx|" in result.parity.describe()
    assert OnnxBackend(tmp_path / "checked.onnx").parts == bundle.ood.layers
    use_backend(bundle, "onnx", tmp_path / "checked.onnx")
    use_backend(bundle, "torch")
    check, bundle.ood = bundle.ood, None
    try:  # a file exported before the check was fitted
        _, result = export_onnx(bundle, tmp_path / "plain.onnx")
    finally:
        bundle.ood = check
    assert result.parity.ood_max_diff is None
    with pytest.raises(CnnlabError, match="out-of-distribution check .*re-export it"):
        use_backend(bundle, "onnx", tmp_path / "plain.onnx")
    assert bundle.backend is None


def test_an_in_memory_export_is_kept_by_weights_and_found_again(tmp_path, monkeypatch):
    """`serve --backend onnx` without a file exports once per weights (issue 29: 18.8 s on every
    start); the copy lives under the data folder, never in the (read-only, sealed) bundle."""
    import cnnlab.deploy.onnx_source as kept
    from cnnlab.bundle import load_bundle

    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "data"))
    bundle = make_bundle(tmp_path / "b")
    before = sorted(p.name for p in (tmp_path / "b").iterdir())
    exports, checks = [], []
    real_export, real_check = kept.export_onnx, kept.parity_check
    monkeypatch.setattr(kept, "export_onnx", lambda b: exports.append(b) or real_export(b))
    monkeypatch.setattr(kept, "parity_check", lambda *a: checks.append(a) or real_check(*a))
    use_backend(bundle, "onnx")
    path = kept.export_cache_path(bundle)
    assert path.is_file() and path.is_relative_to(tmp_path / "data")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == before  # the bundle untouched
    again = load_with_backend(tmp_path / "b", "onnx")
    assert len(exports) == 1  # the second start read the kept export
    assert checks == []  # its digest matched what passed the check: not checked again (2 s)
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    ref = load_bundle(tmp_path / "b").predict_proba(images)  # PyTorch
    assert torch.allclose(again.predict_proba(images), ref, atol=1e-5)
    assert again.built is None  # nor was the PyTorch model built: the kept graph stands for it
    code = (
        "import sys; from cnnlab.deploy.backends import load_with_backend; "
        f"b = load_with_backend({str(tmp_path / 'b')!r}, 'onnx'); "
        "print(b.built is None, [m for m in ('timm', 'torchvision') if m in sys.modules])"
    )
    started = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "CNNLAB_DATA": str(tmp_path / "data")},
    )
    assert started.stdout.split() == ["True", "[]"], started.stderr  # a warm start: no 2 s of timm
    (tmp_path / "mine.onnx").write_bytes(path.read_bytes())  # a user's file is not ours:
    assert load_with_backend(tmp_path / "b", "onnx", tmp_path / "mine.onnx").built is not None

    other = make_bundle(tmp_path / "other", seed=1)  # other weights: another key
    assert kept.export_cache_path(other) != path
    path.write_bytes(path.read_bytes()[:100])  # a damaged file is exported again
    use_backend(load_bundle(tmp_path / "b"), "onnx")
    assert len(exports) == 2 and len(path.read_bytes()) > 100
    use_backend(other, "onnx")  # another model's valid export put in its place is checked
    path.write_bytes(kept.export_cache_path(other).read_bytes())  # again, fails, is redone
    n_checks = len(checks)
    use_backend(load_bundle(tmp_path / "b"), "onnx")
    assert len(checks) == n_checks + 1 and len(exports) == 4
    assert path.read_bytes() != kept.export_cache_path(other).read_bytes()
