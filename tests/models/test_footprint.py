"""A model too big to hold is refused before a byte of it is allocated: its size is taken on
PyTorch's meta device (shapes, no storage). `image_size: [4096, 4096]` made keras_mnist_cnn's
dense layer 8.6 G parameters, and the build tried to allocate 34 GB."""

from __future__ import annotations

import resource

import pytest
import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.models import count_params, create_model, get_entry
from cnnlab.models.footprint import footprint


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_a_model_too_big_to_hold_is_refused_before_it_is_built():
    before = _rss()
    with pytest.raises(CnnlabError, match=r"keras_mnist_cnn \(input_size=\[4096, 4096\]\) would "
                       r"have 8,556 M parameters \(34\.2 GB\); cnnlab builds at most 1,000 M"):  # fmt: skip
        create_model("keras_mnist_cnn", input_size=[4096, 4096])
    with pytest.raises(CnnlabError, match=r"fastnet \(widths=\[100000, 100000\]\) would have"):
        create_model("fastnet", widths=[100_000, 100_000])
    assert _rss() - before < 2**29  # nothing near the model's size was allocated


def test_the_size_check_leaves_the_random_draws_alone():
    torch.manual_seed(3)
    built = create_model("lenet5")
    torch.manual_seed(3)
    direct = get_entry("lenet5").builder()
    for a, b in zip(built.state_dict().values(), direct.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_footprint_counts_parameters_and_layer_outputs_without_allocating():
    model = create_model("lenet5")
    outputs: list[int] = []
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append(o.numel()))
             for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]  # fmt: skip
    model(torch.zeros(1, 1, 32, 32))
    for h in hooks:
        h.remove()
    fp = footprint("lenet5", {}, (1, 32, 32))
    assert fp.params == count_params(model)
    assert fp.saved_per_image == sum(outputs) and fp.largest_per_image == max(outputs)
    assert footprint("keras_mnist_cnn", {"input_size": [4096, 4096]}, (1, 4096, 4096)).params > 8e9


def test_a_layer_count_past_any_real_model_is_refused_at_once():
    """Parameters stay few, but each layer costs a Python object: convs_per_stage 2000 took
    31 s and 960 MB even on the meta device: the count is refused before any layer exists."""
    with pytest.raises(CnnlabError, match="convs_per_stage must be from 1 to 32, got 1000"):
        create_model("fastnet", convs_per_stage=1000)
