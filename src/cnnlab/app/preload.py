"""`python -m cnnlab.app.preload ARGS` = `streamlit run ARGS`, and once the server answers, the
bundle the app opens on is loaded in a background thread: the first visitor finds the model
(and the torch import) ready instead of waiting for them. Same process, same cache."""

from __future__ import annotations

import logging
import sys
import threading
import time

PRELOADED = "cnnlab app: preloaded"  # the line tests and benchmarks wait for


def _server_started(timeout: float = 120.0) -> bool:
    """Wait until Streamlit's runtime is up: the server answers health checks before we load."""
    from streamlit.runtime import Runtime, RuntimeState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Runtime.exists() and Runtime.instance().state != RuntimeState.INITIAL:
            return True
        time.sleep(0.05)
    return False


def _import_page_modules() -> None:
    """What the pages import (torch, scikit-learn, pandas for tables): imported once, here."""
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401

    import cnnlab.explain.layer_view  # noqa: F401
    import cnnlab.report.figures  # noqa: F401
    import cnnlab.report.rows  # noqa: F401


def warm_up(wait: bool = True) -> None:
    """Load the default bundle, run its first (slowest) forward pass, find its Grad-CAM layer and
    summary, into the app's process-wide caches. Only after the server has started; a page that
    asks meanwhile waits for this same load, not a second one."""
    if wait and not _server_started():
        return
    start = time.perf_counter()
    try:
        import torch

        from cnnlab.app.launch import app_settings
        from cnnlab.app.resources import get_bundle, get_cam_layer, get_summary
        from cnnlab.bundle.catalog import find_bundles

        entries = find_bundles(*app_settings())
        if entries:
            path = str(entries[0].path)
            bundle = get_bundle(path)
            pre = bundle.preprocess
            bundle.predict_proba(torch.zeros(1, pre.channels, *pre.size, dtype=torch.uint8))
            get_cam_layer(path)
            get_summary(path)
        _import_page_modules()
    except Exception as e:  # noqa: BLE001 - the page itself reports an unusable bundle
        print(f"cnnlab app: could not preload the model ({e})", file=sys.stderr, flush=True)
        return
    what = entries[0].label if entries else "nothing (no bundle found)"
    print(f"{PRELOADED} {what} in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def main() -> int:
    # Streamlit warns once per cached call made outside a page run ("missing
    # ScriptRunContext"): the preload is such a call, on purpose; the warning would only worry
    # (a filter, since Streamlit resets its loggers' levels from its config)
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(
        lambda record: "missing ScriptRunContext" not in record.getMessage()
    )
    threading.Thread(target=warm_up, name="cnnlab-warm-up", daemon=True).start()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", *sys.argv[1:]]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
