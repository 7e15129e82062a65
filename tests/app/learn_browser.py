"""Driving the Learn page in Chromium, shared by its e2e test and benchmarks/app_latency.py.

An interaction is timed inside the page: from the action to the moment the page's text first
contains what the new state shows (a MutationObserver), so Playwright's polling does not count.
"""

from __future__ import annotations

import re

WATCH_TEXT = """(wanted) => {
  const t = window.__learn = {start: performance.now()};
  const re = new RegExp(wanted);
  const seen = () => re.test(document.querySelector('[data-testid="stMain"]').innerText);
  const mo = new MutationObserver(() => {
    if (!t.end && seen()) { t.end = performance.now(); mo.disconnect(); }
  });
  mo.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
}"""

STEP = re.compile(r"Filter (\d+), output \(row (\d+), column (\d+)\)")
VALUE = re.compile(r"patch x filter \+ bias = value: .* = (-?\d+\.\d+)$")
FIELD = re.compile(r"Theoretical field (\d+)x(\d+) \(cnnlab summary's RF for (\S+), jump")


def timed(page, action, wanted: str) -> float:
    """Milliseconds from `action()` until the main pane's text matches the regex `wanted`."""
    page.evaluate(WATCH_TEXT, wanted)
    action()
    page.wait_for_function("() => window.__learn.end", timeout=60_000)
    return page.evaluate("() => window.__learn.end - window.__learn.start")


def slider(page, label: str):
    """The thumb of the slider labelled `label` (focus it and press arrow keys to move it)."""
    return page.get_by_test_id("stSlider").filter(has_text=label).get_by_role("slider")


def main_text(page) -> str:
    return page.get_by_test_id("stMain").inner_text()


def step_shown(page) -> tuple[int, int, int, float]:
    """(filter, row, column, value) as the Convolution section shows them."""
    text = main_text(page)
    f, row, col = (int(v) for v in STEP.search(text).groups())
    alert = page.get_by_test_id("stAlertContainer").filter(has_text="patch x filter").inner_text()
    return f, row, col, float(VALUE.search(alert.strip()).group(1))


def section(page, name: str) -> None:
    page.get_by_test_id("stButtonGroup").get_by_text(name, exact=True).click()
