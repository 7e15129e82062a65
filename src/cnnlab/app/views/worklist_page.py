"""Worklist page: the latest decisions on record (this app's, the CLI's, the API's and the
PACS screener's), riskiest first, filtered by model and time (records/worklist.py says the
order and why), then whether the picked model's inputs drifted since its validation
(app/drift_view.py). It reads the decision store and bundle.json only: no model is loaded."""

from datetime import UTC, datetime, timedelta
from pathlib import PurePath

import streamlit as st

from cnnlab.app.drift_view import show_drift
from cnnlab.errors import CnnlabError
from cnnlab.records.store import default_store
from cnnlab.records.worklist import attention, by_risk, finding

WINDOWS = {"last hour": timedelta(hours=1), "last 24 hours": timedelta(days=1),
           "last 7 days": timedelta(days=7), "last 30 days": timedelta(days=30),
           "all time": None}  # fmt: skip
LATEST = 500  # the newest decisions of the window the page sorts

st.title("Worklist")
st.caption("The latest decisions on record, riskiest first: first those the model could not "
           "vouch for (not screened, or unlike its training images: a person reads them "
           "unaided), then by the probability of the finding, highest first. "
           "`cnnlab decisions` lists and exports the same records.")  # fmt: skip

try:
    store = default_store()
except CnnlabError as e:
    st.error(str(e))
    st.stop()
if store is None:
    st.info("Recording is turned off (CNNLAB_RECORDS=off), so there is no worklist. Start the "
            "app without it to keep every decision on record.")  # fmt: skip
    st.stop()

try:
    models = sorted(store.models())
except CnnlabError as e:
    st.error(str(e))
    st.stop()
if not models:
    st.info(f"No decisions on record yet in {store.where}. Classify images on the Classify "
            "page (or with `cnnlab predict`, the API, `cnnlab screen`): each decision appears "
            "here.")  # fmt: skip
    st.stop()

left, right = st.columns([3, 1])
picked = left.multiselect("Models", models, default=models, key="worklist_models",
                          placeholder="every model")  # fmt: skip
window = right.selectbox("Decided in the", list(WINDOWS), index=2, key="worklist_window")
since = datetime.now(UTC) - WINDOWS[window] if WINDOWS[window] else None
found = [d for m in (picked or models) for d in store.query(since=since, model=m, limit=LATEST)]
if not found:
    st.info(f"No decisions by {', '.join(picked or models)} in the {window}.")
    st.stop()

ordered = by_risk(found)
unaided = sum(1 for d in ordered if attention(d))
st.markdown(f"**{len(ordered)}** decision{'s' if len(ordered) != 1 else ''}, "
            f"**{unaided}** to read without the model's help.")  # fmt: skip


def input_name(d) -> str:
    """A file's name without its folders (the full path is in `cnnlab decisions --csv`)."""
    return PurePath(d.source).name if d.source else (d.input_sha256 or "")[:12]


rows = [
    {  # what is read together side by side; wider than the page, it scrolls past the study
        "Study / input": d.accession or d.study_uid or input_name(d),
        "Read unaided": attention(d),
        "Probability": d.probability if d.screened else None,
        "Threshold": d.threshold,
        "Finding": finding(d),
        "Decided (UTC)": d.time.replace(tzinfo=None),
        "Model": d.bundle,
        "From": d.surface + (f" ({d.client[:12]})" if d.client else ""),
        "Latency (ms)": d.latency_ms,
    }
    for d in ordered
]
st.dataframe(
    rows,
    hide_index=True,
    width="stretch",
    placeholder="",  # a not-screened row's probability and threshold: blank, not a grey "None"
    column_config={
        "Study / input": st.column_config.TextColumn(pinned=True, help="accession number, "
                                                     "study UID or file name"),
        "Read unaided": st.column_config.TextColumn(width="medium", help="why a person reads "
                                                    "it without the model's answer"),
        "Finding": st.column_config.TextColumn(width="medium", help="the label, or why the "
                                               "model did not screen it (hover for all of it)"),
        "Decided (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
        "Probability": st.column_config.ProgressColumn(
            help="the calibrated probability of the positive class (binary models), else of "
            "the label", format="%.2f", min_value=0.0, max_value=1.0),
        "Threshold": st.column_config.NumberColumn(format="%.2f", width="small"),
        "Latency (ms)": st.column_config.NumberColumn(format="%.0f"),
    },
)  # fmt: skip

show_drift(found, window)  # the picked model's decisions of this window, against its validation
