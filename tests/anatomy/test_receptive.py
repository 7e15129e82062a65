"""Receptive fields from the forward graph against the empirical ones (non-zero input gradients)."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.anatomy.arithmetic import ConvGeometry, receptive_field
from cnnlab.anatomy.summary import summarize
from tests.anatomy.empirical import empirical_bounds, theoretical_bounds


def check_against_gradients(model, shape, rows=None, unit="centre", min_rows=1):
    """Every spatial row's field (or the given rows) equals the empirical one, clipped to the image."""
    summary = summarize(model, shape)
    rows = rows or [r for r in summary.rows if r.field.kind == "spatial"]
    assert len(rows) >= min_rows
    found = empirical_bounds(model, shape, [r.name for r in rows], unit)
    for r in rows:
        index, rows_seen, cols_seen = found[r.name]
        assert theoretical_bounds(r.field, index, shape[1:]) == (rows_seen, cols_seen), r.name
    return summary


def test_plain_stack_matches_pure_formula_and_gradients():
    geoms = [ConvGeometry(3), ConvGeometry(3), ConvGeometry(2, 2), ConvGeometry(5, 1, 2), ConvGeometry(3, 2, 1)]  # fmt: skip
    layers = []
    for g in geoms:
        layers.append(nn.Conv2d(2, 2, g.kernel, g.stride, g.padding, g.dilation))
        layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    summary = check_against_gradients(model, (2, 40, 40), min_rows=10)
    convs = [r for r in summary.rows if r.type == "Conv2d"]
    pure = receptive_field(geoms)
    assert [(r.field.rf[0], r.field.jump[0], r.field.start[0]) for r in convs] == [
        (s.rf, s.jump, s.start) for s in pure
    ]
    assert convs[1].field.rf == (5, 5)  # two stacked 3x3 convs see 5x5 (brief point 3)
    check_against_gradients(model, (2, 40, 40), unit="corner")  # start offsets, into the padding


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
def test_dilated_stack_with_pools_even_kernels_and_asymmetric_padding():
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, dilation=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
        nn.ZeroPad2d((1, 0, 2, 1)),  # left 1, right 0, top 2, bottom 1
        nn.Conv2d(3, 3, (4, 2), dilation=(1, 3)),
        nn.AvgPool2d(2, ceil_mode=True),
        nn.Conv2d(3, 3, 3, padding="same", dilation=3),
        nn.Conv2d(3, 3, 4, padding="same"),  # even kernel: PyTorch pads one more after
    )
    summary = check_against_gradients(model, (1, 57, 61), min_rows=8)
    assert summary.rows[0].field.rf == (5, 5)
    # (corner units are not compared here: where a dilated tap lands on padding, the real
    # dependency is narrower than the field's span, by definition of the span)


def test_resnet18_branches_match_gradients():
    model = timm.create_model("resnet18", pretrained=False)
    summary = check_against_gradients(model, (3, 64, 64), min_rows=50)
    fields = {r.name: r.field for r in summary.rows}
    # the block output (after the shortcut add) sees the union of both branches: the wider one
    assert fields["layer2.0.act2"].rf == fields["layer2.0.bn2"].rf
    assert fields["layer2.0.downsample.1"].rf[0] < fields["layer2.0.bn2"].rf[0]
    assert fields["layer4.1.act2"].rf == (435, 435)  # the published ResNet-18 value


def test_efficientnet_lite0_residual_blocks_match_gradients():
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    shape = (3, 64, 64)
    summary = summarize(model, shape)
    spatial = [r for r in summary.rows if r.field.kind == "spatial"]
    # every row where the field changes (convs and residual merges), not the repeats
    changes = [r for i, r in enumerate(spatial) if i == 0 or r.field != spatial[i - 1].field]
    check_against_gradients(model, shape, rows=changes, min_rows=15)
    assert summary.rows[-1].field.kind == "global"


def test_unknown_ops_say_unsupported_instead_of_guessing():
    class Upsampler(nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=2)

    model = nn.Sequential(nn.Conv2d(1, 2, 3), Upsampler(), nn.Conv2d(2, 2, 3))
    rows = summarize(model, (1, 16, 16)).rows
    assert rows[0].field.kind == "spatial"
    assert rows[1].field.kind == "unsupported" and "upsample" in rows[1].field.reason
    assert rows[2].field.kind == "unsupported"  # and it stays so downstream
    transposed = summarize(nn.Sequential(nn.ConvTranspose2d(1, 1, 3)), (1, 8, 8)).rows
    assert transposed[0].field.kind == "unsupported"


def test_branches_with_different_strides_are_unsupported():
    class TwoStrides(nn.Module):  # 8x8 -> 4x4 twice: stride 2 (jump 2) and a valid 5x5 (jump 1)
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 1, 3, 2, 1), nn.Conv2d(1, 1, 5)
            self.out = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            return self.out(self.a(x) + self.b(x))

    rows = {r.name: r.field for r in summarize(TwoStrides(), (1, 8, 8)).rows}
    assert rows["a"].jump == (2, 2) and rows["b"].jump == (1, 1)
    assert rows["out"].kind == "unsupported" and "different strides" in rows["out"].reason


@pytest.mark.parametrize("channels_last", [False, True])
def test_concat_and_global_pool(channels_last):
    class Inception(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 2, 1), nn.Conv2d(1, 2, 5, padding=2)
            self.merge = nn.Conv2d(4, 4, 1)
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            return self.pool(self.merge(torch.cat([self.a(x), self.b(x)], 1)))

    model = Inception()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    rows = {r.name: r.field for r in summarize(model, (1, 12, 12)).rows}
    assert rows["merge"].rf == (5, 5)  # the union of the 1x1 and 5x5 branches
    assert rows["pool"].kind == "global"
