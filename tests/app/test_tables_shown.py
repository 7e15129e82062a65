"""Every table in the app is for people (report.tables through app.table_widget): titled
columns, counts with separators or in M/G, blanks where nothing applies; the grid's data keeps
the numbers and the keys the CSV download uses."""

from __future__ import annotations

import json

from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

from cnnlab.anatomy.summary import summarize
from cnnlab.bundle import load_bundle
from cnnlab.report.tables import cell_text
from tests.app.conftest import encode, xray_like


def shown(element):
    """(column titles by key, the cells as the grid shows them) of an AppTest dataframe."""
    labels = {k: c.get("label") for k, c in json.loads(element.proto.columns).items()}
    styler = element.proto.arrow_data.styler
    return labels, convert_arrow_bytes_to_pandas_df(styler.display_values)


def test_explain_summary_titled_and_counted(app_env, app_bundle):
    at = app_env(app_bundle).run()
    at.switch_page("views/explain_page.py").run()
    assert not at.exception, at.exception
    labels, cells = shown(at.dataframe[0])
    assert [labels[k] for k in ("layer", "params", "mult_adds", "receptive_field", "jump")] == [
        "Layer", "Params", "Mult-adds", "RF", "Jump"]  # fmt: skip
    bundle = load_bundle(app_bundle)
    summary = summarize(bundle.model, (1, 64, 64), "x")
    conv = summary.rows[0]
    data = at.dataframe[0].value
    assert data["mult_adds"][0] == conv.mult_adds  # the value, for sorting
    assert cells.iloc[0, list(data.columns).index("mult_adds")] == cell_text(conv.mult_adds, 10**6)
    assert cells.iloc[0, list(data.columns).index("mult_adds")] == f"{conv.mult_adds:,}"
    assert "None" not in cells.to_string() and "nan" not in cells.to_string()


def test_classify_results_titled_with_blanks(app_env, app_bundle):
    at = app_env(app_bundle).run()
    at.file_uploader(key="classify_files").set_value(
        [("a.png", encode(xray_like(0)), "image/png")]
    ).run()
    assert not at.exception, at.exception
    labels, cells = shown(at.dataframe[0])
    assert labels["positive_probability"] == "Positive probability"
    assert labels["ood_distance"] == "OOD distance" and labels["top_k"] == "Top k"
    error = list(at.dataframe[0].value.columns).index("error")
    assert cells.iloc[0, error] == ""  # no error: a blank, not None
    assert "None" not in cells.to_string()
