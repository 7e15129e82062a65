"""Filters and feature maps on one shared scale, in the same colours on Explain and Learn, and
figure text legible at the size a page shows it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from cnnlab.anatomy.summary import summarize
from cnnlab.explain.feature_maps import feature_map_grid, plot_feature_maps
from cnnlab.explain.filters import filter_grid, plot_filters
from cnnlab.explain.gradcam import caveat
from cnnlab.explain.render import FILTER_CMAP, MAP_CMAP
from cnnlab.learn.filters_maps import filters_beside_maps
from cnnlab.report.figures import MIN_TEXT_PX, fit_text, roc_figure


def test_a_weak_map_stays_faint_beside_a_strong_one():
    maps = torch.stack([torch.full((4, 4), 0.1), torch.full((4, 4), 10.0)])
    grid = feature_map_grid(maps, "conv")
    assert (grid.low, grid.high) == (np.float32(0.1), np.float32(10.0))
    tiles = grid.mosaic.image
    assert np.nanmin(tiles) == np.float32(0.1) and np.nanmax(tiles) == np.float32(10.0)
    image = plot_feature_maps(grid).axes[0].images[0]
    assert image.get_cmap().name.startswith(MAP_CMAP) and image.get_clim() == (grid.low, grid.high)
    assert len(plot_feature_maps(grid).axes) == 2  # the maps and their colour bar


def test_filters_signed_on_the_shared_diverging_map():
    weight = np.stack([np.full((1, 3, 3), 0.5), np.full((1, 3, 3), -0.1)]).astype(np.float32)
    fig = plot_filters(filter_grid(weight, "conv"))
    image = fig.axes[0].images[0]
    assert image.get_cmap().name.startswith(FILTER_CMAP) and image.get_clim() == (-0.5, 0.5)
    rgb = filter_grid(np.stack([np.full((3, 3, 3), 0.4), np.zeros((3, 3, 3))]), "c", rgb=True)
    assert np.allclose(rgb.mosaic.image[:3, :3], 1.0) and np.allclose(rgb.mosaic.image[:3, 4:], 0.5)


def test_learn_pairs_use_one_scale_for_every_map():
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1], conv.weight[1, 0, 1, 1] = 0.05, 1.0  # a weak and a strong map
    model = nn.Sequential(conv)
    target = type("Target", (), {"model": model})()
    summary = summarize(model, (1, 8, 8), "two")
    x = torch.ones(1, 1, 8, 8)
    img = np.asarray(filters_beside_maps(target, summary, x, np.full((8, 8), 255, np.uint8),
                                         "0", count=2, tile=32, per_row=2))  # fmt: skip
    input_side, x0 = 32, 12 + 32 + 24
    weak = img[30 + 10, x0 + 32 + 6 + 10]  # map 0, inside its tile
    strong = img[30 + 10, x0 + (2 * 32 + 6 + 14) + 32 + 6 + 10]  # map 1
    assert input_side and not np.array_equal(weak, strong)  # per-map scaling made both the same
    assert img.shape[0] > 30 + 52 + 80  # the two colour bars under the pairs


def test_figure_text_is_legible_at_the_size_shown():
    metrics = {"roc_curve": {"fpr": [0, 0.2, 1], "tpr": [0, 0.8, 1]}, "auc": 0.8}
    fig = roc_figure(metrics, "Pneumonia")
    fit_text(fig, shown_px=280)
    fig.draw_without_rendering()
    from matplotlib.text import Text

    scale = 280 / (72 * fig.get_figwidth())  # CSS pixels per point as shown
    sizes = [
        t.get_fontsize() * scale for t in fig.findobj(Text) if t.get_text() and t.get_visible()
    ]
    assert sizes and min(sizes) >= MIN_TEXT_PX - 1e-6


def test_gradcam_caveat_on_small_inputs_and_coarse_maps():
    assert "only 28x28 pixels" in caveat((28, 28), (7, 7))
    assert "map it comes from is 2x2" in caveat((96, 96), (2, 2))
    assert caveat((224, 224), (7, 7)) is None


def test_a_title_grown_past_the_figure_is_wrapped_not_cut():
    from cnnlab.explain.feature_maps import feature_map_grid, plot_feature_maps

    name = "backbone.model.conv_stem"  # its title ran off the left edge at 420 px
    fig = plot_feature_maps(feature_map_grid(torch.randn(32, 8, 8), name), "Conv2d")
    fit_text(fig, shown_px=420)
    fig.draw_without_rendering()
    title = fig.axes[0].title
    assert "\n" in title.get_text()
    lines = title.get_text().split("\n")  # broken after the name, not inside "32 maps"
    assert lines[0] == f"{name} (Conv2d):" and not any(x in ("maps", "32") for x in lines)
    assert "32 maps" in title.get_text()
    box = title.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.get_figwidth() * fig.dpi  # inside the figure
