"""What the app keeps between reruns: bundles and their summaries loaded once per process
(`st.cache_resource`: never reloaded on a rerun, shared by every session), the bundle list,
and the currently picked bundle. Streamlit glue only; the work is in the library."""

from __future__ import annotations

import streamlit as st

from cnnlab.anatomy.summary import Summary, summarize
from cnnlab.app.launch import UPLOAD_LIMIT_MB, app_settings, required_signer
from cnnlab.bundle.catalog import BundleEntry, find_bundles
from cnnlab.bundle.loading import Bundle, load_bundle
from cnnlab.errors import CnnlabError

PICKED = "picked_bundle"  # session key: the label of the bundle picked in the sidebar

NO_BUNDLE = """**No model bundle is available**, so there is nothing to classify with yet.

- The shipped chest X-ray model comes with cnnlab: reinstall it (`make demo` from a clone
  does) and start the app with `cnnlab app pneumonia`.
- Or train one, for instance the pneumonia model
  (`cnnlab train recipes/chest_xray_best.yaml --data ../shared/data/chest_xray/train --out runs/pneumonia`)
  or a 15-second MNIST model (`cnnlab train recipes/mnist_fast.yaml --out runs/mnist`).
  Bundles under `runs/` appear in the sidebar's model list; `cnnlab app runs/NAME` opens one.
"""


@st.cache_resource(show_spinner="Loading the model ...")
def get_bundle(path: str) -> Bundle:
    """Loaded once per process and kept: reruns and new sessions reuse the same model."""
    return load_bundle(path, require_signed=required_signer())


@st.cache_resource(show_spinner="Summarising the model's layers ...")
def get_summary(path: str) -> Summary:
    bundle = get_bundle(path)
    pre = bundle.preprocess
    return summarize(bundle.model, (pre.channels, pre.size[0], pre.size[1]), bundle.name)


@st.cache_resource(show_spinner=False)
def get_cam_layer(path: str) -> str:
    """The Grad-CAM layer (last conv of the features), found once per model, not per image."""
    from cnnlab.explain import bundle_cam_layer

    return bundle_cam_layer(get_bundle(path))


@st.cache_data(ttl=30, show_spinner=False)
def get_catalog(explicit: tuple[str, ...], roots: tuple[str, ...]) -> list[BundleEntry]:
    return find_bundles(explicit, roots)


def catalog() -> tuple[list[BundleEntry], str | None]:
    """(bundles found, an error about the one asked for, if it is unusable)."""
    explicit, roots = app_settings()
    try:
        return get_catalog(tuple(explicit), tuple(roots)), None
    except CnnlabError as e:
        return get_catalog((), tuple(roots)), str(e)


def picked_entry() -> BundleEntry | None:
    entries, _ = catalog()
    label = st.session_state.get(PICKED)
    return next((e for e in entries if e.label == label), entries[0] if entries else None)


def require_bundle() -> tuple[BundleEntry, Bundle]:
    """The picked bundle, loaded; otherwise the page says why and how to get one, and stops."""
    entry = picked_entry()
    if entry is None:
        st.warning(NO_BUNDLE)
        st.stop()
    try:
        return entry, get_bundle(str(entry.path))
    except CnnlabError as e:
        st.error(f"The bundle {entry.label} cannot be loaded: {e}")
        st.info("Pick another model in the sidebar, or retrain this one with `cnnlab train`.")
        st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


def upload_limit_mb() -> int:
    """Streamlit's `server.maxUploadSize` as this server runs it (default UPLOAD_LIMIT_MB)."""
    try:
        return int(st.get_option("server.maxUploadSize"))
    except (
        RuntimeError,
        TypeError,
        ValueError,
    ):  # pragma: no cover - an option Streamlit always has
        return UPLOAD_LIMIT_MB


def session_id() -> str | None:
    """This browser session's id: the client of its decisions on record (no name or address
    of the person: the app has no log-in)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else None
