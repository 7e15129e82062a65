"""The Runs page in a real browser (Debian's Chromium driven by Playwright) at a laptop's
viewport: two training runs in a table whose every column is in view, their curves overlaid in
Vega-Lite charts that show a value on hover; the Explain page's layer table whole (RF, jump
and start in view); then the Model page of one run (its mistakes gallery) and an image unlike
its training images on the Classify page. Full-page screenshots go to
artifacts/ (git-ignored) for a look by eye."""

from __future__ import annotations

import re

import pytest

from cnnlab.net import free_port
from tests.app.browser import launch, screenshot
from tests.app.running import running_app, wait_preloaded
from tests.conftest import ROOT, digit_images

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = ROOT / "artifacts"


def whole_table(page, headers: list[str], rows: int | None) -> None:
    """The page's first grid shows every column at this viewport: each header, in order, is
    in the grid's rendered region (Glide renders only what is in view), and so are the cells
    of the last column; `rows`: how many rows it has, when known."""
    from playwright.sync_api import expect

    grid = page.get_by_test_id("stDataFrame").first
    header = grid.locator('th[role="columnheader"]')  # Glide's accessible table, not drawn
    expect(header.last).to_be_attached()
    names = header.all_text_contents()
    assert [h for h in names if h in headers] == headers, names  # none scrolled out of view
    last = header.count()
    cells = grid.locator(f'td[aria-colindex="{last}"]')
    assert cells.count() == rows if rows else cells.count() > 0


def hover_tooltip(page, chart) -> str:
    """Move the pointer over the middle of a Vega-Lite chart's plot: the tooltip's text."""
    from playwright.sync_api import expect

    box = chart.locator("svg.marks, canvas").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
    tip = page.locator("#vg-tooltip-element.visible")
    expect(tip).to_be_visible()
    return tip.inner_text()


def test_runs_page_compares_two_runs_in_the_browser(tiny_runs, tmp_path):
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    x, _ = digit_images(1, seed=3)
    inverted = tmp_path / "inverted-digit.png"
    Image.fromarray(255 - x[0]).save(inverted)
    expect.set_options(timeout=60_000)
    app = running_app(
        str(tiny_runs[0]), free_port(), [str(tiny_runs[0].parent)], tmp_path / "app.log"
    )
    with app as (url, _), sync_playwright() as p:
        wait_preloaded(tmp_path / "app.log")
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1280, "height": 900})  # a laptop
        page.set_default_timeout(60_000)
        page.goto(url, wait_until="domcontentloaded")
        expect(page.get_by_role("heading", name="Classify")).to_be_visible()

        page.get_by_role("link", name="Runs").click()
        expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
        expect(page.get_by_test_id("stDataFrame")).to_have_count(1)
        picker = page.get_by_test_id("stMultiSelect")
        for name in ("tiny-a", "tiny-b"):  # both runs picked for the overlay
            expect(picker.get_by_text(name, exact=True)).to_be_visible()
        whole_table(page, ["Name", "Params", "Best val acc", "Evaluated"], rows=2)
        charts = page.get_by_test_id("stVegaLiteChart")  # training loss, val loss, val accuracy
        expect(charts).to_have_count(3)
        tip = hover_tooltip(page, charts.first)
        assert re.search(r"run\s+tiny-[ab]\s+epoch\s+[\d.]+\s+training loss\s+\d+\.\d{4}", tip), tip
        screenshot(page, ARTIFACTS / "app_runs.png")

        page.get_by_role("link", name="Explain").click()
        expect(page.get_by_role("heading", name="Explain", exact=True)).to_be_visible()
        whole_table(page, ["Layer", "Params", "Mult-adds", "RF", "Jump", "Start"], rows=None)
        screenshot(page, ARTIFACTS / "app_explain_run.png")

        page.get_by_role("link", name="Model").click()
        expect(page.get_by_text("Most confident mistakes (validation split)")).to_be_visible()
        expect(page.get_by_text("Out-of-distribution check")).to_be_visible()
        screenshot(page, ARTIFACTS / "app_model_run.png")

        page.mouse.move(0, 0)  # the chart's tooltip away
        page.get_by_role("link", name="Classify").click()
        # the Classify page itself, not the page it replaces: a file given to an uploader that is
        # about to go is lost (a fresh clone's CI run showed no answer after 60 s)
        expect(page.get_by_role("heading", name="Classify", exact=True)).to_be_visible()
        expect(page.get_by_text("Model", exact=False).first).to_be_visible()
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(inverted))
        expect(page.get_by_text(inverted.name).first).to_be_visible()
        # the answer's box (the results table may render the same sentence as a cell)
        alert = page.get_by_test_id("stAlertContentInfo")
        expect(alert.get_by_text("Does not look like the training images")).to_be_visible()
        screenshot(page, ARTIFACTS / "app_classify_ood.png")
        browser.close()
    assert (ARTIFACTS / "app_runs.png").stat().st_size > 20_000
