"""The image-folder recipes load, and brief point 9's runs end to end on a small folder with
its Keras-style augmentation; rescale 1/255 ends up in the bundle's preprocessing."""

from __future__ import annotations

from cnnlab.config import load_recipe
from cnnlab.data.augment import BatchAugment
from cnnlab.models import count_params, create_model
from tests.conftest import ROOT, write_image_folder


def test_folder_keras_cnn_recipe_is_the_brief(tmp_path, monkeypatch):
    from cnnlab.bundle import load_bundle
    from cnnlab.train.run import train_recipe

    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    recipe = load_recipe(ROOT / "recipes" / "folder_keras_cnn.yaml", ["train.epochs=1"])
    assert recipe.data.image_size == [150, 150] and recipe.data.class_mode == "binary"
    assert recipe.train.batch_size == 32 and recipe.data.normalize == "unit"
    assert BatchAugment(recipe.augment).affine
    assert count_params(create_model(recipe.model.name)) == 19_034_177
    root = write_image_folder(tmp_path / "d", ["cats", "dogs"], 6, size=64, splits=["train", "val"])
    outcome = train_recipe(recipe, str(root), tmp_path / "run", progress=False)
    bundle = load_bundle(tmp_path / "run")
    assert bundle.classes == ["cats", "dogs"] and bundle.binary
    pre = bundle.preprocess
    assert pre.size == [150, 150] and pre.mean == [0.0] * 3 and pre.std == [1.0] * 3
    assert outcome.data.val_origin == "held-out"  # a 12-image val split is too small to trust


def test_cifar10_folder_fast_recipe_loads():
    recipe = load_recipe(ROOT / "recipes" / "cifar10_folder_fast.yaml")
    assert recipe.model.name == "cifarnet" and recipe.data.color_mode == "rgb"
    assert recipe.augment.horizontal_flip and recipe.augment.random_crop == 2
