"""The sidebar: which model (every bundle found), and About: intended use, not for diagnosis."""

from __future__ import annotations

import streamlit as st

from cnnlab.app.resources import PICKED, catalog, get_bundle, picked_entry, upload_limit_mb
from cnnlab.data.images import UPLOAD_KINDS
from cnnlab.errors import CnnlabError
from cnnlab.report.card import card_section

GENERIC_USE = (
    "Teaching and research: see how a convolutional network classifies images, what its "
    "layers learned, and how well it does on its validation images."
)
NOT_FOR_DIAGNOSIS = (
    "**Not for diagnosis.** This is a research and teaching tool, not a medical device. Its "
    "results must not be used to diagnose, treat or rule out any disease; a qualified "
    "clinician reads the images."
)


def render_sidebar() -> None:
    entries, problem = catalog()
    with st.sidebar:
        if problem:
            st.error(f"Model asked for cannot be used: {problem}")
        if entries:
            labels = [e.label for e in entries]
            if st.session_state.get(PICKED) not in labels:
                st.session_state[PICKED] = labels[0]
            st.selectbox("Model", labels, key=PICKED,
                         help="every bundle found: shipped with cnnlab, or under runs/")  # fmt: skip
        else:
            st.warning("No model bundle found.")
        st.header("About")
        st.markdown(_intended_use())
        st.warning(NOT_FOR_DIAGNOSIS)
        st.caption(f"Uploads: {UPLOAD_KINDS}, up to {upload_limit_mb()} MB each. Images are "
                   "read in memory and never stored.")  # fmt: skip


def _intended_use() -> str:
    """The picked model card's 'Intended use' section, when it has one."""
    entry = picked_entry()
    if entry is None:
        return GENERIC_USE
    try:
        text = card_section(get_bundle(str(entry.path)).card, "Intended use")
    except CnnlabError:
        return GENERIC_USE
    return f"**Intended use.** {text}" if text else GENERIC_USE
