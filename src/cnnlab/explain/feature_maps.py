"""Feature maps: what each filter of a layer responds to in one image, every map scaled to its
own min..max so weak and strong maps are both visible."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.explain.capture import capture_outputs
from cnnlab.explain.render import Mosaic, mosaic, normalise_each, render_mosaic


@dataclass
class FeatureMaps:
    layer: str
    shape: tuple[int, int, int]  # (C, H, W) of the layer's output
    mosaic: Mosaic
    shown: int
    low: np.ndarray  # per shown map: the raw value drawn as 0 ...
    high: np.ndarray  # ... and as 1


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
    """Tile the first `max_maps` maps of a (C, H, W) output, each normalised on its own."""
    arr = maps.detach().float().cpu().numpy()
    shown = arr[:max_maps]
    flat = shown.reshape(len(shown), -1)
    return FeatureMaps(
        layer, tuple(arr.shape), mosaic(normalise_each(shown)), len(shown),
        flat.min(1), flat.max(1),
    )  # fmt: skip


def plot_feature_maps(fm: FeatureMaps, layer_type: str = ""):
    c, h, w = fm.shape
    kind = f" ({layer_type})" if layer_type else ""
    more = f", first {fm.shown} of {c} maps" if fm.shown < c else f", {c} maps"
    title = f"{fm.layer}{kind}: output {h}x{w}x{c}{more}"
    return render_mosaic(
        fm.mosaic, title, "viridis", 0.0, 1.0, "activation (each map: its min → 0, max → 1)"
    )
