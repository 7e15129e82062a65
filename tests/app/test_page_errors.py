"""An unexpected exception in a page is one plain sentence with a short error id, never a
Python traceback; the traceback, with the same id, goes to the server log. st.stop() and
reruns pass through untouched."""

from __future__ import annotations

import logging
import re

from cnnlab.app.launch import DEFAULTS, streamlit_command
from cnnlab.bundle import catalog

MESSAGE = re.compile(
    r"Something went wrong \(error ([0-9a-f]{6})\); the details are in the server log"
)


def every_text(at) -> str:
    kinds = ("markdown", "success", "warning", "error", "info", "caption", "title", "exception")
    return "\n".join(str(e.value) for k in kinds for e in getattr(at, k))


def test_an_exception_in_a_page_is_a_plain_message_with_an_id(
    app_env, app_bundle, monkeypatch, caplog
):
    import cnnlab.explain.layer_view as layer_view

    def broken(summary):
        raise RuntimeError("secret internals at /srv/cnnlab")

    monkeypatch.setattr(layer_view, "layer_table", broken)
    at = app_env(app_bundle).run()
    with caplog.at_level(logging.ERROR, logger="cnnlab.app"):
        at.switch_page("views/explain_page.py").run()
    assert not at.exception  # no traceback element
    errors = [e.value for e in at.error if MESSAGE.search(e.value)]
    assert len(errors) == 1, every_text(at)
    error_id = MESSAGE.search(errors[0]).group(1)
    assert "secret internals" not in every_text(at) and "Traceback" not in every_text(at)
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info and "secret internals" in str(logged[0].exc_info[1])
    # the sidebar still works, and the other pages are untouched
    assert any("Not for diagnosis" in w.value for w in at.sidebar.warning)
    at.switch_page("views/model_page.py").run()
    assert not at.exception and not any(MESSAGE.search(e.value) for e in at.error)


def test_st_stop_passes_through_the_guard(app_env, monkeypatch):
    monkeypatch.setattr(catalog, "shipped_bundles", dict)
    at = app_env(None).run()  # require_bundle says why, then st.stop()
    assert not at.exception
    assert any("No model bundle is available" in w.value for w in at.warning)
    assert not any(MESSAGE.search(e.value) for e in at.error)


def test_the_server_hides_error_details_unless_the_user_set_them():
    assert DEFAULTS["client.showErrorDetails"] == "none"
    argv, _ = streamlit_command(None, None, env={})
    assert "--client.showErrorDetails=none" in argv
    argv, _ = streamlit_command(None, None, ["--client.showErrorDetails=full"], env={})
    assert "--client.showErrorDetails=none" not in argv
    argv, _ = streamlit_command(None, None, env={"STREAMLIT_CLIENT_SHOW_ERROR_DETAILS": "type"})
    assert "--client.showErrorDetails=none" not in argv


def test_an_exception_in_a_fragment_is_a_plain_message_too(app_env, app_bundle, monkeypatch):
    """The Learn page's animation is a fragment: Streamlit runs it (and reports its errors)
    on its own, so it has its own guard."""
    import cnnlab.learn.conv_drawing as conv_drawing

    def broken(*args, **kwargs):
        raise ValueError("secret internals")

    monkeypatch.setattr(conv_drawing, "draw_conv", broken)
    at = app_env(app_bundle).run()
    at.switch_page("views/learn_page.py").run()
    assert not at.exception
    assert any(MESSAGE.search(e.value) for e in at.error), every_text(at)
    assert "secret internals" not in every_text(at)
    assert at.title[0].value == "Learn"  # the rest of the page is there
