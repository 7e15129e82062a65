"""Explain page: a conv layer's learned filters and, for an uploaded image, its feature maps,
beside the `cnnlab summary` layer table (shapes, parameters, receptive field)."""

import streamlit as st

from cnnlab.app.resources import (
    get_summary,
    require_bundle,
    upload_limit_mb,
)
from cnnlab.app.sample_input import sample_input
from cnnlab.app.table_widget import show_table
from cnnlab.data.images import UPLOAD_KINDS, UPLOAD_TYPES
from cnnlab.data.intake import upload_too_large
from cnnlab.errors import CnnlabError
from cnnlab.explain.layer_view import conv_layers, layer_filters, layer_maps, layer_table
from cnnlab.learn.fields import field_past_image
from cnnlab.report.figures import png_bytes
from cnnlab.report.tables import count_text

HALF_PAGE_PX = 420  # a column of two on a laptop's 1280-pixel window: the figures' text fits it

entry, bundle = require_bundle()
path = str(entry.path)
summary = get_summary(path)
st.title("Explain")
st.caption("A filter is a small learned kernel; a feature map is its response over the image. "
           "Pick a layer to see both, and where it sits in the network.")  # fmt: skip

layers = conv_layers(summary)
rows = {r.name: r for r in summary.rows}
if not layers:
    st.warning(f"{entry.label} has no convolution layers to show.")
    st.stop()
limit = upload_limit_mb()
file = st.file_uploader(f"An image to look at ({UPLOAD_KINDS}, up to {limit} MB)",
                        type=UPLOAD_TYPES, key="explain_file")  # fmt: skip
sample = sample_input("explain", bundle)  # always drawn: the page keeps its layout on upload
file = file or sample
layer = st.selectbox(
    "Layer",
    layers,
    format_func=lambda n: (
        f"{n}  ({rows[n].type}, output {rows[n].shape_text}, RF {rows[n].field.describe()})"
    ),
    key="explain_layer",
)


@st.cache_data(max_entries=32, show_spinner="Drawing the filters ...")
def filters_png(bundle_path: str, layer: str) -> bytes:
    return png_bytes(layer_filters(bundle, summary, layer), shown_px=HALF_PAGE_PX)


@st.cache_data(max_entries=32, show_spinner="Computing the feature maps ...")
def maps_png(bundle_path: str, layer: str, file_id: str, _data: bytes) -> bytes:
    return png_bytes(layer_maps(bundle, summary, _data, layer), shown_px=HALF_PAGE_PX)


row = rows[layer]
st.subheader(f"{layer}")
st.markdown(f"{row.type}: output {row.shape_text}, {row.params:,} parameters, receptive "
            f"field {row.field.describe()} (jump {row.field.describe_jump()})")  # fmt: skip
pre = bundle.preprocess
if row.field.kind == "spatial" and (note := field_past_image(row.field.rf, tuple(pre.size))):
    st.caption(note)
filters, maps = st.columns(2)
filters.image(filters_png(path, layer), caption="learned filters", width="stretch")
if file is None:
    maps.info("Upload an image, or try a sample, to see this layer's feature maps for it.")
else:
    problem = upload_too_large(file.size, limit)
    try:
        if problem:
            raise CnnlabError(f"{file.name}: {problem}")
        maps.image(maps_png(path, layer, file.file_id, file.getvalue()),
                   caption=f"feature maps for {file.name}", width="stretch")  # fmt: skip
    except CnnlabError as e:
        maps.error(f"Cannot show feature maps: {e}")
# the whole width: every column of the summary in view (beside the figures it lost RF and jump)
st.subheader("Layers (cnnlab summary)")
show_table(layer_table(summary), height=min(420, 35 * (len(summary.rows) + 1) + 3))
st.caption(f"Total parameters {summary.total_params:,} (trainable {summary.trainable_params:,}); "
           f"mult-adds {count_text(summary.mult_adds, 10**6)} per image. RF: input pixels one "
           "unit sees; jump: effective stride in input pixels.")  # fmt: skip
