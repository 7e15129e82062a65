"""Classify page: upload images (several at once) and read each result in words, optionally
with its Grad-CAM overlay; download the table as CSV.

Uploads are classified as they arrive, in the rerun the upload itself causes: a separate
Classify button cost the user a second round trip (about half a second) for nothing, since
the files of one upload arrive together and are predicted as one batch anyway. Each file is
decoded once: its prediction carries the pixels the model saw, which the page shows, Grad-CAM
explains and the notes describe."""

import hashlib
import time

import numpy as np
import streamlit as st
import torch

from cnnlab.app.resources import (
    get_cam_layer,
    get_summary,
    require_bundle,
    session_id,
    upload_limit_mb,
)
from cnnlab.app.sample_input import sample_input
from cnnlab.app.table_widget import show_table
from cnnlab.data.images import UPLOAD_KINDS, UPLOAD_TYPES
from cnnlab.errors import CnnlabError
from cnnlab.explain import gradcam_image, overlay_heatmap
from cnnlab.explain.gradcam import caveat
from cnnlab.predict import predict_uploads
from cnnlab.records.entries import put_on_record
from cnnlab.report.figures import colorbar_figure, png_bytes
from cnnlab.report.present import present
from cnnlab.report.rows import flat_row, rows_csv
from cnnlab.report.verdict import Verdict, nice_label

RESULTS = "classify_results"

entry, bundle = require_bundle()
pre = bundle.preprocess
st.title("Classify")
classes = (
    " / ".join(bundle.classes) if len(bundle.classes) <= 12 else f"{len(bundle.classes)} classes"
)
rule = (
    f"says **{nice_label(bundle.classes[1])}** when its calibrated probability of "
    f"{nice_label(bundle.classes[1])}, P({nice_label(bundle.classes[1])}), is at least "
    f"**{bundle.threshold:.2f}** ({bundle.decision.get('policy_text') or bundle.decision.get('policy', 'fixed')}), "
    f"else {nice_label(bundle.classes[0])}"
    if bundle.binary
    else "picks the most probable class"
)
if bundle.ood is not None:
    rule += "; an image unlike its training images is flagged as such"
st.caption(f"Model **{entry.label}**: `{bundle.meta['model']['name']}`, classes {classes}, input "
           f"{pre.channels}x{pre.size[0]}x{pre.size[1]} ({pre.resize}); it {rule}.")  # fmt: skip

limit = upload_limit_mb()
files = st.file_uploader(
    f"Images to classify: {UPLOAD_KINDS}, several at once, up to {limit} MB each",
    type=UPLOAD_TYPES,
    accept_multiple_files=True,
    key="classify_files",
)
sample = sample_input("classify", bundle)
files = files or ([sample] if sample else [])
show_cam = st.toggle("Grad-CAM overlay", key="gradcam",
                     help="where in the image the evidence for the decided class lies")  # fmt: skip

# results are kept per (model, uploads): toggling Grad-CAM or coming back to the page
# does not run the model again; a new upload or another model does
state_key = (str(entry.path), tuple(f.file_id for f in files))
stored = st.session_state.get(RESULTS)
results = stored[1] if stored and stored[0] == state_key else None
if files and results is None:
    with st.spinner(f"Classifying {len(files)} image{'s' if len(files) > 1 else ''} ..."):
        start = time.perf_counter()
        results = predict_uploads(bundle, [(f.name, f.getvalue()) for f in files], limit)
        try:  # on record before it is shown, or not shown
            put_on_record([present(p, bundle) for p in results], bundle, "app", session_id(),
                          (time.perf_counter() - start) * 1e3, [f.getvalue() for f in files])  # fmt: skip
        except CnnlabError as e:
            st.error(str(e))
            st.stop()
    st.session_state[RESULTS] = (state_key, results)  # on record once, however often shown


