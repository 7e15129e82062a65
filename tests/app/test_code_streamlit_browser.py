"""`cnnlab code BUNDLE --framework streamlit` (the brief's Q10): the app.py it writes is started
as a student would (`streamlit run app.py`) and driven in Chromium: upload, Classify, and the
probability and threshold cnnlab's own predict gives for the same image."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cnnlab.bundle import load_bundle
from cnnlab.cli import main
from cnnlab.net import free_port
from cnnlab.predict import predict_sources
from cnnlab.report.present import present
from cnnlab.samples import sample_path
from tests.app.browser import launch
from tests.app.running import stop, wait_healthy
from tests.conftest import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_generated_streamlit_app_classifies_in_the_browser(app_bundle, tmp_path, capsys):
    from playwright.sync_api import expect, sync_playwright

    app = tmp_path / "app.py"
    assert main(["code", str(app_bundle), "--framework", "streamlit", "--out", str(app)]) == 0
    assert len(app.read_text().splitlines()) <= 80  # small enough to read and hand in
    image = sample_path("xray_pneumonia")
    bundle = load_bundle(app_bundle)
    expected = predict_sources(bundle, [str(image)])[0]
    sentence = present(expected, bundle).verdict.sentence  # what every surface says
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    log = tmp_path / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page()
            page.goto(url)
            expect(page.get_by_text("Upload an image to classify it.")).to_be_visible(
                timeout=60_000
            )
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(image))
            page.get_by_role("button", name="Classify").click()
            metrics = page.get_by_test_id("stMetric")
            expect(metrics.nth(1)).to_contain_text("Threshold", timeout=60_000)
            expect(metrics.nth(1)).to_contain_text(f"{expected.threshold:.2f}")
            expect(metrics.nth(0)).to_contain_text(f"{expected.positive_probability:.1%}")
            expect(page.get_by_text(sentence, exact=True)).to_be_visible()
            browser.close()
    finally:
        stop(proc)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
