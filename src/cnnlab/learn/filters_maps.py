"""Filters and feature maps together: filter i beside its feature map i, the input beside them,
so the eye can match each kernel to what it picks out of the image."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from cnnlab.anatomy.summary import Summary
from cnnlab.explain.capture import resolve_layer
from cnnlab.explain.feature_maps import feature_maps
from cnnlab.explain.filters import conv_weight
from cnnlab.learn.conv_drawing import font


def _colour(arr: np.ndarray, cmap: str, lo: float, hi: float) -> np.ndarray:
    import matplotlib

    span = hi - lo if hi > lo else 1.0
    return (matplotlib.colormaps[cmap](np.clip((arr - lo) / span, 0, 1))[..., :3] * 255).astype(
        np.uint8
    )


def filter_tiles(weight: np.ndarray) -> list[np.ndarray]:
    """RGB tiles: colour filters of a colour input as colours, others on a signed blue-red scale
    (averaged over the input channels when there are several)."""
    if weight.shape[1] == 3:
        tiles = []
        for w in weight:
            w = w.transpose(1, 2, 0)
            lo, hi = w.min(), w.max()
            tiles.append(((w - lo) / (hi - lo if hi > lo else 1) * 255).astype(np.uint8))
        return tiles
    mean = weight.mean(1)
    vmax = float(np.abs(mean).max()) or 1.0
    return [_colour(w, "RdBu_r", -vmax, vmax) for w in mean]


def filters_beside_maps(target, summary: Summary, x, pixels: np.ndarray, layer: str,
                        count: int = 8, tile: int = 96, per_row: int = 4) -> Image.Image:  # fmt: skip
    """The input, then `count` pairs (filter i | feature map i) of conv `layer`, as one image."""
    name = resolve_layer(summary.layer_names(), layer)
    weight = conv_weight(target.model, name)
    fmap = feature_maps(target.model, x, [name])[name].numpy()
    n = min(count, weight.shape[0], fmap.shape[0])
    ftiles = filter_tiles(weight[:n])
    rows = math.ceil(n / per_row)
    label = 18
    pair_w = 2 * tile + 6
    grid_w = per_row * (pair_w + 14)
    input_side = min(rows * (tile + label) - label, 2 * tile + label) if rows > 1 else tile
    width = 12 + input_side + 24 + grid_w
    height = 30 + rows * (tile + label) + 8
    out = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(out)
    c_in = weight.shape[1]
    d.text((12, 6), f"{name}: filter i (left, {weight.shape[2]}x{weight.shape[3]}"
           f"{'' if c_in in (1, 3) else f', mean of {c_in} input channels'}) beside feature map i "
           f"(right, {fmap.shape[1]}x{fmap.shape[2]}, before BatchNorm/activation if they follow)",
           fill=(30, 30, 30), font=font(13))  # fmt: skip
    img = np.asarray(pixels)
    img = img.transpose(1, 2, 0) if img.ndim == 3 and img.shape[0] in (1, 3) else img
    img = img[..., 0] if img.ndim == 3 and img.shape[2] == 1 else img
    inp = Image.fromarray(img).convert("RGB").resize((input_side, input_side), Image.BILINEAR)
    out.paste(inp, (12, 30))
    d.text((12, 30 + input_side + 2), "input", fill=(30, 30, 30), font=font(12))
    x0 = 12 + input_side + 24
    for i in range(n):
        r, c = divmod(i, per_row)
        px, py = x0 + c * (pair_w + 14), 30 + r * (tile + label)
        f = Image.fromarray(ftiles[i]).resize((tile, tile), Image.NEAREST)
        m = fmap[i]
        mt = Image.fromarray(_colour(m, "viridis", float(m.min()), float(m.max())))
        out.paste(f, (px, py))
        out.paste(mt.resize((tile, tile), Image.NEAREST), (px + tile + 6, py))
        d.text((px, py + tile + 1), f"filter {i}", fill=(30, 30, 30), font=font(12))
        d.text((px + tile + 6, py + tile + 1), f"map {i}", fill=(30, 30, 30), font=font(12))
    return out
