"""Model page: validation and external figures side by side with 95% intervals (and which
images the threshold was fitted on), a warning when the model is degenerate, ROC curve,
confusion matrix and calibration diagram, the most confident mistakes on the validation
split, "Evaluate on your data" (a folder or a zip, its figures beside the validation ones:
cnnlab.app.your_data), the out-of-distribution check, and the model card (without the figures
shown above)."""

from pathlib import Path

import streamlit as st

from cnnlab.app.resources import require_bundle
from cnnlab.app.table_widget import show_table
from cnnlab.app.your_data import your_data_section
from cnnlab.fileio import MIB, read_capped
from cnnlab.report.card import card_without, fitted_on_text
from cnnlab.report.figures import confusion_figure, png_bytes, reliability_figure, roc_figure
from cnnlab.report.metrics import degenerate_warning, figure_table
from cnnlab.report.verdict import nice_label

PNG = b"\x89PNG\r\n\x1a\n"
THIRD_PAGE_PX = 280  # a column of three on a laptop's 1280-pixel window
FIGURE_MAX_BYTES = 32 * MIB  # a run's PNG figure: a few hundred KB at the DPI cnnlab draws
MISTAKES_MAX_BYTES = MIB  # mistakes.json: a few dozen rows


def run_file(path: Path, limit: int) -> bytes | None:
    """A file a run folder keeps beside the sealed bundle (mistakes.json, a PNG): not sealed, so
    read capped; None when absent, too large or not a regular file (a FIFO would block)."""
    try:
        return read_capped(path, limit)
    except OSError:
        return None


def run_png(path: Path) -> bytes | None:
    data = run_file(path, FIGURE_MAX_BYTES)
    if data is None or not data.startswith(PNG):
        if path.exists():
            st.warning(
                f"{path.name} is not shown: not a PNG of at most {FIGURE_MAX_BYTES // MIB} MB"
            )
        return None
    return data


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
        out["roc"] = png_bytes(fig, shown_px=THIRD_PAGE_PX)
    if metrics.get("confusion_matrix"):
        out["cm"] = png_bytes(confusion_figure(metrics["confusion_matrix"], bundle.classes),
                              dpi=110 if len(bundle.classes) > 4 else 100,
                              shown_px=THIRD_PAGE_PX if bundle.binary else 520)  # fmt: skip
    if fig := reliability_figure(metrics.get("calibration_bins") or [], metrics.get("ece")):
        out["rel"] = png_bytes(fig, shown_px=THIRD_PAGE_PX)
    return out


externals = bundle.meta.get("external") or []
st.subheader("Validation and external figures" if externals else
             f"Validation metrics ({metrics.get('n', 0)} images)" if metrics else "Validation metrics")  # fmt: skip
if warning := degenerate_warning(metrics.get("confusion_matrix"), bundle.classes):
    st.error(warning)
if not metrics and not externals:
    st.info("This bundle holds no validation metrics (it was trained without a validation "
            "split). `cnnlab evaluate BUNDLE --data PATH` measures it on your images.")  # fmt: skip
else:
    if bundle.binary:
        st.markdown(f"Decision threshold **{bundle.threshold:.3f}** on the calibrated probability "
                    f"of {nice_label(bundle.classes[1])} (temperature {bundle.temperature:.3f}), "
                    f"**fitted on {fitted_on_text(bundle.decision)}**: "
                    f"{bundle.decision.get('policy_text') or bundle.decision.get('policy', '')}. "
                    "Intervals: bootstrap 95%.")  # fmt: skip
    show_table(figure_table(metrics, externals))
    if "loss" in metrics and not bundle.binary:
        st.caption("Loss: plain cross-entropy on the validation split (no label smoothing), "
                   "the val_loss the training log shows.")  # fmt: skip
    for block in externals:
        st.caption(f"External `{block['name']}`: {block.get('rule', '')}"
                   f"{'' if not block.get('cross_validated_folds') else ' (each image judged by a rule fitted on the other folds)'}.")  # fmt: skip
    figs = figures(str(entry.path))
    if bundle.binary:
        roc, cm, rel = st.columns(3)
        with roc:
            if figs["roc"]:
                st.image(figs["roc"], caption="ROC curve", width="stretch")
            elif stored := run_png(entry.path / "roc_curve.png"):
                st.image(stored, caption="ROC curve", width="stretch")
            else:
                st.info("No ROC curve stored in this bundle; `cnnlab evaluate BUNDLE --data PATH` "
                        "draws one.")  # fmt: skip
        with cm:
            if figs["cm"]:
                st.image(figs["cm"], caption="confusion matrix", width="stretch")
        with rel:
            if figs["rel"]:
                st.image(figs["rel"], caption="calibration (reliability diagram)", width="stretch")
            else:
                st.info("No calibration bins stored in this bundle.")
    elif figs["cm"]:  # many classes: the matrix gets the room to be read
        cm, _ = st.columns([3, 2])
        cm.image(figs["cm"], caption="confusion matrix (validation): counts; colour = share of "
                 "the true class", width="stretch")  # fmt: skip

st.subheader("Most confident mistakes (validation split)")
listed = run_file(entry.path / "mistakes.json", MISTAKES_MAX_BYTES)
if listed is not None and listed.strip() in (b"[]", b""):
    st.success("No mistakes on the validation split.")
elif gallery := run_png(entry.path / "mistakes.png"):
    st.image(gallery, width="stretch",
             caption="per true class, the wrong answers the model was surest of: the class it "
             "said and the probability it gave (mistakes.json names the files)")  # fmt: skip
elif not (entry.path / "mistakes.png").exists():
    st.info("This bundle has no gallery of its mistakes (it was trained before cnnlab drew one). "
            "`cnnlab evaluate BUNDLE --data PATH --split val --out DIR` draws it in "
            "DIR/mistakes.png.")  # fmt: skip

your_data_section(bundle, entry.path, figures(str(entry.path)), metrics)

st.subheader("Out-of-distribution check")
if bundle.ood is not None:
    rec = bundle.ood.record
    views = " and ".join(f"`{layer}` ({'channel statistics' if take == 'stats' else 'input'})"
                         for layer, take in bundle.ood.layers)  # fmt: skip
    st.markdown(f"An image whose features lie farther than **{bundle.ood.threshold:.2f}** from the "
                f"training images is reported as *does not look like the training images*, its "
                f"label still given. Distance: Mahalanobis, to the nearest class mean, of the "
                f"features of {views}, each in units of its {rec.get('percentile', 99):g}th "
                f"percentile on the {rec.get('n_cutoff', '?')} "
                f"{'validation' if rec.get('fitted_on') == 'val' else 'training'} images.")  # fmt: skip
else:
    st.info("This bundle has no out-of-distribution check: it answers for any image, however "
            "unlike its training images. `cnnlab ood-fit BUNDLE --data TRAINING_DATA` adds one.")  # fmt: skip

with st.expander("Model card", expanded=False):
    st.markdown(
        card_without(bundle.card, ("Figures", "Metrics")) or "This bundle has no model card."
    )
    st.caption("The card's figures are the ones shown above.")
