"""Web app latency: `cnnlab app` to a healthy server, the first page, and upload -> result for
one chest X-ray in Chromium (Playwright), each beside its floor measured in the same run.

- Start: `cnnlab app BUNDLE` until /_stcore/health answers `ok`, beside `streamlit run` of a
  one-line app (Streamlit's own floor); then until the model is preloaded in the background,
  and the first page in a new tab beside the one-line app's.
- Upload -> result, Grad-CAM off, measured inside the page (a MutationObserver: upload ->
  file listed as sent -> result sentence shown; the page classifies on arrival), so Playwright's polling does not count;
  beside `predict_sources` on the same bytes in this process (the model's floor).
- Grad-CAM: toggle -> overlay shown, in the page.
- Learn page: each interaction (a slider, Next, a section, a receptive-field unit) -> the
  new state's text shown, in the page (`--learn-only` measures just these).
- Sessions at once (`--sessions 4,8`, `--sessions-only` for just these): N browser sessions on
  one server, each uploading its own external X-ray `--rounds` times (Grad-CAM off), all
  starting each upload together, then stepping a receptive-field unit on Learn; the answers
  shown (verdict, probability, OOD distance, effective field) beside the library's one call
  at a time, and upload -> result p50/p95 beside one session alone on the same server.

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/app_latency.py [--bundle pneumonia]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.app.browser: the page driver the e2e test uses

from tests.app.browser import classify, launch  # noqa: E402
from tests.app.learn_browser import main_text, section, slider, step_shown, timed  # noqa: E402
from tests.app.running import running_app, wait_healthy, wait_preloaded  # noqa: E402
from tests.app.sessions_browser import Expected, Plan, differences, run_sessions  # noqa: E402

from cnnlab.bundle import load_bundle  # noqa: E402
from cnnlab.net import free_port  # noqa: E402
from cnnlab.predict import predict_sources  # noqa: E402

CAM_WATCH = """() => {
  const t = window.__cam = {start: performance.now()};
  const mo = new MutationObserver(() => {
    const shown = [...document.querySelectorAll('[data-testid="stImage"] img')];
    if (shown.length >= 2 && shown.every(i => i.complete && i.naturalWidth > 0)) {
      t.end = performance.now(); mo.disconnect();
    }
  });
  mo.observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


def first_page(browser, url: str, text: str) -> float:
    """Seconds from opening `url` in a new page to `text` shown (the frontend boots, the script runs)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)
    start = time.perf_counter()
    page.goto(url)
    page.get_by_text(text).first.wait_for()
    seconds = time.perf_counter() - start
    page.close()
    return seconds


def streamlit_floor(folder: Path, browser=None) -> tuple[float, float | None]:
    """`streamlit run` of a one-line app: seconds to a healthy server, and to its page."""
    app = folder / "hello.py"
    app.write_text("import streamlit as st\nst.write('hello, world')\n")
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        healthy = time.perf_counter() - start
        return healthy, first_page(browser, url, "hello, world") if browser else None
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cli_startup() -> float:
    """Seconds for `cnnlab --version`: the CLI's own start-up, paid before the server starts."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cnnlab", "--version"], check=True, capture_output=True)
    return time.perf_counter() - start


def model_floor(bundle_ref: str, data: bytes, runs: int = 30) -> float:
    bundle = load_bundle(bundle_ref)
    for _ in range(5):
        predict_sources(bundle, [data])
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predict_sources(bundle, [data])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def learn_latency(browser, url: str, repeats: int = 4) -> dict[str, list[float]]:
    """In-page milliseconds of each Learn-page interaction on the sample X-ray."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)
    page.goto(url + "/learn")
    page.get_by_text("out = floor((7 - 3").wait_for()
    out: dict[str, list[float]] = {}
    kernel = slider(page, "Kernel")
    for i in range(repeats):
        kernel.focus()
        key, k = ("ArrowRight", 4) if i % 2 == 0 else ("ArrowLeft", 3)
        ms = timed(page, lambda key=key: kernel.press(key), rf"floor\(\(7 - {k} ")
        out.setdefault("kernel slider -> formula and drawing", []).append(ms)
    for _ in range(repeats):
        col = step_shown(page)[2]
        ms = timed(page, lambda: page.get_by_role("button", name="Next →").click(),
                   rf"column {col + 1}\)")  # fmt: skip
        out.setdefault("Next -> patch x filter + bias = value", []).append(ms)
    ms = timed(page, lambda: section(page, "Receptive field"), "Theoretical field")
    out["section Receptive field (first unit's gradient)"] = [ms]
    unit = slider(page, "Unit column")
    for _ in range(repeats):
        x = int(re.search(r"unit \(\d+, (\d+)\) sees", main_text(page)).group(1))
        unit.focus()
        ms = timed(page, lambda: unit.press("ArrowRight"), rf"unit \(\d+, {x + 1}\) sees")
        out.setdefault("unit slider -> box and effective field (new unit)", []).append(ms)
    for name, text in (("Filters and maps", "Filters and their feature maps"),
                       ("Architectures", "block by block"), ("Code", "as code to copy"),
                       ("Convolution", "out = floor")):  # fmt: skip
        out[f"section {name} (first time)"] = [timed(page, lambda n=name: section(page, n), text)]
    page.close()
    return out


def print_learn(figures: dict[str, list[float]]) -> None:
    print("Learn page, in the page: interaction -> new state shown (goal < 1000 ms)")
    for name, values in figures.items():
        each = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {name:52}{statistics.median(values):>6.0f} ms {len(values)}  ({each})")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, linear between the two nearest values (numpy's default)."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def sessions_at_once(bundle_ref: str, levels: list[int], rounds: int) -> list[dict]:
    """One session alone, then each level of sessions at once, on one preloaded server: the
    answers beside the library's, and upload -> result in the page."""
    from cnnlab.anatomy.summary import summarize

    external = sorted(
        (ROOT.parent / "shared" / "data" / "chest_xray" / "external").glob("*/*.jpeg")
    )
    most = max([1, *levels])
    xrays = external[:: max(1, len(external) // most)][:most]  # one X-ray per session, both classes
    bundle = load_bundle(bundle_ref)
    pre = bundle.preprocess
    summary = summarize(bundle.model, (pre.channels, *pre.size), bundle.name)
    expected = [Expected.compute(bundle, summary, [x]) for x in xrays]
    plan = Plan(rounds=rounds, gradcam=False, learn=True)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "app.log"
        with running_app(bundle_ref, free_port(), [tmp], log) as (url, _):
            wait_preloaded(log)
            for n in [1, *levels]:
                seen = asyncio.run(run_sessions(url, [[x] for x in xrays[:n]], plan))
                wrong = [
                    d for e, s in zip(expected, seen, strict=False) for d in differences(e, s, plan)
                ]
                times = [ms for s in seen for ms in s.upload_to_result_ms]
                after = [ms for s in seen for ms in s.sent_to_result_ms]
                out.append({"sessions": n, "uploads": len(times), "wrong": wrong, "times": times,
                            "after_upload": after})  # fmt: skip
        if "Traceback" in log.read_text(errors="replace"):
            out[-1]["wrong"].append("a traceback in the server log")
    return out


def calls_at_once(bundle, images: list, n: int, calls: int) -> float:
    """Median ms of `predict_checked` on one X-ray when n threads call it together."""
    import threading

    times: list[float] = []
    together = threading.Barrier(n)

    def work(i: int) -> None:
        together.wait()
        for _ in range(calls):
            start = time.perf_counter()
            bundle.predict_checked(images[i])
            times.append((time.perf_counter() - start) * 1000)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statistics.median(times)


def model_at_once(bundle_ref: str, levels: list[int], calls: int = 5) -> list[tuple[int, float]]:
    """The model's floor at each level: one X-ray's prediction with its OOD check
    (`predict_checked`) from N threads at once on one loaded bundle, median ms per call."""
    bundle = load_bundle(bundle_ref)
    external = sorted(
        (ROOT.parent / "shared" / "data" / "chest_xray" / "external").glob("*/*.jpeg")
    )
    images = [bundle.preprocess.load(p)[None] for p in external[: max([1, *levels])]]
    for x in images:
        bundle.predict_checked(x)
    return [(n, calls_at_once(bundle, images, n, calls)) for n in [1, *levels]]


def print_sessions(rows: list[dict], floor: list[tuple[int, float]]) -> None:
    print("Sessions at once, each uploading one X-ray per round together (Grad-CAM off), then a "
          "receptive-field unit; in the page: upload -> result (of which: file sent -> result)")  # fmt: skip
    head = f"{'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}"
    print(f"  {'sessions':>8} {'uploads':>8} {'answers':>22} {head}   sent -> result {head}")
    for r in rows:
        same = "identical" if not r["wrong"] else f"{len(r['wrong'])} DIFFERENT"
        cells = []
        for t in (r["times"], r["after_upload"]):
            t = t or [float("nan")]
            cells.append(f"{percentile(t, 50):>8.0f} {percentile(t, 95):>8.0f} {max(t):>8.0f}")
        print(f"  {r['sessions']:>8} {r['uploads']:>8} {same + ' to alone':>22} {cells[0]}"
              f"{'':17}{cells[1]}")  # fmt: skip
        for w in r["wrong"][:5]:
            print(f"      {w}")
    print("  the model alone (floor): predict_checked of one X-ray from N threads at once, median "
          + ", ".join(f"{n}: {ms:.0f} ms" for n, ms in floor))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default="pneumonia")
    ap.add_argument("--starts", type=int, default=3, help="server starts timed (each kind)")
    ap.add_argument("--uploads", type=int, default=5, help="uploads timed, each on a fresh page")
    ap.add_argument("--image", type=Path, help="default: the first X-ray of ../shared/data")
    ap.add_argument("--learn-only", action="store_true", help="only the Learn page's figures")
    ap.add_argument("--sessions", default="4,8",
                    help="browser sessions at once, comma-separated (0: none)")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=5, help="uploads per session at each level")
    ap.add_argument("--sessions-only", action="store_true", help="only the sessions at once")
    args = ap.parse_args()
    from cnnlab.runtime.device import machine_line

    levels = [int(n) for n in args.sessions.split(",") if int(n) > 0]
    app_runtime = load_bundle(args.bundle).runtime.describe()  # as the app loads the model
    print(machine_line("fp32"), f"| the app's model: {app_runtime}", flush=True)
    if args.sessions_only:
        print(f"cnnlab app, bundle {args.bundle}, {len(os.sched_getaffinity(0))} cores")
        print_sessions(sessions_at_once(args.bundle, levels, args.rounds),
                       model_at_once(args.bundle, levels))  # fmt: skip
        return
    from playwright.sync_api import sync_playwright

    xray = (
        args.image
        or sorted(
            (ROOT.parent / "shared" / "data" / "chest_xray" / "train" / "PNEUMONIA").glob("*.jp*g")
        )[0]
    )
    if args.learn_only:
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
            browser = launch(p)
            log = Path(tmp) / "app.log"
            with running_app(args.bundle, free_port(), [tmp], log) as (url, _):
                wait_preloaded(log)
                figures = learn_latency(browser, url)
            browser.close()
        print(f"cnnlab app, bundle {args.bundle}, {len(os.sched_getaffinity(0))} cores")
        print_learn(figures)
        return
    floor_ms = model_floor(args.bundle, xray.read_bytes())
    clis = [cli_startup() for _ in range(args.starts)]
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = launch(p)
        chromium = browser.version
        floors = [streamlit_floor(Path(tmp), browser) for _ in range(args.starts)]
        starts, preloads = [], []
        log = Path(tmp) / "app.log"
        for i in range(args.starts):
            with running_app(args.bundle, free_port(), [tmp], log) as (url, startup):
                starts.append(startup)
                preloads.append(wait_preloaded(log))
                if i < args.starts - 1:
                    continue
                first = first_page(browser, url, "Not for diagnosis.")
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(120_000)
                uploads = []
                for _ in range(args.uploads):
                    page.goto(url)
                    page.get_by_role("heading", name="Classify").wait_for()
                    uploads.append(classify(page, xray))
                page.evaluate(CAM_WATCH)
                page.get_by_text("Grad-CAM overlay").click()
                page.get_by_text("Grad-CAM for").wait_for()
                page.wait_for_function("() => window.__cam.end")
                cam = page.evaluate("() => window.__cam.end - window.__cam.start")
                learn = learn_latency(browser, url)
        browser.close()
    med = {k: statistics.median(u[k] for u in uploads) for k in uploads[0]}
    print(f"cnnlab app latency: bundle {args.bundle}, image {xray.name}, Chromium {chromium}, "
          f"{len(os.sched_getaffinity(0))} cores")  # fmt: skip
    print(f"{'':48}{'median':>10}  runs")
    print("server start -> /_stcore/health")
    print(
        f"  {'streamlit run hello.py (floor)':46}{statistics.median(f[0] for f in floors):>8.2f} s  {len(floors)}"
    )
    print(f"  {'cnnlab app ' + args.bundle:46}{statistics.median(starts):>8.2f} s  {len(starts)}")
    print(f"  {'(each start, s)':46}{', '.join(f'{s:.2f}' for s in starts)}")
    print(
        f"  {'of which: cnnlab --version (CLI start-up)':46}{statistics.median(clis):>8.2f} s  {len(clis)}"
    )
    print(
        f"health -> model preloaded (background)        {statistics.median(preloads):>8.2f} s  {len(preloads)}"
    )
    print("first page in a new browser tab (model preloaded)")
    print(
        f"  {'hello.py (floor)':46}{statistics.median(f[1] for f in floors):>8.2f} s  {len(floors)}"
    )
    print(f"  {'cnnlab app (Classify page)':46}{first:>8.2f} s  1")
    print("upload -> result, one X-ray, Grad-CAM off")
    print(f"  {'model alone: predict_sources (floor)':46}{floor_ms:>8.0f} ms 30")
    print(
        f"  {'in the page: upload -> file listed as sent':46}{med['upload_ms']:>8.0f} ms {len(uploads)}"
    )
    print(f"  {'in the page: sent -> result shown':46}{med['answer_ms']:>8.0f} ms {len(uploads)}")
    print(f"  {'in the page: total (goal < 1000 ms)':46}{med['total_ms']:>8.0f} ms {len(uploads)}")
    totals = ", ".join(f"{u['total_ms']:.0f}" for u in uploads)
    print(f"  {'(each total, ms)':46}{totals}")
    print(
        f"  {'as Playwright sees it (polling included)':46}{med['wall_s'] * 1000:>8.0f} ms {len(uploads)}"
    )
    print(f"Grad-CAM toggle -> overlay shown, in the page    {cam:>8.0f} ms 1")
    print_learn(learn)
    if levels:
        print_sessions(sessions_at_once(args.bundle, levels, args.rounds),
                       model_at_once(args.bundle, levels))  # fmt: skip


if __name__ == "__main__":
    main()
