"""Runs page: every training run found (the folders the model picker searches) in one table,
and the curves of the runs picked overlaid; the same table and figure as `cnnlab runs`."""

import streamlit as st

from cnnlab.app.launch import app_settings
from cnnlab.app.table_widget import show_table
from cnnlab.errors import CnnlabError
from cnnlab.report.charts import runs_chart
from cnnlab.report.figures import RUN_PANELS
from cnnlab.report.runs import RunRecord, find_runs, table_rows

st.title("Runs")
st.caption("Each training run: its recipe, model, time and the compute it ran on, its best "
           "validation accuracy and any evaluation recorded in it (`cnnlab evaluate --record`). "
           "The same as `cnnlab runs`; `tensorboard --logdir runs` has every step.")  # fmt: skip


@st.cache_data(ttl=30, show_spinner=False)
def runs_in(roots: tuple[str, ...]) -> list[RunRecord]:
    found: list[RunRecord] = []
    for root in roots:
        try:
            found += find_runs([root])
        except CnnlabError:  # a folder that is gone: nothing to list from it
            continue
    return found


_, roots = app_settings()
runs = runs_in(tuple(roots))
if not runs:
    st.info(f"No training runs under {', '.join(roots)} yet. Train one, e.g. "
            "`cnnlab train recipes/mnist_fast.yaml --out runs/mnist`, and it appears here.")  # fmt: skip
    st.stop()

show_table(table_rows(runs))
labels = [str(r.path) for r in runs]
picked = st.multiselect(
    "Runs to compare", labels, default=labels[-6:], key="runs_picked",
    format_func=lambda p: next(r.name for r in runs if str(r.path) == p),
    help="their training loss, validation loss and validation accuracy, overlaid",
)  # fmt: skip
chosen = [r for r in runs if str(r.path) in picked]
if chosen:
    curves = [r.curves() for r in chosen]
    for column, (key, _) in zip(st.columns(len(RUN_PANELS)), RUN_PANELS, strict=True):
        column.altair_chart(runs_chart(curves, key), width="stretch", key=f"runs_chart_{key}")
    st.caption("Hover a curve to read a value; scroll to zoom, drag to pan, double-click to "
               "reset. Training loss per step where recorded (a one-epoch run is a curve, not a "
               "dot); validation loss (plain cross-entropy) and accuracy on the epochs "
               "validated. `cnnlab runs --plot FILE.png` draws the same as a picture.")  # fmt: skip
else:
    st.info("Pick runs above to see their curves.")
