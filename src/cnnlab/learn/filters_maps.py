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
from cnnlab.explain.render import FILTER_CMAP, MAP_CMAP, shared_range, signed_rgb
from cnnlab.learn.conv_drawing import font


def _colour(arr: np.ndarray, cmap: str, lo: float, hi: float) -> np.ndarray:
    import matplotlib

    span = hi - lo if hi > lo else 1.0
    return (matplotlib.colormaps[cmap](np.clip((arr - lo) / span, 0, 1))[..., :3] * 255).astype(
        np.uint8
    )


def filter_tiles(weight: np.ndarray) -> tuple[list[np.ndarray], float]:
    """RGB tiles on one shared scale +-vmax (returned with them): colour filters of a colour
    input as colours (grey at 0), others on FILTER_CMAP (averaged over the input channels when
    there are several) -- the scale and colours of the Explain page."""
    if weight.shape[1] == 3:
        tiles, vmax = signed_rgb(weight.transpose(0, 2, 3, 1))
        return [(t * 255).astype(np.uint8) for t in tiles], vmax
    mean = weight.mean(1)
    vmax = float(np.abs(mean).max()) or 1.0
    return [_colour(w, FILTER_CMAP, -vmax, vmax) for w in mean], vmax


def colour_bar(d: ImageDraw.ImageDraw, out: Image.Image, xy: tuple[int, int], width: int,
               cmap: str, lo: float, hi: float, label: str) -> None:  # fmt: skip
    """A horizontal colour bar with its ends and middle labelled, and what it measures."""
    x, y = xy
    ramp = _colour(np.tile(np.linspace(lo, hi, width), (12, 1)), cmap, lo, hi)
    out.paste(Image.fromarray(ramp), (x, y))
    d.rectangle((x - 1, y - 1, x + width, y + 12), outline=(120, 120, 120))
    f = font(15)
    for value, at in ((lo, x), ((lo + hi) / 2, x + width // 2), (hi, x + width)):
        text = f"{value:.3g}"
        d.text((at - d.textlength(text, font=f) / 2, y + 15), text, fill=(30, 30, 30), font=f)
    d.text((x + width + 14, y - 2), label, fill=(30, 30, 30), font=f)


def filters_beside_maps(target, summary: Summary, x, pixels: np.ndarray, layer: str,
                        count: int = 8, tile: int = 96, per_row: int = 4) -> Image.Image:  # fmt: skip
    """The input, then `count` pairs (filter i | feature map i) of conv `layer`, as one image."""
    name = resolve_layer(summary.layer_names(), layer)
    weight = conv_weight(target.model, name)
    fmap = feature_maps(target.model, x, [name])[name].numpy()
    n = min(count, weight.shape[0], fmap.shape[0])
    ftiles, vmax = filter_tiles(weight[:n])
    lo, hi = shared_range(fmap[:n])
    rows = math.ceil(n / per_row)
    label = 21
    pair_w = 2 * tile + 6
    grid_w = per_row * (pair_w + 14)
    input_side = min(rows * (tile + label) - label, 2 * tile + label) if rows > 1 else tile
    width = 12 + input_side + 24 + grid_w
    bars = 2 * 44 + 6  # the two colour bars under the pairs
    height = 30 + rows * (tile + label) + 8 + bars
    out = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(out)
    c_in = weight.shape[1]
    d.text((12, 6), f"{name}: filter i (left, {weight.shape[2]}x{weight.shape[3]}"
           f"{'' if c_in in (1, 3) else f', mean of {c_in} input channels'}) beside feature map i "
           f"(right, {fmap.shape[1]}x{fmap.shape[2]}, before BatchNorm/activation if they follow)",
           fill=(30, 30, 30), font=font(16))  # fmt: skip
    img = np.asarray(pixels)
    img = img.transpose(1, 2, 0) if img.ndim == 3 and img.shape[0] in (1, 3) else img
    img = img[..., 0] if img.ndim == 3 and img.shape[2] == 1 else img
    inp = Image.fromarray(img).convert("RGB").resize((input_side, input_side), Image.BILINEAR)
    out.paste(inp, (12, 30))
    d.text((12, 30 + input_side + 2), "input", fill=(30, 30, 30), font=font(15))
    x0 = 12 + input_side + 24
    for i in range(n):
        r, c = divmod(i, per_row)
        px, py = x0 + c * (pair_w + 14), 30 + r * (tile + label)
        f = Image.fromarray(ftiles[i]).resize((tile, tile), Image.NEAREST)
        m = fmap[i]
        mt = Image.fromarray(_colour(m, MAP_CMAP, lo, hi))
        out.paste(f, (px, py))
        out.paste(mt.resize((tile, tile), Image.NEAREST), (px + tile + 6, py))
        d.text((px, py + tile + 1), f"filter {i}", fill=(30, 30, 30), font=font(15))
        d.text((px + tile + 6, py + tile + 1), f"map {i}", fill=(30, 30, 30), font=font(15))
    bar_y, bar_w = 30 + rows * (tile + label) + 16, min(320, grid_w // 2)
    if weight.shape[1] == 3:
        d.text((x0, bar_y - 2), f"filters: RGB, grey = 0, full colour = ±{vmax:.3g} (one scale)",
               fill=(30, 30, 30), font=font(16))  # fmt: skip
    else:
        colour_bar(
            d, out, (x0, bar_y), bar_w, FILTER_CMAP, -vmax, vmax, "filter weight (one scale)"
        )
    colour_bar(d, out, (x0, bar_y + 44), bar_w, MAP_CMAP, lo, hi, "feature map value (one scale)")
    return out
