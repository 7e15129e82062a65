"""A model's size taken before it exists: built on PyTorch's meta device (every shape, no
storage), so a recipe that would make a 34 GB model, or a step needing 500 GB of activations,
is refused in milliseconds instead of exhausting the machine."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from cnnlab.models.registry import get_entry, meta_model


@dataclass(frozen=True)
class Footprint:
    params: int
    saved_per_image: (
        int  # elements the conv and linear layers output for one image (kept for backward)
    )
    largest_per_image: int  # the largest such output (what inference holds at once, at least)


def footprint(
    name: str, kwargs: dict[str, Any], input_shape: tuple[int, int, int]
) -> Footprint | None:
    """Parameters and per-image layer outputs of the model `name(**kwargs)` on `input_shape`
    (C, H, W), measured on the meta device; None where the model cannot run there."""
    model = meta_model(get_entry(name), kwargs)
    if model is None:
        return None
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel()))
             for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]  # fmt: skip
    try:
        with torch.no_grad(), contextlib.suppress(Exception):
            model.eval()(torch.empty(1, *input_shape, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    return Footprint(params, sum(sizes), max(sizes, default=0))
