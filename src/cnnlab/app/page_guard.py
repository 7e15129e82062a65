"""A page never shows a Python traceback: an unexpected exception becomes one plain sentence
with a short error id, and the traceback, with that id, goes to the server log (stderr), where
whoever runs the server can find it from the id a user reports.

Expected problems (a bad upload, an unusable bundle) are CnnlabErrors that pages show in
their own words; this is the last line for the rest. `st.stop()` and reruns are not
Exceptions (Streamlit's ScriptControlException is a BaseException), so they pass through, and
so does a fragment's own FragmentHandledException. `client.showErrorDetails` off (cnnlab's
default) covers what runs outside a page, such as widget callbacks."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st
from streamlit.errors import FragmentHandledException

log = logging.getLogger("cnnlab.app")
MESSAGE = "Something went wrong (error {id}); the details are in the server log."


@contextmanager
def plain_errors(where: str) -> Iterator[None]:
    """Run a page (or the sidebar, or a fragment) so that an unexpected exception shows as
    MESSAGE in its place and is logged with its id; `where` names it in the log."""
    try:
        yield
    except FragmentHandledException:
        raise
    except Exception:  # noqa: BLE001 - the last line: whatever it is, no traceback in the page
        error_id = secrets.token_hex(3)
        log.error("cnnlab app: error %s in %s", error_id, where, exc_info=True)
        st.error(MESSAGE.format(id=error_id), icon=":material/error:")
