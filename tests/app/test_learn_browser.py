"""The Learn page in a real browser (Debian's Chromium + Playwright) on the shipped pneumonia
model and its sample X-ray: a slider changes the formula and the drawing, stepping the
convolution shows the value F.conv2d gives for that patch, and a unit's receptive field is the
size `cnnlab summary` gives. Full-page screenshots go to artifacts/ (git-ignored)."""

from __future__ import annotations

import re

import pytest
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.anatomy.summary import target_summary
from cnnlab.bundle import load_bundle
from cnnlab.explain.gallery import load_input
from cnnlab.learn.convolution import first_conv
from cnnlab.net import free_port
from cnnlab.samples import sample_path
from tests.app.browser import launch, screenshot, wait_images
from tests.app.learn_browser import FIELD, main_text, section, slider, step_shown, timed
from tests.app.running import running_app, wait_preloaded
from tests.app.test_e2e_browser import ARTIFACTS, bundle_ref

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_learn_page_in_the_browser(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ref = bundle_ref()
    bundle = load_bundle(ref)
    _, x = load_input(bundle, sample_path("xray_pneumonia"))
    _, conv = first_conv(bundle.model)
    conv_out = F.conv2d(
        x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation
    ).detach()
    _, summary = target_summary(ref)
    rfs = {r.name: r.field.rf for r in summary.rows}
    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=30_000)
    with running_app(ref, free_port(), [str(tmp_path)], tmp_path / "app.log") as (url, _), \
            sync_playwright() as p:  # fmt: skip
        wait_preloaded(tmp_path / "app.log")
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(url + "/learn", wait_until="domcontentloaded")
        expect(page.get_by_role("heading", name="Learn", exact=True)).to_be_visible()
        expect(
            page.get_by_text("out = floor((7 - 3 + 2*1) / 2) + 1 = floor(3) + 1 = 4")
        ).to_be_visible()
        drawing = page.get_by_test_id("stImage").first.locator("img")
        before = drawing.get_attribute("src")

        # a slider moves: the formula and the drawing change
        kernel = slider(page, "Kernel")
        kernel.focus()
        timed(page, lambda: kernel.press("ArrowRight"), r"floor\(\(7 - 4 \+ 2\*1\) / 2\)")
        expect(
            page.get_by_text("out = floor((7 - 4 + 2*1) / 2) + 1 = floor(2.5) + 1 = 3")
        ).to_be_visible()
        expect(page.get_by_text("nothing lost: every input row and column is read")).to_be_visible()
        expect(drawing).not_to_have_attribute("src", before)

        # channels and filters: the parameter count beside the convolution, as nn.Conv2d has it
        params = sum(p.numel() for p in nn.Conv2d(3, 16, 4).parameters())
        expect(page.get_by_text(f"parameters = (4*4*3 + 1) * 16 = {params:,}")).to_be_visible()
        filters = page.get_by_test_id("stNumberInput").filter(has_text="Filters").locator("input")
        filters.fill("32")
        filters.press("Enter")
        params = sum(p.numel() for p in nn.Conv2d(3, 32, 4).parameters())
        expect(page.get_by_text(f"parameters = (4*4*3 + 1) * 32 = {params:,}")).to_be_visible()
        size = slider(page, "Input size")  # up to 64: the course's 32x32 examples fit
        size.focus()
        timed(page, lambda: size.press("End"), r"input 64x64, kernel 4x4, stride 2, padding 1 per")
        screenshot(page, ARTIFACTS / "learn_convolution_64.png")
        size.press("Home")  # back to a small input for the steps below
        expect(page.get_by_text("input 3x3, kernel 4x4")).to_be_visible()

        # step the convolution: the value shown is F.conv2d's for that patch
        f, row, col, value = step_shown(page)
        assert value == pytest.approx(float(conv_out[0, f, row, col]), abs=2e-6)
        nxt = f"Filter {f}, output \\(row {row}, column {col + 1}\\)"
        timed(page, lambda: page.get_by_role("button", name="Next →").click(), nxt)
        f2, row2, col2, value2 = step_shown(page)
        assert (f2, row2, col2) == (f, row, col + 1)
        assert value2 == pytest.approx(float(conv_out[0, f2, row2, col2]), abs=2e-6)
        assert value2 != value
        screenshot(page, ARTIFACTS / "learn_convolution.png")

        # pick a unit: its box has the size cnnlab summary gives
        timed(page, lambda: section(page, "Receptive field"), "Theoretical field")
        size_h, size_w, layer = FIELD.search(main_text(page).replace("`", "")).groups()
        assert (int(size_h), int(size_w)) == rfs[layer]
        before = re.search(r"sees input rows \S+ and columns (\S+)", main_text(page)).group(1)
        unit = slider(page, "Unit column")
        unit.focus()
        timed(page, lambda: unit.press("ArrowRight"), r"sees input rows \S+ and columns (?!" +
              re.escape(before) + r"\b)")  # fmt: skip
        expect(page.get_by_text("of it inside the box")).to_be_visible()
        screenshot(page, ARTIFACTS / "learn_receptive_field.png")

        timed(page, lambda: section(page, "Filters and maps"), "Filters and their feature maps")
        wait_images(page)
        screenshot(page, ARTIFACTS / "learn_filters_maps.png")
        timed(page, lambda: section(page, "Architectures"), "what each introduced")
        expect(page.get_by_text("block by block")).to_be_visible()
        expect(
            page.get_by_role("cell", name="138,357,544").or_(page.get_by_text("138357544"))
        ).to_be_visible()
        wait_images(page)
        screenshot(page, ARTIFACTS / "learn_architectures.png")
        timed(page, lambda: section(page, "Code"), "as code to copy")
        expect(page.get_by_text("create_model('efficientnet_lite0'")).to_be_visible()
        browser.close()
