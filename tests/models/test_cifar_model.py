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


def test_tta_averages_mirror_and_shifted_views_in_eval_mode_only():
    torch.manual_seed(0)
    model = create_model("cifarnet")
    assert model.tta == "mirror+translate"
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    f = lambda z: model.head(model.features(z))  # noqa: E731
    plain, mirrored = f(x), f(x.flip(-1))
    assert not torch.allclose(plain, mirrored)
    model.tta = True  # what bundles saved before the modes hold
    assert torch.allclose(model(x), (plain + mirrored) / 2, atol=1e-6)
    model.tta = "mirror+translate"
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    up_left, down_right = padded[..., :32, :32], padded[..., 2:, 2:]
    assert torch.equal(up_left[..., 1:, 1:], x[..., :-1, :-1])  # shifted by one pixel
    pair = lambda z: (f(z) + f(z.flip(-1))) / 2  # noqa: E731
    expect = 0.5 * pair(x) + 0.25 * (pair(up_left) + pair(down_right))
    assert torch.allclose(model(x), expect, atol=1e-5)
    model.tta = False
    assert torch.allclose(model(x), plain)
    model.tta = "mirror+translate"
    model.train()
    out = model(x)
    assert out.shape == (4, 10)  # one pass in training: BatchNorm sees the batch once
    with pytest.raises(CnnlabError, match="tta"):
        create_model("cifarnet", tta="sideways")


def test_fast_recipe_trains_and_evaluates_on_a_small_folder(tmp_path, monkeypatch):
    from cnnlab.bundle import load_bundle
    from cnnlab.evaluate.scores import evaluate_bundle
    from cnnlab.train.run import train_recipe

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
    # the bundle keeps its 90 training images' fingerprints (train/ only: test/ is not trained on)
    assert bundle.meta["training_hashes"]["n"] == 90 == len(bundle.training_hashes)
    assert report["leakage"]["training_overlap"]["leaked"] == 0


def test_whitening_stem_with_a_fixed_bias_spares_the_first_gradient():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32)
    for learn, expect_grad in ((True, True), (False, False)):
        model = create_model("cifarnet", whiten=True, whiten_bias=learn)
        model.train()
        stem_out = []
        model.features.stem.register_forward_hook(lambda m, a, out, seen=stem_out: seen.append(out))
        model(x).sum().backward()
        assert bool(model.features.stem.ready)  # fitted on the first training batch
        assert (model.features.stem.bias.grad is not None) == expect_grad
        assert stem_out[0].requires_grad == expect_grad  # no input gradient for group1_conv1
        assert model.features.group1_conv1.weight.grad is not None
        assert "features.stem.bias" in model.state_dict()  # same keys either way


def test_airbench_aids_identity_init_frozen_norm_scales_and_norm_momentum():
    model = create_model("cifarnet", dirac=True, norm_scale=False, bn_momentum=0.4)
    conv = model.features.group2_conv2  # 64 -> 64: every filter passes its channel through
    x = torch.randn(2, 64, 8, 8)
    torch.testing.assert_close(conv(x), x)
    wide = model.features.group2_conv1  # 32 -> 64: the first 32 filters are identities
    y = torch.randn(1, 32, 4, 4)
    torch.testing.assert_close(wide(y)[:, :32], y)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not b.weight.requires_grad and b.bias.requires_grad for b in bns)
    assert {b.momentum for b in bns} == {0.4}
    plain = create_model("cifarnet")
    assert not torch.allclose(plain.features.group2_conv2(x), x)
    assert all(
        m.weight.requires_grad for m in plain.modules() if isinstance(m, torch.nn.BatchNorm2d)
    )


def test_the_94_recipes_train_grey_and_colour_images_with_the_aids(idx_dir, tmp_path, monkeypatch):
    """fashion_mnist_94 (cifarnet on 28x28 grey images) and cifar10_folder_94 (alternating
    flips), as written but shortened, train to a bundle that judges held-out images."""
    from cnnlab.bundle import load_bundle
    from cnnlab.evaluate.scores import evaluate_bundle
    from cnnlab.train.run import train_recipe

    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    short = ["train.epochs=4", "train.batch_size=64"]
    recipe = load_recipe(
        ROOT / "recipes" / "fashion_mnist_94.yaml", [*short, "train.freeze_after.group1=3"]
    )
    assert recipe.train.optimizer == "muon"
    train_recipe(recipe, str(idx_dir), tmp_path / "grey", progress=False)
    grey = load_bundle(tmp_path / "grey")
    assert grey.model.tta == "translate" and grey.model.features.stem.weight.shape[1] == 1
    assert evaluate_bundle(grey, str(idx_dir), "test")["accuracy"] >= 0.8  # toy digits
    root = write_image_folder(
        tmp_path / "d", ["c0", "c1", "c2"], 30, size=32, splits=["train", "test"]
    )
    recipe = load_recipe(ROOT / "recipes" / "cifar10_folder_94.yaml", [*short, "train.batch_size=32",
                         "model.args.widths=[16,32,32]", "train.validation_freq=4"])  # fmt: skip
    assert recipe.augment.horizontal_flip == "alternate" and recipe.train.lookahead
    outcome = train_recipe(recipe, str(root), tmp_path / "colour", progress=False)
    assert outcome.metrics["accuracy"] >= 0.9
