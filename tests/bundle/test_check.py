"""A corpus of broken bundles: each is refused by every load with one clear error naming the
field (never exit 1, never a silent wrong answer), and `cnnlab check` reports it."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from cnnlab.bundle import check_bundle, load_bundle, save_bundle
from cnnlab.cli import main
from cnnlab.data import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.predict import label_probabilities
from tests.bundle_edit import reseal, setter


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model("fastnet", in_channels=1, num_classes=1, widths=[4, 8])
    pre = Preprocess(channels=1, size=[28, 28], mean=[0.13], std=[0.3])
    decision = {"threshold": 0.4, "temperature": 1.5, "policy": "fixed"}
    return save_bundle(tmp_path_factory.mktemp("bundles") / "good", model, "fastnet",
                       {"in_channels": 1, "num_classes": 1, "widths": [4, 8]}, pre,
                       ["NORMAL", "PNEUMONIA"], class_mode="binary", decision=decision,
                       metrics={"auc": float("nan"), "accuracy": 0.5})  # fmt: skip


def variant(good: Path, tmp_path: Path, change) -> Path:
    """A copy of the good bundle with bundle.json changed by `change(meta)` (NaN allowed, as
    a hand edit or an older cnnlab would write it), resealed: the load reaches the field."""
    out = tmp_path / "bad"
    shutil.copytree(good, out)
    meta = json.loads((out / "bundle.json").read_text())
    change(meta)
    (out / "bundle.json").write_text(json.dumps(meta))
    reseal(out)
    return out


BAD_FIELDS = [
    ("decision.threshold", math.nan, "decision.threshold must be a finite number"),
    ("decision.threshold", -1, r"decision.threshold must be in \(0, 1\)"),
    ("decision.threshold", 5, r"decision.threshold must be in \(0, 1\)"),
    ("decision.threshold", 1.0, r"decision.threshold must be in \(0, 1\)"),
    ("decision.threshold", "0.5", "decision.threshold must be a number"),
    ("decision.threshold", None, "decision.threshold must be a number"),
    ("decision.temperature", -1.0, r"decision.temperature must be in \(0, 100\]"),
    ("decision.temperature", 0, r"decision.temperature must be in \(0, 100\]"),
    ("decision.temperature", math.nan, "decision.temperature must be a finite number"),
    ("decision", [0.5], "decision must be a mapping"),
    ("preprocess.std", [0.0], "preprocess.std must be positive"),
    ("preprocess.mean", [math.nan], "preprocess.mean must be finite"),
    ("preprocess.mean", [0.1, 0.2], "preprocess.mean must be a list of 1 numbers"),
    ("preprocess.size", [60000, 60000], "preprocess.size 60000x60000 is over the 16.8 MP"),
    ("preprocess.size", [28], r"preprocess.size must be \[height, width\]"),
    ("preprocess.channels", 2, "preprocess.channels must be 1 or 3"),
    ("preprocess.resize", "squash", "preprocess.resize must be one of"),
    ("preprocess", None, "preprocess must be a mapping"),
    ("classes", None, "classes must be a list of class names"),
    ("classes", "NORMAL,PNEUMONIA", "classes must be a list of class names"),
    ("classes", [0, 1], "classes must be a list of class names"),
    ("classes", ["A", "A"], "classes names A more than once"),
    ("classes", ["A", "B", "C"], "classes of a binary bundle must be 2"),
    ("model", None, "model must be a mapping with a 'name'"),
    ("model.name", 7, "model must be a mapping with a 'name'"),
    ("model.name", "no_such_model", "model: unknown model"),
    ("model.args", [], "model.args must be a mapping"),
    ("class_mode", "multi", "class_mode must be binary or categorical"),
    ("format", "other", "not a cnnlab bundle description"),
    ("version", 99, "bundle format version 99"),
    ("files", {"model.safetensors": {"bytes": 1}}, "files must map file names"),
]


@pytest.mark.parametrize("field, value, message", BAD_FIELDS,
                         ids=[f"{f}={v!r}" for f, v, _ in BAD_FIELDS])  # fmt: skip
def test_each_bad_value_is_refused_naming_the_field(good, tmp_path, field, value, message):
    bad = variant(good, tmp_path, setter(field, value))
    with pytest.raises(CnnlabError, match=message):
        load_bundle(bad)
    checks, bundle = check_bundle(bad)
    assert bundle is None and not checks[-1].ok and checks[-1].detail.count("\n") == 0
    assert all(c.ok for c in checks[:-1])


def test_head_must_match_the_classes(tmp_path):
    model = create_model("fastnet", in_channels=1, num_classes=10, widths=[4, 8])
    pre = Preprocess(channels=1, size=[28, 28], mean=[0.13], std=[0.3])
    path = save_bundle(tmp_path / "digits", model, "fastnet",
                       {"in_channels": 1, "num_classes": 10, "widths": [4, 8]}, pre,
                       [str(i) for i in range(10)])  # fmt: skip
    meta = json.loads((path / "bundle.json").read_text())
    meta["classes"] = [str(i) for i in range(9)]
    (path / "bundle.json").write_text(json.dumps(meta))
    reseal(path)
    with pytest.raises(CnnlabError, match="classes has 9 names but the model has 10 outputs"):
        load_bundle(path)
    checks, _ = check_bundle(path)
    assert [c.name for c in checks] == ["seal", "seal", "bundle.json", "paths", "seal", "seal",
                                        "signature", "fields", "bounds", "files", "architecture",
                                        "weights", "head"]  # fmt: skip
    assert not checks[-1].ok


def test_a_deferred_model_runs_the_same_checks_when_first_used(good, tmp_path):
    """`build_model=False` (an ONNX start) defers the architecture and head checks to the
    model's first use: a wrong head is still refused, by whoever asks first, and a good
    model is built once however many threads ask at the same moment."""
    bad = variant(good, tmp_path, lambda m: m.update(classes=["a", "b", "c"],
                                                       class_mode="categorical"))  # fmt: skip
    with pytest.raises(CnnlabError, match="3 names but the model has 1 outputs"):
        load_bundle(bad)
    deferred = load_bundle(bad, build_model=False)  # every other check passed
    assert deferred.built is None
    with pytest.raises(CnnlabError, match="3 names but the model has 1 outputs"):
        deferred.model  # noqa: B018 -- the first use builds, and checks

    from concurrent.futures import ThreadPoolExecutor

    lazy = load_bundle(good, build_model=False)
    with ThreadPoolExecutor(8) as pool:
        models = list(pool.map(lambda _: lazy.model, range(8)))
    assert all(m is models[0] for m in models) and lazy.build is None
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(lazy.predict_proba(images), load_bundle(good).predict_proba(images))


def rewrite_weights(path: Path, change) -> None:
    """Change the weights and record their new size and hash (as a careless save would)."""
    from cnnlab.bundle.check import files_record

    state = load_file(str(path / "model.safetensors"))
    change(state)
    save_file(state, str(path / "model.safetensors"))
    meta = json.loads((path / "bundle.json").read_text())
    meta["files"] = files_record(path, ("model.safetensors",))
    (path / "bundle.json").write_text(json.dumps(meta))
    reseal(path)


def test_nan_weights_flipped_bytes_and_truncation(good, tmp_path):
    bad = variant(good, tmp_path, lambda meta: None)
    rewrite_weights(bad, lambda s: s["head.fc.bias"].fill_(math.nan))
    with pytest.raises(CnnlabError, match="weight head.fc.bias holds 1 NaN or infinite"):
        load_bundle(bad)
    shutil.rmtree(bad)
    bad = variant(good, tmp_path, lambda meta: None)
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    data[-20] ^= 0x01  # two flipped bytes in the weights: same size, other content
    (bad / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CnnlabError, match="model.safetensors changed since it was sealed"):
        load_bundle(bad)
    reseal(bad)  # past the seal, bundle.json's own record of the weights
    with pytest.raises(CnnlabError, match="does not match the sha256 bundle.json records"):
        load_bundle(bad)
    (bad / "model.safetensors").write_bytes(bytes(data[:-100]))
    reseal(bad)
    with pytest.raises(CnnlabError, match="bytes but bundle.json records"):
        load_bundle(bad)


def test_undefined_figures_become_null_and_probabilities_are_never_nan(good):
    b = load_bundle(good)
    assert b.meta["metrics"]["auc"] is None  # written as null, never a bare NaN
    assert "NaN" not in (good / "bundle.json").read_text()
    probs = torch.tensor([[math.nan, math.nan], [0.2, 0.8]])
    first, second = label_probabilities(b, probs, 2)
    assert first.label is None and "not a number" in first.error
    assert second.label == "PNEUMONIA" and second.error is None


def test_save_refuses_what_load_would_refuse(tmp_path):
    model = create_model("fastnet", in_channels=1, num_classes=1, widths=[4, 8])
    pre = Preprocess(channels=1, size=[28, 28], mean=[0.13], std=[0.3])
    with pytest.raises(CnnlabError, match="decision.threshold"):
        save_bundle(tmp_path / "x", model, "fastnet", {}, pre, ["A", "B"], class_mode="binary",
                    decision={"threshold": 1.5})  # fmt: skip
    assert not (tmp_path / "x").exists()  # nothing written


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cnnlab_check_and_every_surface_that_loads(good, tmp_path, capsys):
    code, out, err = cli(capsys, "check", good)
    assert code == 0 and "sound" in out and "sha256 verified" in out and not err
    code, out, _ = cli(capsys, "check", "pneumonia", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"]
    files = next(c for c in report["checks"] if c["name"] == "files")
    assert "sha256 verified" in files["detail"]  # the shipped model's, recorded
    old = variant(good, tmp_path / "old", lambda meta: meta.pop("files"))  # saved before hashes
    code, out, _ = cli(capsys, "check", old, "--json")
    files = next(c for c in json.loads(out)["checks"] if c["name"] == "files")
    assert code == 0 and "no content hash recorded" in files["detail"]
    bad = variant(good, tmp_path, setter("decision.threshold", math.nan))
    code, out, err = cli(capsys, "check", bad)
    assert code == 2 and "FAIL  fields" in out and "decision.threshold" in err
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray((torch.rand(28, 28) * 255).byte().numpy()).save(image)
    for args in (["predict", bad, image, "--json"], ["evaluate", bad, "--data", tmp_path],
                 ["export", bad, "--onnx", tmp_path / "m.onnx"], ["serve", bad],
                 ["summary", bad], ["explain", bad, image, "--gradcam", "--out", tmp_path / "e"]):  # fmt: skip
        code, out, err = cli(capsys, *args)
        assert code == 2, (args, err)
        assert "decision.threshold must be a finite number" in err and "Traceback" not in err
        assert out == ""
    assert not (tmp_path / "m.onnx").exists()
