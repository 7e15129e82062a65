"""The Explain page's library calls: conv layers, the summary table, filters and feature maps."""

from __future__ import annotations

import pytest

from cnnlab.anatomy.summary import summarize
from cnnlab.bundle import load_bundle
from cnnlab.errors import CnnlabError
from cnnlab.explain.layer_view import conv_layers, explain_layer, layer_table
from tests.app.conftest import SIZE, encode, xray_like


@pytest.fixture(scope="module")
def loaded(app_bundle):
    bundle = load_bundle(app_bundle)
    return bundle, summarize(bundle.model, (1, SIZE, SIZE), bundle.name)


def test_conv_layers_and_table(loaded):
    bundle, summary = loaded
    assert conv_layers(summary) == ["features.stage1_conv1", "features.stage2_conv1"]
    table = layer_table(summary)
    assert len(table) == len(summary.rows)
    first = table[0]
    assert (first["layer"], first["output"], first["params"]) == (
        "features.stage1_conv1",
        "60x60x4",
        100,
    )
    assert first["receptive_field"] == "5x5"
    row2 = next(r for r in table if r["layer"] == "features.stage2_conv1")
    assert row2["receptive_field"] == "14x14" and row2["jump"] == "2x2"


def test_explain_layer_gives_filters_and_maps_of_that_layer(loaded):
    import matplotlib.pyplot as plt

    bundle, summary = loaded
    view = explain_layer(bundle, summary, encode(xray_like()), "stage2_conv1", max_maps=6)
    assert view.row.name == "features.stage2_conv1"
    assert "8 filters 5x5x4" in view.filters.axes[0].get_title()
    maps_title = view.maps.axes[0].get_title()
    assert "26x26x8" in maps_title and "first 6 of 8 maps" in maps_title
    plt.close(view.filters)
    plt.close(view.maps)


def test_explain_layer_refuses_a_bad_image(loaded):
    bundle, summary = loaded
    with pytest.raises(CnnlabError, match="not a recognised image format"):
        explain_layer(bundle, summary, b"plain text", "stage1_conv1")
