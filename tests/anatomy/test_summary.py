"""The summary's shapes and counts for the brief's models, and how it treats odd models."""

from __future__ import annotations

import pytest
import torch.nn as nn

from cnnlab.anatomy.arithmetic import conv_mult_adds
from cnnlab.anatomy.summary import format_summary, summarize
from cnnlab.anatomy.target import load_target, parse_input
from cnnlab.bundle import save_bundle
from cnnlab.data.preprocess import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model


def brief_summary(name: str, shape=None):
    target = load_target(name, shape)
    return summarize(target.model, target.input_shape, name)


def test_keras_mnist_cnn_is_the_briefs_table():
    s = brief_summary("keras_mnist_cnn")
    shapes = [
        r.shape_text for r in s.rows if r.type in ("Conv2d", "MaxPool2d", "Flatten", "Linear")
    ]
    assert shapes == ["26x26x32", "13x13x32", "11x11x64", "5x5x64", "1600", "128", "10"]
    assert [r.params for r in s.rows if r.params] == [320, 18_496, 204_928, 1_290]
    assert s.total_params == s.trainable_params == 225_034 and s.non_trainable_params == 0
    expected = conv_mult_adds(26, 1, 32, 3) + conv_mult_adds(11, 32, 64, 3) + 1600 * 128 + 128 * 10
    assert s.mult_adds == expected == sum(r.mult_adds for r in s.rows)
    conv2 = next(r for r in s.rows if r.name == "features.conv2")
    assert (conv2.field.rf, conv2.field.jump, conv2.field.start) == ((8, 8), (2, 2), (3.5, 3.5))
    assert s.param_bytes == 225_034 * 4
    text = format_summary(s)
    assert "Total params: 225,034" in text and "features.conv1 (Conv2d)" in text


def test_other_brief_models():
    cifar = brief_summary("keras_cifar10_cnn")
    assert cifar.total_params == 1_250_858
    assert "2304" in [r.shape_text for r in cifar.rows]
    folder = brief_summary("keras_folder_cnn")
    assert folder.input_shape == (3, 150, 150)
    assert folder.total_params == 19_034_177  # not the 3,514,241 the brief printed
    assert brief_summary("torch_mnist_net").total_params == 421_642


def test_input_and_classes_rebuild_a_registered_model():
    target = load_target("keras_mnist_cnn", parse_input("1x32x32"), num_classes=3)
    s = summarize(target.model, target.input_shape)
    assert s.rows[0].shape_text == "30x30x32" and s.output_shape == (3,)
    assert parse_input("64") == (0, 64, 64)
    assert load_target("keras_mnist_cnn", parse_input("40x40")).input_shape == (1, 40, 40)


def test_plain_timm_names_work_and_unknown_names_fail():
    target = load_target("resnet18", (3, 64, 64), num_classes=5)
    s = summarize(target.model, target.input_shape)
    assert s.output_shape == (5,) and s.total_params == 11_689_512 - 513_000 + 512 * 5 + 5
    with pytest.raises(CnnlabError, match="unknown model"):
        load_target("no_such_net")


def test_a_model_that_cannot_take_the_input_is_one_clear_error():
    model = create_model("keras_mnist_cnn")  # built for 28x28: its dense layer wants 1600 inputs
    with pytest.raises(CnnlabError, match=r"fails on input 1x20x20 \(C x H x W\)"):
        summarize(model, (1, 20, 20), "keras_mnist_cnn")
    with pytest.raises(CnnlabError, match="too small"):
        load_target("keras_mnist_cnn", (1, 5, 5))


def test_frozen_and_shared_parameters():
    shared = nn.Conv2d(2, 2, 3, padding=1)
    frozen = nn.Conv2d(1, 2, 3, padding=1)
    frozen.requires_grad_(False)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.block = frozen, shared

        def forward(self, x):
            return self.block(self.block(self.stem(x)))

    s = summarize(Net(), (1, 8, 8))
    assert [r.name for r in s.rows] == ["stem", "block", "block#2"]
    assert s.total_params == 20 + 38 and s.trainable_params == 38 and s.non_trainable_params == 20
    assert [r.trainable for r in s.rows[:2]] == [False, True]
    assert s.rows[2].params == 0  # counted once, at the first call
    assert s.rows[2].field.rf == (7, 7)  # three 3x3 convs in a row
    assert "Non-trainable params: 20" in format_summary(s)


def test_bundles_summarise_with_their_own_input(tmp_path):
    model = create_model("keras_mnist_cnn", num_classes=3)
    pre = Preprocess(1, [28, 28], [0.0], [1.0])
    save_bundle(tmp_path / "b", model, "keras_mnist_cnn", {"num_classes": 3}, pre, ["a", "b", "c"])
    target = load_target(str(tmp_path / "b"))
    assert target.input_shape == (1, 28, 28) and target.classes == ["a", "b", "c"]
    s = summarize(target.model, target.input_shape, target.name)
    assert s.output_shape == (3,) and s.to_dict()["layers"][0]["output_shape"] == [32, 26, 26]
    with pytest.raises(CnnlabError, match="--classes"):
        load_target(str(tmp_path / "b"), num_classes=2)


def test_a_huge_input_is_summarised_on_meta_or_refused_never_allocated(tmp_path):
    """`cnnlab summary cifarnet --input 3x100000x100000` drew the input image on the CPU (120 GB)
    before moving it to the meta device; a bundle's real forward pass is capped at 16.8 MP."""
    import resource

    from cnnlab.anatomy.summary import target_summary

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    _, s = target_summary("cifarnet", (3, 100_000, 100_000))
    assert s.input_shape == (3, 100_000, 100_000) and s.total_params > 0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before < 2**29
    model = create_model("fastnet", widths=[4, 8], head="maxpool")
    pre = Preprocess(1, [28, 28], [0.0], [1.0])
    save_bundle(tmp_path / "b", model, "fastnet", {"widths": [4, 8], "head": "maxpool"}, pre,
                [str(i) for i in range(10)])  # fmt: skip
    with pytest.raises(CnnlabError, match=r"--input 1x100000x100000 is over the 16\.8 MP"):
        target_summary(str(tmp_path / "b"), (1, 100_000, 100_000))
