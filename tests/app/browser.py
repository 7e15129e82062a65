"""Driving the app in Chromium (Playwright), shared by the e2e test and benchmarks/app_latency.py.

Latency is measured inside the page: a MutationObserver notes when the Classify button turns
usable after an upload and when the result appears after the click, so Playwright's own
polling (up to a second between checks) does not count as the app's time.
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
    r"^(\w+ likely|Uncertain) \(\d\.\d+; threshold \d\.\d+\)|^\S+ likely \(\d\.\d+\)"
)

WATCH = """() => {
  const t = window.__cnnlab = {upload: performance.now()};
  const usable = () => [...document.querySelectorAll('button')]
    .some(b => b.innerText.trim() === 'Classify' && !b.disabled);
  const shown = () => [...document.querySelectorAll('[data-testid="stAlertContainer"]')]
    .some(e => / likely \\(|^Uncertain/.test(e.innerText.trim()));
  document.addEventListener('click', () => { t.click = t.click || performance.now(); }, {capture: true});
  const mo = new MutationObserver(() => {
    if (!t.enabled && usable()) t.enabled = performance.now();
    if (t.click && !t.result && shown()) { t.result = performance.now(); mo.disconnect(); }
  });
  mo.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def classify(page, image: Path) -> dict[str, float]:
    """Upload one image, press Classify as soon as it is usable, wait for the result sentence.

    Returns in-page milliseconds (upload -> button usable, click -> result, their sum) and
    the wall-clock seconds as seen from Playwright.
    """
    page.evaluate(WATCH)
    start = time.perf_counter()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(image))
    page.locator('button:has-text("Classify"):not([disabled])').click()
    page.get_by_test_id("stAlertContainer").get_by_text(RESULT).wait_for()
    wall = time.perf_counter() - start
    t = page.evaluate("() => window.__cnnlab")
    upload, answer = t["enabled"] - t["upload"], t["result"] - t["click"]
    return {"upload_ms": upload, "answer_ms": answer, "total_ms": upload + answer, "wall_s": wall}


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
