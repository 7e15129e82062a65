"""Every conv-arithmetic formula against what PyTorch really does, over a grid of settings."""

from __future__ import annotations

import doctest
import itertools
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.anatomy import arithmetic
from cnnlab.anatomy.arithmetic import (
    ConvGeometry,
    conv_output_shape,
    conv_output_size,
    conv_params,
    pool_output_size,
    receptive_field,
    same_padding,
    unused_input,
    used_positions,
)
from cnnlab.errors import CnnlabError


def test_doctests_hold_the_briefs_worked_examples():
    result = doctest.testmod(arithmetic, raise_on_error=False)
    assert result.attempted >= 6 and result.failed == 0


def test_brief_worked_examples():
    assert conv_output_size(32, 3, 1, "valid") == 30
    assert conv_output_size(32, 3, 1, "same") == 32
    assert conv_output_size(32, 3, 2, "valid") == 15
    assert unused_input(32, 3, 2, "valid") == 1
    assert used_positions(32, 3, 2, "valid")[-1] == 30  # column 31 is the one left out
    assert conv_params(3, 64, 3) == 1_792
    assert conv_params(3, 64, 5) == 4_864
    assert conv_params(3, 64, 3) == conv_params(3, 64, 3, groups=1)  # stride plays no part
    assert [s.rf for s in receptive_field([ConvGeometry(3), ConvGeometry(3)])] == [3, 5]


def _torch_conv_len(n, k, s, p, d):
    x = torch.zeros(1, 1, n)
    w = torch.zeros(1, 1, k)
    return F.conv1d(x, w, stride=s, padding=p, dilation=d).shape[-1]


