"""The app under the issue's corpus: unusable images are refused with the library's own reason
(the same words as the CLI and the API), a bundle with an invalid decision is reported, not
served, and nothing raises."""

from __future__ import annotations

import json
import math
import shutil

from tests.app.conftest import encode, verdicts, xray_like
from tests.bundle_edit import reseal
from tests.corpus import implausible_bytes, unreadable_bytes


def test_unusable_and_unreadable_images_are_refused_with_the_reason(app_env, app_bundle):
    corpus = {**implausible_bytes(), **unreadable_bytes()}
    files = [(name, data, "application/octet-stream") for name, (data, _) in corpus.items()]
    files.append(("good.png", encode(xray_like(0)), "image/png"))
    at = app_env(app_bundle).run()
    at.file_uploader(key="classify_files").set_value(files).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    for name, (_, reason) in corpus.items():
        hit = [e for e in errors if e.startswith(f"**{name}**: cannot be classified")]
        assert len(hit) == 1 and reason in hit[0], (name, errors)
    for name in implausible_bytes():
        assert any(f"**{name}**: cannot be classified: not a usable image" in e for e in errors)
    assert len(verdicts(at)) == 1  # the good one only: no confident answer for a dot or a blank


def test_a_bundle_with_an_invalid_decision_is_reported_not_served(app_env, app_bundle, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(app_bundle, bad)
    meta = json.loads((bad / "bundle.json").read_text())
    meta["decision"]["threshold"] = math.nan
    (bad / "bundle.json").write_text(json.dumps(meta))
    reseal(bad)
    at = app_env(bad).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors and "cannot be loaded" in errors[0]
    assert "decision.threshold must be a finite number" in errors[0]
    assert not at.file_uploader  # nothing to classify with
