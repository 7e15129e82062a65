"""Every table in the app is for people (report.tables through app.table_widget): titled
columns, counts with separators or in M/G, blanks where nothing applies; the grid's data keeps
the numbers and the keys the CSV download uses."""

from __future__ import annotations

import json
import re

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
    top = cells.iloc[0, list(at.dataframe[0].value.columns).index("top_k")]
    assert re.fullmatch(r"(Pneumonia|Normal) 0\.\d{3} · (Pneumonia|Normal) 0\.\d{3}", top), top
    error = list(at.dataframe[0].value.columns).index("error")
    assert cells.iloc[0, error] == ""  # no error: a blank, not None
    grid = at.dataframe[0].proto  # and the grid draws a null cell blank (its default: "None")
    assert grid.HasField("placeholder") and grid.placeholder == ""
    assert "None" not in cells.to_string()


def test_gradcam_on_a_28x28_digit_comes_with_its_caveat(app_env, tiny_runs):
    from tests.conftest import digit_images

    x, _ = digit_images(1, seed=5)
    at = app_env(tiny_runs[0]).run()
    at.file_uploader(key="classify_files").set_value([("d.png", encode(x[0]), "image/png")]).run()
    assert not any("Grad-CAM says little" in w.value for w in at.warning)
    at.toggle(key="gradcam").set_value(True).run()
    assert not at.exception, at.exception
    notes = [w.value for w in at.warning if "Grad-CAM says little" in w.value]
    assert len(notes) == 1 and "the input is only 28x28 pixels" in notes[0]
