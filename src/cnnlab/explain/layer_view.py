"""One layer seen two ways for the app's Explain page: its learned filters and its feature
maps for one image, beside the summary's layer table (shapes, parameters, receptive field).

`target` is a Bundle or an anatomy Target (anything with `model` and `preprocess`); images go
through its own preprocessing, as in `cnnlab explain`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.anatomy.summary import LayerRow, Summary
from cnnlab.explain.capture import resolve_layer
from cnnlab.explain.feature_maps import feature_map_grid, feature_maps, plot_feature_maps
from cnnlab.explain.filters import conv_weight, filter_grid, plot_filters
from cnnlab.explain.gallery import load_input


@dataclass
class LayerView:
    row: LayerRow
    filters: Any  # matplotlib Figure of the filter grid
    maps: Any  # matplotlib Figure of the feature maps


def conv_layers(summary: Summary) -> list[str]:
    """Conv layers with a spatial output: each has filters to show and maps to compute."""
    return [
        r.name
        for r in summary.rows
        if r.type.startswith("Conv") and len(r.output_shape) == 3 and "#" not in r.name
    ]


def layer_table(summary: Summary) -> list[dict[str, Any]]:
    """The `cnnlab summary` table as records: layer, type, output, params, mult-adds, RF, jump."""
    return [
        {
            "layer": r.name, "type": r.type, "output": r.shape_text, "params": r.params,
            "mult_adds": r.mult_adds, "receptive_field": r.field.describe(),
            "jump": r.field.describe_jump(), "start": r.field.describe_start(),
        }
        for r in summary.rows
    ]  # fmt: skip


def layer_filters(target: Any, summary: Summary, layer: str):
    """The filter grid of conv `layer` (first-layer colour filters drawn in RGB)."""
    name = resolve_layer(summary.layer_names(), layer)
    weight = conv_weight(target.model, name)
    convs = [r.name for r in summary.rows if r.type.startswith("Conv")]
    rgb = bool(convs) and name == convs[0] and weight.shape[1] == 3
    return plot_filters(filter_grid(weight, name, rgb=rgb))


def layer_maps(
    target: Any, summary: Summary, image: str | Path | bytes, layer: str, max_maps: int = 64
):
    """The feature maps of `layer` for `image` (a CnnlabError when the image is unreadable)."""
    name = resolve_layer(summary.layer_names(), layer)
    row = next(r for r in summary.rows if r.name == name)
    _, x = load_input(target, image)
    fmap = feature_maps(target.model, x, [name])[name]
    return plot_feature_maps(feature_map_grid(fmap, name, max_maps), row.type)


def explain_layer(
    target: Any, summary: Summary, image: str | Path | bytes, layer: str, max_maps: int = 64
) -> LayerView:
    """Both views of conv `layer` for `image`, with its summary row."""
    name = resolve_layer(summary.layer_names(), layer)
    row = next(r for r in summary.rows if r.name == name)
    return LayerView(row, layer_filters(target, summary, name),
                     layer_maps(target, summary, image, name, max_maps))  # fmt: skip
