"""The app started for real, as a user starts it (`cnnlab app` in a subprocess), for the browser
test and benchmarks/app_latency.py: wait until it answers, and until it has preloaded its model."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cnnlab.app.preload import PRELOADED
from cnnlab.errors import CnnlabError


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> float:
    """Seconds until Streamlit's health endpoint answers `ok` (an open port is not enough)."""
    start = time.perf_counter()
    while True:
        if proc.poll() is not None:
            raise CnnlabError(f"the app exited with status {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return time.perf_counter() - start
        except OSError:
            pass
        if time.perf_counter() - start > timeout:
            raise CnnlabError(f"the app did not answer {url}/_stcore/health within {timeout:g} s")
        time.sleep(0.02)


def wait_preloaded(log: Path, timeout: float = 180.0) -> float:
    """Seconds until the server's log says the default bundle is loaded (see app.preload)."""
    start = time.perf_counter()
    while PRELOADED not in log.read_text(errors="replace"):
        if time.perf_counter() - start > timeout:
            raise CnnlabError(f"the app did not preload its model within {timeout:g} s")
        time.sleep(0.05)
    return time.perf_counter() - start


@contextmanager
def running_app(
    bundle: str | None, port: int, runs: list[str] | None = None, log: Path | None = None
) -> Iterator[tuple[str, float]]:
    """`cnnlab app` in a subprocess on 127.0.0.1:`port` (set through Streamlit's own environment
    variables); yields (url, seconds from the command to a healthy server), then stops it."""
    env = {
        **os.environ,
        "STREAMLIT_SERVER_PORT": str(port),
        "STREAMLIT_SERVER_ADDRESS": "127.0.0.1",
    }
    cmd = [sys.executable, "-m", "cnnlab", "app", *([bundle] if bundle else [])]
    for folder in runs or []:
        cmd += ["--runs", folder]
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, proc)
        except CnnlabError as e:
            tail = log.read_text()[-3000:] if log else ""
            raise CnnlabError(f"{e}\n{tail}".strip()) from None
        yield url, time.perf_counter() - start
    finally:
        stop(proc)
        if log:
            out.close()  # type: ignore[union-attr]


def stop(proc: subprocess.Popen) -> None:
    """A server started by a test, stopped: asked first, killed after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
