"""Feature maps: what each filter of a layer responds to in one image, all maps on one shared
scale with a colour bar, so a map that barely responds looks faint beside one that fires."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.explain.capture import capture_outputs
from cnnlab.explain.render import MAP_CMAP, Mosaic, mosaic, render_mosaic, shared_range


@dataclass
class FeatureMaps:
    layer: str
    shape: tuple[int, int, int]  # (C, H, W) of the layer's output
    mosaic: Mosaic
    shown: int
    low: float  # the raw value at the bottom of the shared colour scale ...
    high: float  # ... and at its top


def feature_maps(model: nn.Module, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """(C, H, W) outputs of the named layers for one normalised image `x` (1, C, H, W)."""
    outs = capture_outputs(model, x, layers)
    result = {}
    for name in layers:
        out = outs.get(name)
        if out is None:
            raise CnnlabError(f"layer {name!r} did not run for this input")
        if out.dim() != 4:
            shape = "x".join(map(str, out.shape[1:]))
            raise CnnlabError(f"layer {name!r} outputs a vector ({shape}), not feature maps")
        result[name] = out[0]
    return result


def feature_map_grid(maps: torch.Tensor, layer: str = "", max_maps: int = 64) -> FeatureMaps:
    """Tile the first `max_maps` maps of a (C, H, W) output on one shared scale."""
    arr = maps.detach().float().cpu().numpy()
    shown = arr[:max_maps]
    low, high = shared_range(shown)
    return FeatureMaps(layer, tuple(arr.shape), mosaic(shown), len(shown), low, high)


def plot_feature_maps(fm: FeatureMaps, layer_type: str = ""):
    c, h, w = fm.shape
    kind = f" ({layer_type})" if layer_type else ""
    more = f", first {fm.shown} of {c} maps" if fm.shown < c else f", {c} maps"
    title = f"{fm.layer}{kind}: output {h}x{w}x{c}{more}"
    return render_mosaic(fm.mosaic, title, MAP_CMAP, fm.low, fm.high, "activation (one scale)")
