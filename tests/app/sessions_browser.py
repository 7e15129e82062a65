"""Several browser sessions on one `cnnlab app` at once (Playwright's async API, one Chromium,
one context per session), shared by tests/app/test_sessions_browser.py and
benchmarks/app_latency.py --sessions.

Each session classifies its own chest X-rays with Grad-CAM on, then opens Learn, uploads its
first X-ray and steps a unit of the receptive field; the sessions start each step together.
What each page shows is compared with what the library gives one call at a time, in this
process: the verdict and its figures (probability, OOD distance), and the effective field's
sentence, which comes from the unit's input gradient.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.bundle import Bundle
from cnnlab.explain.gallery import load_input
from cnnlab.learn.fields import effective_field, spatial_rows, unit_field
from cnnlab.predict import predict_sources
from cnnlab.report.verdict import prediction_details, verdict
from tests.app.browser import CHROMIUM, CHROMIUM_ARGS, RESULT, WATCH

UNIT_STEPS = 2  # receptive-field units after the first, each a new input gradient
UNIT = re.compile(r"unit \(\d+, (\d+)\) sees input rows")
FAILED = re.compile(r"Something went wrong|Traceback|Error:")


def markdown_text(text: str) -> str:
    """What the page shows of a Markdown line: no ** or backticks."""
    return text.replace("**", "").replace("`", "")


@dataclass
class Expected:
    """One session's answers, computed by the library one call at a time."""

    xrays: list[Path]
    results: list[tuple[str, str]]  # (sentence, details line) per X-ray
    fields: list[str]  # the effective-field sentence for each unit stepped to

    @classmethod
    def compute(cls, bundle: Bundle, summary, xrays: list[Path]) -> Expected:
        results = []
        for pred in predict_sources(bundle, xrays):
            v = verdict(pred, bundle.classes, bundle.binary)
            details = prediction_details(pred, bundle.classes, bundle.binary)
            results.append((v.sentence, markdown_text(details)))
        rows = spatial_rows(summary)
        layer = rows[min(len(rows) - 1, len(rows) // 3)]  # the Learn page's default layer
        h, w = layer.output_shape[1:]
        _, x = load_input(bundle, xrays[0].read_bytes())
        fields = []
        for step in range(UNIT_STEPS + 1):
            unit = unit_field(summary, layer.name, (h // 2, w // 2 + step))
            fields.append(markdown_text(effective_field(bundle.model, x, unit).comparison()))
        return cls(xrays, results, fields)


@dataclass
class Seen:
    """What one session's pages showed, and how long its upload took to answer."""

    results: list[tuple[str, str]] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    upload_to_result_ms: list[float] = field(default_factory=list)  # one per round
    sent_to_result_ms: list[float] = field(default_factory=list)  # of which after the upload
    step: str = "opening the app"


@dataclass
class Plan:
    """What each session does: `rounds` times, open Classify (a new Streamlit session), switch
    Grad-CAM on or not, upload its X-rays; then once Learn's receptive field (if `learn`)."""

    rounds: int = 1
    gradcam: bool = True
    learn: bool = True


SETTLED = """() => {
  const state = document.querySelector('[data-testid="stApp"]')?.dataset.testScriptState;
  const w = window.__settled = window.__settled || {since: null};
  if (state !== 'notRunning') { w.since = null; return false; }
  w.since = w.since ?? performance.now();
  return performance.now() - w.since > 500;
}"""


async def settled(page) -> None:
    """Until the script has not been running for half a second (its rerun is over)."""
    await page.evaluate("() => { window.__settled = {since: null}; }")
    await page.wait_for_function(SETTLED, polling=100)


async def uploaded(page, files: list[Path]) -> None:
    """Give the page's file uploader these files; wait until they are sent and the rerun over."""
    from playwright.async_api import expect

    await page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        [str(f) for f in files]
    )
    await expect(page.get_by_test_id("stFileChip")).to_have_count(len(files))
    await expect(page.get_by_test_id("stFileChipIconSpinner")).to_have_count(0)
    await settled(page)


async def no_errors(page, where: str, seen: Seen) -> None:
    if await page.get_by_test_id("stException").count():
        seen.problems.append(f"{where}: a traceback element")
    text = await page.get_by_test_id("stMain").inner_text()
    if FAILED.search(text):
        seen.problems.append(f"{where}: {FAILED.search(text).group(0)!r} in the page")


async def classify_all(page, xrays: list[Path], seen: Seen, gradcam: bool) -> None:
    """Upload the X-rays at once; wait for every verdict (and Grad-CAM overlay)."""
    from playwright.async_api import expect

    await page.evaluate(WATCH)
    start = time.perf_counter()
    await page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        [str(p) for p in xrays]
    )
    verdicts = page.get_by_test_id("stAlertContainer").get_by_text(RESULT)
    await expect(verdicts).to_have_count(len(xrays))
    t = await page.evaluate("() => window.__cnnlab")
    wall_ms = (time.perf_counter() - start) * 1000
    seen.upload_to_result_ms.append(t["result"] - t["upload"] if "result" in t else wall_ms)
    if "result" in t:  # the uploader may list the file only with the result
        seen.sent_to_result_ms.append(t["result"] - t.get("sent", t["result"]))
    if gradcam:
        await expect(page.get_by_text("Grad-CAM for")).to_have_count(len(xrays))
    for i in range(len(xrays)):
        sentence = (await verdicts.nth(i).inner_text()).strip()
        details = page.get_by_text(re.compile(r"^Prediction: ")).nth(i)
        seen.results.append((sentence, (await details.inner_text()).strip()))


async def step_field(page, xray: Path, seen: Seen, together: asyncio.Barrier) -> None:
    """Learn -> upload the X-ray -> Receptive field; the unit, then UNIT_STEPS to its right."""
    from playwright.async_api import expect

    seen.step = "opening Learn"
    await page.get_by_role("link", name="Learn").click()
    await expect(page.get_by_role("heading", name="Learn", exact=True)).to_be_visible()
    await settled(page)
    await uploaded(page, [xray])
    await together.wait()
    seen.step = "the receptive field"
    await page.get_by_test_id("stButtonGroup").get_by_text("Receptive field", exact=True).click()
    sentence = page.get_by_text(re.compile(r"^theoretical field \d+x\d+ \(the box"))
    await expect(sentence).to_be_visible()
    await settled(page)
    seen.fields.append((await sentence.inner_text()).strip())
    slider = page.get_by_test_id("stSlider").filter(has_text="Unit column").get_by_role("slider")
    main = page.get_by_test_id("stMain")
    for _ in range(UNIT_STEPS):
        column = int(UNIT.search(await main.inner_text()).group(1))
        await together.wait()
        seen.step = f"receptive-field unit {len(seen.fields)}"
        await slider.focus()
        await slider.press("ArrowRight")
        await expect(main).to_contain_text(re.compile(rf"unit \(\d+, {column + 1}\) sees"))
        await settled(page)
        seen.fields.append((await sentence.inner_text()).strip())


async def one_session(
    browser, url: str, xrays: list[Path], together: asyncio.Barrier, plan: Plan,
    shot: Path | None = None,
) -> Seen:  # fmt: skip
    from playwright.async_api import expect

    seen = Seen()
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(180_000)
    try:
        for round_ in range(plan.rounds):
            seen.step = f"opening Classify (round {round_ + 1})"
            await page.goto(url, wait_until="domcontentloaded")
            await page.get_by_role("heading", name="Classify").wait_for()
            if plan.gradcam:
                await page.get_by_text("Grad-CAM overlay").click()
                await expect(page.get_by_role("switch", name="Grad-CAM overlay")).to_be_checked()
            await settled(page)
            await together.wait()
            seen.step = f"classifying (round {round_ + 1})"
            await classify_all(page, xrays, seen, plan.gradcam)
            await no_errors(page, "Classify", seen)
        if plan.learn:
            await step_field(page, xrays[0], seen, together)
            await no_errors(page, "Learn", seen)
    except Exception as e:  # noqa: BLE001 - a session that could not finish is a finding
        first = str(e).splitlines()[0] if str(e) else ""
        seen.problems.append(f"{seen.step}: {type(e).__name__}: {first}")
        await no_errors(page, "the page it stopped on", seen)
        if shot is not None:
            await page.screenshot(path=str(shot), full_page=True)
        await together.abort()  # the others stop waiting for this one
    finally:
        await context.close()
    return seen


async def run_sessions(
    url: str, xrays_per_session: list[list[Path]], plan: Plan | None = None,
    shots: Path | None = None,
) -> list[Seen]:  # fmt: skip
    """The sessions at once, in one Chromium; each step starts together. A session that
    cannot finish leaves a screenshot in `shots` (session_I.png)."""
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=180_000)  # 2 cores for the server, Chromium and the test
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                          args=CHROMIUM_ARGS)  # fmt: skip
        together = asyncio.Barrier(len(xrays_per_session))
        try:
            return list(
                await asyncio.gather(
                    *(
                        one_session(
                            browser,
                            url,
                            x,
                            together,
                            plan or Plan(),
                            shots / f"session_{i}.png" if shots else None,
                        )  # fmt: skip
                        for i, x in enumerate(xrays_per_session)
                    )
                )
            )
        finally:
            await browser.close()


def differences(expected: Expected, seen: Seen, plan: Plan | None = None) -> list[str]:
    """Where a session's pages differ from the one-call-at-a-time answers."""
    plan = plan or Plan()
    out = list(seen.problems)
    n = len(expected.results)
    for i, got in enumerate(seen.results):  # round after round, the same X-rays
        if got != expected.results[i % n]:
            out.append(f"{expected.xrays[i % n].name}: page {got}, alone {expected.results[i % n]}")
    if not seen.problems and len(seen.results) != n * plan.rounds:
        out.append(f"{len(seen.results)} results shown for {n * plan.rounds}")
    for i, (want, got) in enumerate(zip(expected.fields, seen.fields, strict=False)):
        if want != got:
            out.append(f"unit {i}: page {got!r}, alone {want!r}")
    if not seen.problems and plan.learn and len(seen.fields) != len(expected.fields):
        out.append(f"{len(seen.fields)} receptive fields shown for {len(expected.fields)}")
    return out
