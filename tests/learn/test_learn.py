"""Learn's pictures and numbers, checked against PyTorch itself: the stepped convolution against
F.conv2d, the theoretical receptive-field box against the input gradient (never outside it),
the drawings' sizes, block diagrams, and the CLI's --draw, --receptive-field and --diagram."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from cnnlab.anatomy.summary import summarize, target_summary
from cnnlab.anatomy.target import load_target
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.learn.conv_drawing import MAX_FRAMES, diagram_size, draw_conv
from cnnlab.learn.convolution import ConvSetting, RealConv
from cnnlab.learn.diagram import block_boxes, draw_diagram
from cnnlab.learn.fields import effective_field, unit_field
from cnnlab.learn.filters_maps import filters_beside_maps
from cnnlab.learn.history import architecture_rows
from cnnlab.samples import SAMPLES, sample_path, samples_for


def test_the_brief_worked_examples_and_what_is_lost():
    s = ConvSetting.make(32, 3, 2, "valid")
    assert s.out == (15, 15)
    assert s.unused() == ([31], [31])
    text = "\n".join(s.describe())
    assert "out = floor((32 - 3 + 2*0) / 2) + 1 = floor(14.5) + 1 = 15" in text
    assert "1 row (31) and 1 column (31) never read" in text
    assert ConvSetting.make(32, 3, 1, "same").out == (32, 32)
    assert "nothing lost" in ConvSetting.make(32, 3, 1, "valid").describe()[-1]
    d = ConvSetting.make(9, 3, 1, "valid", 2)  # dilation 2: taps 2 apart, the kernel spans 5
    assert d.out == (5, 5) and d.taps(0)[:3] == [(0, 0), (0, 2), (0, 4)]
    with pytest.raises(CnnlabError, match="position must be 0..24"):
        d.unit(25)


@pytest.mark.parametrize("stride,padding,dilation,bias", [(1, 0, 1, True), (2, 1, 1, False),
                                                           (2, 2, 2, True), (3, 1, 1, True)])  # fmt: skip
def test_each_step_is_conv2d(stride, padding, dilation, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride, padding, dilation, bias=bias)
    x = torch.randn(1, 3, 11, 13)
    real = RealConv(conv, x, "conv")
    expected = conv(x).detach()[0]
    assert real.setting.out == tuple(expected.shape[-2:])
    for f in range(4):
        assert np.allclose(real.feature_map(f), expected[f].numpy(), atol=1e-5)
        for position in range(0, real.setting.positions, 7):
            step = real.step(f, position)
            oy, ox = step.unit
            assert step.value == pytest.approx(float(expected[f, oy, ox]), abs=1e-5)
            assert step.dot + (step.bias or 0.0) == pytest.approx(step.value, abs=1e-6)
    assert ("0 (no bias)" in real.step(0, 0).equation()) != bias


def test_drawings_have_the_size_they_announce(tmp_path):
    s = ConvSetting.make(7, 3, 2, 1)
    img = draw_conv(s, 5)
    assert img.size == diagram_size(s)
    lost = ConvSetting.make(8, 3, 2, "valid")  # row and column 7 are never read
    salmon = [
        int((np.asarray(i) == (252, 187, 161)).all(-1).sum()) for i in (draw_conv(lost, 0), img)
    ]
    assert salmon[0] > 1000 and salmon[1] < 200  # only the legend's swatch where nothing is lost
    png, gif = tmp_path / "c.png", tmp_path / "c.gif"
    assert main(["conv", "--size", "7", "--kernel", "3", "--stride", "2", "--padding", "1",
                 "--draw", str(png), "--position", "5"]) == 0  # fmt: skip
    assert main(["conv", "--size", "32", "--kernel", "3", "--stride", "2", "--draw", str(gif)]) == 0
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == diagram_size(s)
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(img))
    with Image.open(gif) as im:
        big = ConvSetting.make(32, 3, 2, "valid")
        assert im.format == "GIF" and im.size == diagram_size(big)
        assert im.n_frames == min(big.positions, MAX_FRAMES) == 144
    assert main(["conv", "--size", "7", "--draw", str(tmp_path / "c.jpg")]) == 2
    assert main(["conv", "--size", "7", "--draw", str(png), "--position", "25"]) == 2


@pytest.mark.parametrize("model,layer,unit", [("keras_mnist_cnn", "conv2", (5, 5)),
                                             ("torch_mnist_net", "conv2", (0, 0)),
                                             ("lenet5", "c3", (9, 2))])  # fmt: skip
def test_the_input_gradient_never_leaves_the_theoretical_box(model, layer, unit):
    torch.manual_seed(1)
    target = load_target(model)
    summary = summarize(target.model, target.input_shape, model)
    field = unit_field(summary, layer, unit)
    row = next(r for r in summary.rows if r.name == field.layer)
    assert field.rf == row.field.rf
    effective_field(target.model, torch.randn(1, *target.input_shape), field)
    g = field.gradient
    t, lft, b, r = field.clipped
    assert g[t : b + 1, lft : r + 1].sum() > 0
    outside = g.copy()
    outside[t : b + 1, lft : r + 1] = 0
    assert outside.max() == 0 and field.inside_share() == 1.0
    if unit == (0, 0):  # a padded corner unit: its box reaches past the image
        assert field.box[0][0] < 0 and (t, lft) == (0, 0)
    assert 0 < field.effective_side() <= max(field.rf)


def test_unit_and_layer_errors_say_what_is_valid():
    _, summary = target_summary("keras_mnist_cnn")
    with pytest.raises(CnnlabError, match="outside features.conv2's 11x11 output"):
        unit_field(summary, "conv2", (11, 0))
    with pytest.raises(CnnlabError, match="no spatial receptive field"):
        unit_field(summary, "dense1")


def test_block_diagrams_from_the_module_graph():
    target, summary = target_summary("keras_mnist_cnn")
    boxes, plain = block_boxes(target.model, summary)
    assert plain and [b.title for b in boxes][:2] == ["Conv 3x3, 32 filters + relu", "MaxPool 2x2"]
    assert boxes[0].detail == "26x26x32 · 320 params"
    target, summary = target_summary("resnet18")
    boxes, plain = block_boxes(target.model, summary)
    assert not plain and any(b.title.startswith("layer2") and "+ skip" in b.title for b in boxes)
    img = draw_diagram(target.model, summary)
    assert img.height > 40 * len(boxes)


def test_filters_beside_maps_and_the_architecture_table():
    target = load_target("keras_mnist_cnn")
    summary = summarize(target.model, target.input_shape, "keras_mnist_cnn")
    pixels = target.preprocess.load(sample_path("mnist_7"))
    x = target.preprocess.normalize(pixels[None])
    img = filters_beside_maps(target, summary, x, pixels.numpy(), "conv1", count=8)
    assert img.width > 4 * 2 * 96 and img.height > 2 * 96
    rows = {r["model"]: r for r in architecture_rows(["lenet5", "alexnet", "vgg16"])}
    assert rows["vgg16"]["params"] == 138_357_544
    assert "ReLU" in rows["alexnet"]["introduced"] and "dropout" in rows["alexnet"]["introduced"]
    assert "LRN" in rows["alexnet"]["introduced"] and "3x3" in rows["vgg16"]["introduced"]


def test_samples_are_small_licensed_and_matched_to_models():
    assert 1 <= len(SAMPLES) <= 8
    readme = (sample_path("mnist_7").parent / "README.md").read_text()
    for s in SAMPLES.values():
        assert s.path.stat().st_size < 50_000 and s.file in readme
        with Image.open(s.path) as im:
            assert im.size == (s.size, s.size) and len(im.getbands()) in (1, 3)
    assert "CC BY-SA 3.0" in readme and "CC BY 4.0" in readme and "Krizhevsky" in readme
    assert samples_for(1, 224, ["NORMAL", "PNEUMONIA"])[0].name.startswith("xray")
    assert samples_for(1, 28, [str(i) for i in range(10)])[0].name.startswith("mnist")
    assert samples_for(3, 32)[0].name == "cifar10_cat"


def test_cli_receptive_field_and_diagram(tmp_path, capsys):
    image = str(sample_path("mnist_7"))
    out = tmp_path / "rf"
    assert main(["explain", "keras_mnist_cnn", image, "--receptive-field", "conv2", "--unit",
                 "3,4", "--out", str(out)]) == 0  # fmt: skip
    written = out / "receptive_field_features.conv2.png"
    assert written.is_file() and "theoretical field 8x8" in capsys.readouterr().err
    assert main(["explain", "keras_mnist_cnn", image, "--receptive-field", "conv2", "--unit",
                 "30,4", "--out", str(out)]) == 2  # fmt: skip
    assert main(["explain", "keras_mnist_cnn", "--unit", "1,1", "--out", str(out)]) == 2
    png = tmp_path / "d.png"
    assert main(["zoo", "--diagram", "keras_mnist_cnn", "--out", str(png)]) == 0
    with Image.open(png) as im:
        assert im.format == "PNG" and im.height > 300
    assert main(["zoo", "--diagram", "keras_mnist_cnn"]) == 2


def test_a_drawing_too_large_to_see_is_refused_before_it_is_drawn(tmp_path, capsys):
    """`cnnlab conv --size 100000000 --draw x.png` asked PIL for a 10**17-pixel image."""
    with pytest.raises(CnnlabError, match=r"draws inputs up to 128x128 \(with padding\), not "
                       r"100000000x100000000"):  # fmt: skip
        draw_conv(ConvSetting.make(10**8, 3))
    code = main(["conv", "--size", "100000000", "--draw", str(tmp_path / "x.png")])
    assert code == 2 and "draws inputs up to 128x128" in capsys.readouterr().err
    draw_conv(ConvSetting.make(128, 3, padding="valid"))  # the largest still draws
