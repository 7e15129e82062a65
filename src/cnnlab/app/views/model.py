"""Model page: the model card, validation and external figures side by side with 95% intervals
(and which images the threshold was fitted on), ROC curve, confusion matrix and calibration
diagram, all drawn from the bundle itself."""

import streamlit as st

from cnnlab.app.resources import require_bundle
from cnnlab.report.card import fitted_on_text
from cnnlab.report.figures import confusion_figure, png_bytes, reliability_figure, roc_figure
from cnnlab.report.metrics import figure_table
from cnnlab.report.verdict import nice_label

entry, bundle = require_bundle()
metrics = bundle.meta.get("metrics") or {}
st.title("Model")
st.caption(f"{entry.label}: `{bundle.meta['model']['name']}`, {bundle.meta.get('params', 0):,} "
           f"parameters, trained {bundle.meta.get('created', '?')}")  # fmt: skip


@st.cache_data(show_spinner=False)
def figures(bundle_path: str) -> dict[str, bytes | None]:
    positive = nice_label(bundle.classes[1]) if bundle.binary else "positive"
    out: dict[str, bytes | None] = {"roc": None, "cm": None, "rel": None}
    if bundle.binary and (fig := roc_figure(metrics, positive)) is not None:
        out["roc"] = png_bytes(fig)
    if metrics.get("confusion_matrix"):
        out["cm"] = png_bytes(confusion_figure(metrics["confusion_matrix"], bundle.classes))
    if fig := reliability_figure(metrics.get("calibration_bins") or [], metrics.get("ece")):
        out["rel"] = png_bytes(fig)
    return out


externals = bundle.meta.get("external") or []
st.subheader("Validation and external figures" if externals else
             f"Validation metrics ({metrics.get('n', 0)} images)" if metrics else "Validation metrics")  # fmt: skip
if not metrics and not externals:
    st.info("This bundle holds no validation metrics (it was trained without a validation "
            "split). `cnnlab evaluate BUNDLE --data PATH` measures it on your images.")  # fmt: skip
else:
    if bundle.binary:
        st.markdown(f"Decision threshold **{bundle.threshold:.3f}** on the calibrated probability "
                    f"(temperature {bundle.temperature:.3f}), **fitted on "
                    f"{fitted_on_text(bundle.decision)}**: "
                    f"{bundle.decision.get('policy_text') or bundle.decision.get('policy', '')}. "
                    "Intervals: bootstrap 95%.")  # fmt: skip
    st.dataframe(figure_table(metrics, externals), hide_index=True)
    for block in externals:
        st.caption(f"External `{block['name']}`: {block.get('rule', '')}"
                   f"{'' if not block.get('cross_validated_folds') else ' (each image judged by a rule fitted on the other folds)'}.")  # fmt: skip
    figs = figures(str(entry.path))
    roc, cm, rel = st.columns(3)
    with roc:
        if figs["roc"]:
            st.image(figs["roc"], caption="ROC curve", width="stretch")
        elif (entry.path / "roc_curve.png").is_file():
            st.image(str(entry.path / "roc_curve.png"), caption="ROC curve", width="stretch")
        elif bundle.binary:
            st.info("No ROC curve stored in this bundle; `cnnlab evaluate BUNDLE --data PATH` "
                    "draws one.")  # fmt: skip
        else:
            st.info("ROC curves are drawn for binary models.")
    with cm:
        if figs["cm"]:
            st.image(figs["cm"], caption="confusion matrix", width="stretch")
    with rel:
        if figs["rel"]:
            st.image(figs["rel"], caption="calibration (reliability diagram)", width="stretch")
        else:
            st.info("No calibration bins stored (binary models have them).")

with st.expander("Model card", expanded=True):
    st.markdown(bundle.card or "This bundle has no model card.")
