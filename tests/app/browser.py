"""Driving the app in Chromium (Playwright), shared by the e2e test and benchmarks/app_latency.py.

Latency is measured inside the page: a MutationObserver notes when the file has been sent
(its chip in the uploader stops spinning) and when the result sentence appears, so Playwright's own polling
(up to a second between checks) does not count as the app's time.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
RESULT = re.compile(
    r"^(\w+ likely|Uncertain) \(P\(\w+\) \d\.\d+; threshold \d\.\d+\)|^\S+ likely \(\d\.\d+\)"
)

WATCH = """() => {
  const t = window.__cnnlab = {upload: performance.now()};
  const sent = () => document.querySelector('[data-testid="stFileChip"]') !== null
    && document.querySelector('[data-testid="stFileChipIconSpinner"]') === null;
  const shown = () => [...document.querySelectorAll('[data-testid="stAlertContainer"]')]
    .some(e => / likely \\(|^Uncertain/.test(e.innerText.trim()));
  const mo = new MutationObserver(() => {
    if (!t.sent && sent()) t.sent = performance.now();
    if (!t.result && shown()) { t.result = performance.now(); mo.disconnect(); }
  });
  mo.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def classify(page, image: Path) -> dict[str, float]:
    """Upload one image and wait for the result sentence (the page classifies on arrival).

    Returns in-page milliseconds (upload -> file sent, file sent -> result, their sum) and
    the wall-clock seconds as seen from Playwright.
    """
    page.evaluate(WATCH)
    start = time.perf_counter()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(image))
    page.get_by_test_id("stAlertContainer").get_by_text(RESULT).wait_for()
    wall = time.perf_counter() - start
    t = page.evaluate("() => window.__cnnlab")
    sent = t.get("sent", t["result"])  # the uploader may list the file only with the result
    upload, answer = sent - t["upload"], t["result"] - sent
    return {"upload_ms": upload, "answer_ms": answer, "total_ms": t["result"] - t["upload"],
            "wall_s": wall}  # fmt: skip


def wait_images(page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stImage\"] img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )


def screenshot(page, path: Path) -> Path:
    """The whole page: Streamlit scrolls inside its main pane, so the window is made as tall as
    the content first (a plain full_page shot would stop at the window's height)."""
    size = page.viewport_size
    height = page.evaluate(
        '() => Math.max(...[...document.querySelectorAll(\'[data-testid="stMain"], '
        '[data-testid="stSidebarContent"]\')].map(e => e.scrollHeight))'
    )
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height + 40)})
    page.wait_for_timeout(300)  # let the layout settle at the new height
    wait_images(page)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path
