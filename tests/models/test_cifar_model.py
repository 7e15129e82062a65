"""cifarnet: shapes, parameter count, mirror-image TTA in eval mode only, and a short training
run through the real recipe on a tiny 32x32 folder (bundle, evaluate)."""

from __future__ import annotations

import pytest
import torch

from cnnlab.config import load_recipe
from cnnlab.errors import CnnlabError
from cnnlab.models import count_params, create_model
from tests.conftest import ROOT, write_image_folder


def test_shapes_and_parameter_count():
    model = create_model("cifarnet")
    assert count_params(model) == 295_120
    feats = model.forward_features(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, 128, 3, 3)
    wide = create_model("cifarnet", widths=[64, 128, 256], num_classes=100)
    assert wide(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    with pytest.raises(CnnlabError, match="too small"):
        create_model("cifarnet", input_size=[8, 8])


def test_tta_averages_mirror_images_in_eval_mode_only():
    torch.manual_seed(0)
    model = create_model("cifarnet")
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    plain = model.head(model.features(x))
    mirrored = model.head(model.features(x.flip(-1)))
    assert not torch.allclose(plain, mirrored)
    assert torch.allclose(model(x), (plain + mirrored) / 2, atol=1e-6)
    model.tta = False
    assert torch.allclose(model(x), plain)
    model.tta = True
    model.train()
    out = model(x)
    assert out.shape == (4, 10)  # one pass in training: BatchNorm sees the batch once


def test_fast_recipe_trains_and_evaluates_on_a_small_folder(tmp_path, monkeypatch):
    from cnnlab.bundle import load_bundle
    from cnnlab.engine.evaluate import evaluate_bundle
    from cnnlab.engine.train import train_recipe

    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    classes = ["c0", "c1", "c2"]
    root = write_image_folder(tmp_path / "d", classes, 30, size=32, splits=["train", "test"])
    recipe = load_recipe(ROOT / "recipes" / "cifar10_folder_fast.yaml",
                         ["train.epochs=3", "train.batch_size=32", "train.lr=0.2"])  # fmt: skip
    outcome = train_recipe(recipe, str(root), tmp_path / "run", progress=False)
    assert outcome.metrics["accuracy"] >= 0.9  # colour-coded classes: easy if training works
    bundle = load_bundle(tmp_path / "run")
    assert bundle.classes == classes and bundle.model.tta
    report = evaluate_bundle(bundle, str(root), "test")
    assert report["n"] == 90 and report["accuracy"] >= 0.9