def test_conv_output_size_matches_pytorch_on_a_grid():
    checked = 0
    for n, k, s, p, d in itertools.product(
        range(1, 18), range(1, 6), range(1, 4), range(3), range(1, 4)
    ):
        try:
            expected = _torch_conv_len(n, k, s, p, d)
        except RuntimeError:
            with pytest.raises(CnnlabError):
                conv_output_size(n, k, s, p, d)
            continue
        assert conv_output_size(n, k, s, p, d) == expected, (n, k, s, p, d)
        checked += 1
    assert checked > 1900


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_output_size_matches_pytorch_with_and_without_ceil_mode(kind):
    checked = 0
    dilations = range(1, 3) if kind == "max" else [1]
    for n, k, s, d, ceil in itertools.product(range(1, 16), range(1, 5), [None, 1, 2, 3], dilations, [False, True]):  # fmt: skip
        for p in range(k // 2 + 1):
            x = torch.zeros(1, 1, n)
            try:
                if kind == "max":
                    out = F.max_pool1d(x, k, s, p, d, ceil_mode=ceil).shape[-1]
                else:
                    out = F.avg_pool1d(x, k, s, p, ceil_mode=ceil).shape[-1]
            except RuntimeError:
                with pytest.raises(CnnlabError):
                    pool_output_size(n, k, s, p, d, ceil)
                continue
            if out < 1:  # some PyTorch versions return an empty tensor instead of raising
                with pytest.raises(CnnlabError):
                    pool_output_size(n, k, s, p, d, ceil)
                continue
            assert pool_output_size(n, k, s, p, d, ceil) == out, (n, k, s, p, d, ceil)
            checked += 1
    assert checked > 500


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_same_padding_is_pytorch_same_for_stride_one():
    torch.manual_seed(0)
    for n, k, d in itertools.product(range(1, 14), range(1, 6), range(1, 3)):
        x, w = torch.randn(1, 1, n), torch.randn(1, 1, k)
        ref = F.conv1d(x, w, padding="same", dilation=d)
        before, after = same_padding(n, k, 1, d)
        ours = F.conv1d(F.pad(x, (before, after)), w, dilation=d)
        assert ours.shape == ref.shape and torch.allclose(ours, ref, atol=1e-6), (n, k, d)
        assert conv_output_size(n, k, 1, "same", d) == n


def test_same_padding_with_stride_gives_ceil_of_size_over_stride():
    for n, k, s in itertools.product(range(1, 20), range(1, 6), range(1, 4)):
        before, after = same_padding(n, k, s)
        real = F.conv1d(
            F.pad(torch.zeros(1, 1, n), (before, after)), torch.zeros(1, 1, k), stride=s
        )
        assert real.shape[-1] == -(-n // s) == conv_output_size(n, k, s, "same"), (n, k, s)


def test_unused_input_matches_the_gradient_of_a_real_conv():
    for n, k, s, p, d in itertools.product(
        range(3, 14), range(1, 4), range(1, 4), range(2), range(1, 3)
    ):
        x = torch.ones(1, 1, n, requires_grad=True)
        try:
            out = F.conv1d(x, torch.ones(1, 1, k), stride=s, padding=p, dilation=d)
        except RuntimeError:
            continue
        out.sum().backward()
        untouched = int((x.grad == 0).sum())
        assert unused_input(n, k, s, p, d) == untouched, (n, k, s, p, d)
    assert unused_input(32, 1, 2) == 16  # 1x1 stride 2 skips every other column


def test_conv_output_shape_takes_pairs_like_pytorch():
    for size, k, s, p, d in [((32, 48), (3, 5), (2, 1), (1, 2), (1, 2)), ((28, 28), 5, 1, 2, 1), ((17, 9), (3, 3), 2, 0, 3)]:  # fmt: skip
        conv = nn.Conv2d(1, 1, k, s, p, d)
        assert conv_output_shape(size, k, s, p, d) == tuple(
            conv(torch.zeros(1, 1, *size)).shape[-2:]
        )
    conv = nn.Conv2d(1, 1, (3, 4), padding="same")
    assert conv_output_shape((9, 10), (3, 4), 1, "same") == tuple(
        conv(torch.zeros(1, 1, 9, 10)).shape[-2:]
    )


def test_conv_params_match_pytorch_with_groups_depthwise_and_no_bias():
    for c_in, c_out, k, g, bias in [(3, 64, 3, 1, True), (32, 64, (3, 5), 1, False), (32, 32, 3, 32, True),
                                    (16, 32, 1, 4, True), (6, 12, 7, 3, False)]:  # fmt: skip
        layer = nn.Conv2d(c_in, c_out, k, groups=g, bias=bias)
        assert conv_params(c_in, c_out, k, bias, g) == sum(p.numel() for p in layer.parameters())
    with pytest.raises(CnnlabError, match="groups"):
        conv_params(3, 64, 3, groups=2)


def test_bad_sizes_are_clear_errors():
    with pytest.raises(CnnlabError, match="output would be < 1"):
        conv_output_size(2, 3)
    with pytest.raises(CnnlabError, match="output would be < 1"):
        conv_output_size(5, 3, dilation=3)
    with pytest.raises(CnnlabError, match="stride"):
        conv_output_size(32, 3, stride=0)
    with pytest.raises(CnnlabError, match="padding"):
        conv_output_size(32, 3, padding="full")


def test_stack_receptive_field_matches_the_classic_table():
    # conv3 - conv3 - pool2 - conv3: 3, 5, 6, 10 with jumps 1, 1, 2, 2
    steps = receptive_field([ConvGeometry(3), ConvGeometry(3), ConvGeometry(2, 2), ConvGeometry(3)])
    assert [(s.rf, s.jump) for s in steps] == [(3, 1), (5, 1), (6, 2), (10, 2)]
    assert receptive_field([ConvGeometry(3, 1, 1)])[0].start == 0.0  # padded: centred on pixel 0
    assert receptive_field([ConvGeometry(3, dilation=2)])[0].rf == 5


def _brute_used(n, k, s, p, d, ceil):
    out = conv_output_size(n, k, s, p, d, ceil)
    before, _ = arithmetic.resolve_padding(p, n, k, s, d)
    return sorted({o * s + t * d - before for o in range(out) for t in range(k)} & set(range(n)))


def test_used_positions_are_counted_without_listing_every_tap():
    """`cnnlab conv --size 100000000` listed 3 * 10**8 taps in a set: a minute, then out of
    memory. The spans are now merged per stride residue; the answers are the brute force's."""
    for n, k, s, p, d, ceil in itertools.product(
        range(1, 16), range(1, 5), range(1, 5), (0, 1, 2, "same"), (1, 2, 3), (False, True)
    ):
        try:
            expected = _brute_used(n, k, s, p, d, ceil)
        except CnnlabError:
            continue
        assert used_positions(n, k, s, p, d, ceil) == expected, (n, k, s, p, d, ceil)
        assert unused_input(n, k, s, p, d, ceil) == n - len(expected)
    # sizes no list of taps could hold, in a process capped at 1 GiB of address space: an
    # implementation that lists taps fails with MemoryError instead of answering
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))\n"
        "from cnnlab.anatomy.arithmetic import unused_input\n"
        "print(unused_input(10**15, 3, 2), unused_input(10**15, 1, 3),"
        " unused_input(10**6, 2**20 // 2, 7, 'same'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    one, every_third, same = map(int, done.stdout.split())
    assert (one, every_third) == (1, 10**15 - -(-(10**15) // 3)) and same >= 0
