"""The Streamlit entry script: page set-up, the sidebar (model picker, About) and four pages.

Run it with `cnnlab app [BUNDLE|NAME]` (or `streamlit run` on this file).
"""

from pathlib import Path

import streamlit as st

from cnnlab.app.page_guard import plain_errors
from cnnlab.app.sidebar import render_sidebar

st.set_page_config(page_title="cnnlab: chest X-ray and image classifier", page_icon=":material/image_search:",
                   layout="wide")  # fmt: skip

VIEWS = Path(__file__).with_name("views")
pages = [
    st.Page(
        VIEWS / "classify_page.py",
        title="Classify",
        icon=":material/image_search:",
        url_path="classify",
        default=True,
    ),
    st.Page(
        VIEWS / "explain_page.py", title="Explain", icon=":material/layers:", url_path="explain"
    ),
    st.Page(
        VIEWS / "model_page.py", title="Model", icon=":material/description:", url_path="model"
    ),
    st.Page(
        VIEWS / "worklist_page.py",
        title="Worklist",
        icon=":material/list_alt:",
        url_path="worklist",
    ),
    st.Page(VIEWS / "learn_page.py", title="Learn", icon=":material/school:", url_path="learn"),
    st.Page(
        VIEWS / "runs_page.py", title="Runs", icon=":material/stacked_line_chart:", url_path="runs"
    ),
]
page = st.navigation(pages, position="sidebar")
with plain_errors("the sidebar"):
    render_sidebar()
with plain_errors(f"the {page.title} page"):  # never a traceback: a message with an error id
    page.run()
