"""A layer's learned filters as a grid: RGB for first-layer colour filters, else one tile per
input channel (rows = filters, columns = input channels); every grid on one shared scale,
signed weights on the diverging FILTER_CMAP with a colour bar."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.explain.render import FILTER_CMAP, Mosaic, mosaic, render_mosaic, signed_rgb
from cnnlab.runtime.taps import split_name


@dataclass
class FilterGrid:
    layer: str
    weight_shape: tuple[int, ...]  # (filters, in_channels / groups, kh, kw)
    mode: str  # "rgb", "gray" (one input channel) or "channels"
    mosaic: Mosaic
    shown_filters: int
    shown_channels: int
    vmax: float  # shared |weight| scale of gray/channel grids


def conv_weight(model: nn.Module, layer: str) -> np.ndarray:
    """The (filters, c_in/groups, kh, kw) weight of a conv layer named as the summary names it."""
    module = dict(model.named_modules()).get(split_name(layer)[0])
    weight = getattr(module, "weight", None)
    if weight is None or weight.dim() != 4:
        kind = type(module).__name__ if module is not None else "missing"
        raise CnnlabError(f"layer {layer!r} ({kind}) has no conv filters; pick a Conv2d layer")
    return weight.detach().float().cpu().numpy()


def filter_grid(
    weight: np.ndarray, layer: str = "", rgb: bool = False, max_filters: int = 64,
    max_channels: int = 16,
) -> FilterGrid:  # fmt: skip
    """Arrange filters for viewing; `rgb` (three input channels that are the image's colours)
    shows each filter as one colour tile, grey at 0, all on the same +-vmax scale."""
    n, c = weight.shape[:2]
    shown = weight[:max_filters]
    vmax = float(np.abs(shown).max()) or 1.0
    if rgb and c == 3:
        tiles, vmax = signed_rgb(shown.transpose(0, 2, 3, 1))
        return FilterGrid(layer, weight.shape, "rgb", mosaic(tiles), len(shown), 3, vmax)
    if c == 1:
        return FilterGrid(layer, weight.shape, "gray", mosaic(shown[:, 0]), len(shown), 1, vmax)
    shown = shown[: min(max_filters, 32), :max_channels]
    f, k = shown.shape[:2]
    tiles = shown.reshape(f * k, *shown.shape[2:])
    return FilterGrid(layer, weight.shape, "channels", mosaic(tiles, cols=k), f, k, vmax)


def plot_filters(grid: FilterGrid, title: str | None = None):
    n, c, kh, kw = grid.weight_shape
    more = f", first {grid.shown_filters} of {n}" if grid.shown_filters < n else ""
    if grid.shown_channels < c and grid.mode == "channels":
        more += f", first {grid.shown_channels} of {c} input channels"
    head = title or f"{grid.layer}: {n} filters {kh}x{kw}x{c}{more}"
    if grid.mode == "rgb":
        return render_mosaic(grid.mosaic, head + f"\n(RGB, one scale: grey 0, ±{grid.vmax:.3g})")
    if grid.mode == "gray":
        return render_mosaic(grid.mosaic, head, FILTER_CMAP, -grid.vmax, grid.vmax, "weight")
    return render_mosaic(
        grid.mosaic, head, FILTER_CMAP, -grid.vmax, grid.vmax, "weight",
        xlabel="input channel →", ylabel="← filter",
    )  # fmt: skip