@st.cache_data(max_entries=64, show_spinner="Computing Grad-CAM ...")
def cam_overlay(bundle_path: str, digest: str, label: str, _pixels: torch.Tensor) -> np.ndarray:
    pixels, cam = gradcam_image(bundle, _pixels, get_cam_layer(bundle_path), label)
    return overlay_heatmap(pixels, cam.heatmap)


@st.cache_data(max_entries=8, show_spinner=False)
def colorbar_png(label: str) -> bytes:
    return png_bytes(colorbar_figure(f"Grad-CAM: evidence for {label}"), dpi=110, shown_px=220)


@st.cache_data(max_entries=8, show_spinner=False)
def cam_caveat(bundle_path: str) -> str | None:
    """Grad-CAM's caveat for this model: its input and its CAM layer's map size."""
    layer = get_cam_layer(bundle_path)
    row = next((r for r in get_summary(bundle_path).rows if r.name == layer), None)
    size = tuple(pre.size)
    return caveat(size, tuple(row.output_shape[1:]) if row else size)


def top_text(top_k: list[dict]) -> str:
    """'8 0.146 · 9 0.128 · 0 0.124': the CSV's 8:0.1458;9:0.1283 for a reader."""
    return " · ".join(f"{nice_label(t['label'])} {float(t['probability']):.3f}" for t in top_k)


def show_verdict(box, v: Verdict) -> None:
    """One colour per kind of answer: the positive class (e.g. Pneumonia) red, the other class
    (or a confident multi-class label) green, unsure amber, unlike the training images grey-blue."""
    if v.kind == "out_of_distribution":
        box.info(v.sentence, icon=":material/help:")
    elif v.kind == "uncertain":
        box.warning(v.sentence, icon=":material/help:")
    elif v.positive:
        box.error(v.sentence, icon=":material/report:")
    else:
        box.success(v.sentence, icon=":material/check_circle:")


def model_view(pixels: torch.Tensor) -> np.ndarray:
    """The image exactly as the model received it (size, channels), for display."""
    img = pixels.permute(1, 2, 0).numpy()
    return img[..., 0] if img.shape[2] == 1 else img


if results is not None:
    if show_cam and (note := cam_caveat(str(entry.path))):
        st.warning(note, icon=":material/zoom_out_map:")
    rows = []
    for f, pred in zip(files, results, strict=True):
        shown = present(pred, bundle)  # the CLI's and the API's words too
        v = shown.verdict
        rows.append(shown.row)
        with st.container(border=True):
            if v.refused:
                st.warning(f"**{f.name}**: {v.sentence}", icon=":material/block:")
                continue
            if v.error:
                st.error(f"**{f.name}**: cannot be classified: {v.error}")
                st.caption("Nothing was stored. Try another file; the app carries on.")
                continue
            cols = st.columns([1, 1, 2] if show_cam else [1, 3])
            cols[0].image(model_view(pred.pixels), caption="as the model sees it", width="stretch")
            if show_cam:
                try:
                    digest = hashlib.sha256(f.getvalue()).hexdigest()
                    overlay = cam_overlay(str(entry.path), digest, pred.label or "", pred.pixels)
                    cols[1].image(overlay,
                                  caption=f"Grad-CAM for {nice_label(pred.label or '')}",
                                  width="stretch")  # fmt: skip
                    cols[1].image(colorbar_png(nice_label(pred.label or "")), width="stretch")
                except CnnlabError as e:
                    cols[1].error(str(e))
            text = cols[-1]
            text.markdown(f"**{f.name}**")
            show_verdict(text, v)
            text.markdown(shown.details)
            if pred.notes:
                text.caption("Input: " + "; ".join(pred.notes))
    show_table(({**flat_row(r, empty=None), "top_k": top_text(r["top_k"])} for r in rows), pin=True)
    st.download_button("Download results (CSV)", rows_csv(rows), file_name="cnnlab_results.csv",
                       mime="text/csv")  # fmt: skip
