"""Four browser sessions at once on one `cnnlab app pneumonia` (real Chromium): each classifies
its own X-rays with Grad-CAM on and steps a unit's receptive field on Learn, all starting each
step together, while the server may still be warming up. Every page must show exactly the
answers the library gives one call at a time, and no error or traceback.

Before runtime.taps, the sessions' forward hooks fired in each other's passes: wrong
out-of-distribution distances, Grad-CAM and receptive-field crashes shown as tracebacks."""

from __future__ import annotations

import asyncio

import pytest

from cnnlab.anatomy.summary import summarize
from cnnlab.bundle import load_bundle
from cnnlab.net import free_port
from tests.app.running import running_app
from tests.app.sessions_browser import Expected, differences, run_sessions
from tests.app.test_e2e_browser import ARTIFACTS, bundle_ref
from tests.conftest import shared_path

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SESSIONS, XRAYS_EACH = 4, 3


def test_four_sessions_at_once_get_the_one_session_answers(tmp_path):
    ref = bundle_ref()
    external = sorted(shared_path("chest_xray", "external").glob("*/*.jpeg"))
    picks = external[:: max(1, len(external) // (SESSIONS * XRAYS_EACH))]
    per_session = [picks[i::SESSIONS][:XRAYS_EACH] for i in range(SESSIONS)]
    bundle = load_bundle(ref)
    pre = bundle.preprocess
    summary = summarize(bundle.model, (pre.channels, *pre.size), bundle.name)
    expected = [Expected.compute(bundle, summary, xrays) for xrays in per_session]
    log = tmp_path / "app.log"
    ARTIFACTS.mkdir(exist_ok=True)
    with running_app(ref, free_port(), [str(tmp_path)], log) as (url, _):
        # no wait for the preload: sessions that arrive while the model warms up are the case
        # the issue saw go wrong
        seen = asyncio.run(run_sessions(url, per_session, shots=ARTIFACTS))
    problems = [f"session {i}: {d}" for i, (e, s) in enumerate(zip(expected, seen, strict=True))
                for d in differences(e, s)]  # fmt: skip
    server_log = log.read_text(errors="replace")
    assert not problems, "\n".join(problems) + "\n--- server log ---\n" + server_log[-3000:]
    assert "Traceback" not in server_log, server_log[-3000:]
