"""Grids of small images (filters, feature maps) as one mosaic.

One `imshow` of a mosaic instead of one axis per tile: a 512-map layer renders in a blink.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# One colour map each, on Explain, on Learn and in `cnnlab explain`: weights are signed, so a
# diverging map centred on 0 (red +, blue -); activations on viridis, dark low to yellow high.
FILTER_CMAP = "RdBu_r"
MAP_CMAP = "viridis"


@dataclass
class Mosaic:
    image: np.ndarray  # (H, W) with NaN gaps, or (H, W, 3) RGB in [0, 1] with white gaps
    rows: int
    cols: int
    tile: tuple[int, int]  # (h, w) of one tile in pixels
    count: int  # tiles filled (the last row may be short)


def grid_shape(n: int, cols: int | None = None) -> tuple[int, int]:
    """Rows and columns for n tiles: as square as possible, wider than tall."""
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def mosaic(tiles: np.ndarray, cols: int | None = None, gap: int = 1) -> Mosaic:
    """(N, h, w) or (N, h, w, 3) tiles into one image, row by row, `gap` pixels apart."""
    n, th, tw = tiles.shape[:3]
    rows, cols = grid_shape(n, cols)
    rgb = tiles.ndim == 4
    shape = (rows * (th + gap) - gap, cols * (tw + gap) - gap) + ((3,) if rgb else ())
    out = np.full(shape, 1.0 if rgb else np.nan, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (th + gap) : r * (th + gap) + th, c * (tw + gap) : c * (tw + gap) + tw] = tiles[i]
    return Mosaic(out, rows, cols, (th, tw), n)


def shared_range(values: np.ndarray) -> tuple[float, float]:
    """(low, high) of all the values: one scale for every tile, so a weak map looks weak."""
    lo, hi = float(np.min(values)), float(np.max(values))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def signed_rgb(filters_nhwc: np.ndarray) -> tuple[np.ndarray, float]:
    """Colour filters of a colour input as colours on one scale +-vmax, grey at 0 (values in
    0-1), and that vmax: the Explain page's filter grid and Learn's filter tiles."""
    vmax = float(np.abs(filters_nhwc).max()) or 1.0
    return np.clip(0.5 + filters_nhwc / (2 * vmax), 0, 1), vmax


def render_mosaic(
    m: Mosaic,
    title: str,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
):
    """A figure sized to the mosaic, with a title and (for one-channel tiles) a colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = m.image.shape[:2]
    scale = min(12 / w, 10 / h, 0.25) if max(h, w) > 48 else min(6 / w, 5 / h)
    fig_w, fig_h = max(4.5, w * scale + 1.6), max(3.2, h * scale + 1.0)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), constrained_layout=True)
    cm = matplotlib.colormaps[cmap].with_extremes(bad="white")
    im = ax.imshow(m.image, cmap=cm, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if colorbar and m.image.ndim == 2:
        fig.colorbar(im, ax=ax, shrink=0.8, label=colorbar)
    return fig
