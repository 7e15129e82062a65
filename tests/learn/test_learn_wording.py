"""The Learn page's words: padding said exactly, the parameters with their formula (checked
against PyTorch), the drawing without a second copy of the formula, and a note when a
receptive field is larger than the image."""

from __future__ import annotations

import torch.nn as nn

from cnnlab.learn.conv_drawing import draw_conv
from cnnlab.learn.convolution import ConvSetting
from cnnlab.learn.fields import field_past_image


def test_padding_is_said_exactly():
    assert "padding same: 1 before, 2 after," in ConvSetting.make(8, 4, 1, "same").describe()[0]
    assert "padding same: 1 per side," in ConvSetting.make(8, 3, 1, "same").describe()[0]
    assert "padding 2 per side," in ConvSetting.make(8, 5, 1, 2).describe()[0]
    assert "padding valid: none," in ConvSetting.make(8, 3, 1, "valid").describe()[0]
    wide = ConvSetting.make((8, 9), (4, 3), 1, "same")  # rows asymmetric, columns not
    assert "padding same: rows 1 before, 2 after; columns 1 per side" in wide.describe()[0]


def test_parameters_and_mult_adds_match_pytorch():
    s = ConvSetting.make(32, 3, 2, 1)
    for c_in, filters, bias in ((3, 16, True), (1, 8, False), (64, 128, True)):
        conv = nn.Conv2d(c_in, filters, 3, 2, 1, bias=bias)
        params, macs = s.parameters(c_in, filters, bias)
        assert params.split(" = ")[2].split()[0] == f"{sum(p.numel() for p in conv.parameters()):,}"
        oh, ow = s.out
        assert macs.split(" = ")[2].split()[0] == f"{3 * 3 * c_in * filters * oh * ow:,}"
    assert s.parameters(3, 16)[0].startswith("parameters = (3*3*3 + 1) * 16 = 448")


def test_the_drawing_leaves_the_formula_to_the_page():
    s = ConvSetting.make(7, 3, 2, 1)
    with_text, without = draw_conv(s, 0), draw_conv(s, 0, header=False)
    assert with_text.height - without.height == 20 * len(s.describe())


def test_a_field_larger_than_the_image_is_said():
    note = field_past_image((309, 309), (224, 224))
    assert note and "309x309" in note and "224x224 image" in note
    assert field_past_image((5, 5), (28, 28)) is None
    assert field_past_image((28, 29), (28, 28)) is not None
