"""The Runs page in a real browser (Debian's Chromium driven by Playwright): two training runs
in the table and their curves overlaid; then the Model page of one (its mistakes gallery) and
an image unlike its training images on the Classify page. Full-page screenshots go to
artifacts/ (git-ignored) for a look by eye."""

from __future__ import annotations

import pytest

from cnnlab.net import free_port
from tests.app.browser import launch, screenshot, wait_images
from tests.app.running import running_app, wait_preloaded
from tests.conftest import ROOT, digit_images

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = ROOT / "artifacts"


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
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(url, wait_until="domcontentloaded")
        expect(page.get_by_role("heading", name="Classify")).to_be_visible()

        page.get_by_role("link", name="Runs").click()
        expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
        expect(page.get_by_test_id("stDataFrame")).to_have_count(1)
        picker = page.get_by_test_id("stMultiSelect")
        for name in ("tiny-a", "tiny-b"):  # both runs picked for the overlay
            expect(picker.get_by_text(name, exact=True)).to_be_visible()
        expect(page.locator('[data-testid="stImage"]')).to_have_count(1)
        wait_images(page)
        width = page.locator('[data-testid="stImage"] img').evaluate("i => i.naturalWidth")
        assert width > 1000  # the three-panel figure, drawn at 110 dpi
        screenshot(page, ARTIFACTS / "app_runs.png")

        page.get_by_role("link", name="Model").click()
        expect(page.get_by_text("Most confident mistakes (validation split)")).to_be_visible()
        expect(page.get_by_text("Out-of-distribution check")).to_be_visible()
        screenshot(page, ARTIFACTS / "app_model_run.png")

        page.get_by_role("link", name="Classify").click()
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(inverted))
        # the answer's box (the results table may render the same sentence as a cell)
        alert = page.get_by_test_id("stAlertContentInfo")
        expect(alert.get_by_text("Does not look like the training images")).to_be_visible()
        screenshot(page, ARTIFACTS / "app_classify_ood.png")
        browser.close()
    assert (ARTIFACTS / "app_runs.png").stat().st_size > 20_000
