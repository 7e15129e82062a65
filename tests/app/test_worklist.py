"""The app's decisions on record (Classify writes them, with its session), and the Worklist
page that shows the latest by risk."""

from __future__ import annotations

import hashlib

from cnnlab.records import DecisionStore
from tests.app.conftest import encode, xray_like


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_app_classify_records_once_per_upload_with_its_session(app_env, app_bundle):
    at = app_env(app_bundle).run()
    data = encode(xray_like(0))
    at.file_uploader(key="classify_files").set_value([("a.png", data, "image/png")]).run()
    at.toggle(key="gradcam").set_value(False).run()  # a rerun shows it again: no new row
    assert not at.exception
    kept = DecisionStore().query()
    assert len(kept) == 1
    d = kept[0]
    assert (d.surface, d.source, d.input_sha256, d.bundle) == ("app", "a.png", sha(data), "xray")
    assert d.client and len(d.client) > 8  # the Streamlit session's id
