"""`cnnlab code BUNDLE|RECIPE --framework streamlit`: the brief's Q10, a small app.py to hand in.

It loads the bundle with cnnlab (its weights, the preprocessing it was trained with and its
decision rule: nothing re-implemented that could drift from training) and predicts through
`predict_sources` and `present`, the path and the wording of every other surface. Every value
from the user (a path, a recipe's name) enters the script as a literal (code_text.literal).
"""

from __future__ import annotations

from cnnlab.learn.code_text import literal

TEMPLATE = '''"""A Streamlit app: upload an image, see what the model says. Written by `cnnlab code`.

Run:  streamlit run app.py   (needs cnnlab; CNNLAB_BUNDLE=FOLDER picks another bundle)
The bundle holds the weights, the preprocessing it was trained with and its decision rule,
so the app reads images exactly as training did. Not a medical device.
"""

import os

import streamlit as st
from cnnlab import CnnlabError, load_bundle
from cnnlab.predict import predict_sources
from cnnlab.report.present import present

BUNDLE = os.environ.get("CNNLAB_BUNDLE", {bundle})  # a bundle folder or a shipped name
TRAIN = {train}  # how to make the bundle when it is missing
TITLE = {title_literal}

st.set_page_config(page_title=TITLE)
st.title(TITLE)


@st.cache_resource  # loaded once per server, not on every rerun
def load(ref):
    return load_bundle(ref)


try:
    bundle = load(BUNDLE)
except CnnlabError as e:
    st.error(f"No model available at {{BUNDLE}}: {{e}}")
    st.info(f"Train one first: {{TRAIN}}")
    st.stop()

with st.sidebar:
    st.header("About")
    st.write(f"Model **{{bundle.name}}**: {{', '.join(bundle.classes)}}.")
    if bundle.binary:
        st.write(f"Says *{{bundle.classes[1]}}* when its probability reaches the threshold "
                 f"{{bundle.threshold:.2f}}.")
    st.caption("A teaching project, not a medical device.")

upload = st.file_uploader("An image (JPG or PNG)", type=["jpg", "jpeg", "png"])
if upload is None:
    st.info("Upload an image to classify it.")
    st.stop()
st.image(upload.getvalue(), caption=upload.name, width=320)
if st.button("Classify", type="primary"):
    with st.spinner("Classifying..."):
        shown = present(predict_sources(bundle, [upload.getvalue()], [upload.name])[0], bundle)
    if shown.verdict.error:
        st.error(f"Cannot classify {{upload.name}}: {{shown.verdict.error}}")
        st.stop()
    row = shown.row
    st.subheader(shown.verdict.headline)
    if bundle.binary:
        left, right = st.columns(2)
        left.metric(f"P({{bundle.classes[1]}})", f"{{row['positive_probability']:.1%}}")
        right.metric("Threshold", f"{{row['threshold']:.2f}}")
        st.progress(float(row["positive_probability"]))
    else:
        st.metric(f"P({{row['label']}})", f"{{row['probability']:.1%}}")
        st.table({{t["label"]: f"{{t['probability']:.1%}}" for t in row["top_k"]}})
    st.caption(row["result"])
'''


def streamlit_app(bundle: str, title: str, train: str) -> str:
    """app.py for `bundle` (a folder or shipped name); `train` says how to make it."""
    return TEMPLATE.format(
        bundle=literal(bundle),
        train=literal(train),
        title_literal=literal(title),
    )
