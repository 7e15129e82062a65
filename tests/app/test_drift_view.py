"""The Worklist page's drift section: the verdict of `cnnlab drift` for the picked model's
decisions, with its figures; a note instead of an error where it cannot be measured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cnnlab.records.store import Decision, DecisionStore
from tests.app.conftest import make_app_bundle
from tests.bundle_edit import edit_meta, setter
from tests.evaluate.test_drift import _logits


def _section():
    from cnnlab.app.drift_view import show_drift
    from cnnlab.records.store import DecisionStore

    show_drift(DecisionStore().query(), "last 7 days")


@pytest.fixture
def drift_app(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    bundle = make_app_bundle(tmp_path / "xray")
    z = _logits(400, 0)
    edit_meta(bundle, setter("validation_scores", {"logits": z.round(4).tolist(),
                                                   "labels": (z > 0).astype(int).tolist()}))  # fmt: skip
    monkeypatch.setenv("CNNLAB_APP_BUNDLE", str(bundle))
    (tmp_path / "runs").mkdir()
    monkeypatch.setenv("CNNLAB_APP_RUNS", str(tmp_path / "runs"))

    def run(shift: float | None):
        if shift is not None:
            p = 1 / (1 + np.exp(-_logits(200, 9, shift) / 1.2))
            now = datetime.now(UTC)
            DecisionStore().record(Decision(surface="app", bundle="xray", probability=float(v),
                                            temperature=1.2, time=now - timedelta(minutes=i))
                                   for i, v in enumerate(p))  # fmt: skip
        return AppTest.from_function(_section, default_timeout=60).run()

    return run


def test_the_worklist_page_says_when_the_inputs_moved(drift_app) -> None:
    drift_app(1.5)  # (an unshifted period is `stable`: tests/evaluate/test_drift.py)
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import APP

    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/worklist_page.py").run()
    assert not at.exception
    assert [h.value for h in at.subheader] == ["Drift since validation"]
    assert "DRIFT" in at.error[0].value and "PSI" in at.error[0].value
    assert [m.label for m in at.metric][:3] == ["PSI", "KS p-value", "Called positive"]


def test_too_few_decisions_is_a_note_not_an_error(drift_app) -> None:
    at = drift_app(None)
    assert not at.exception and not at.error
    assert "too few" in at.info[0].value
