"""The model bundle: one folder with weights, preprocessing, classes, decision rule and card.

    model.safetensors   weights (never a pickle)
    bundle.json         model name + arguments, preprocessing, classes, threshold/temperature,
                        metrics, the resolved recipe, versions, the `ood` check's cut-off
    card.md             the model card, for people
    ood.safetensors     the out-of-distribution check's means and covariance (when fitted)
    manifest.json       the seal: every file's size and sha256, written last (seal.py)
    bundle.sig          a signature over them all, when signed (sign.py)

Here: loading.py (`load_bundle`, the `Bundle` it returns, `check_bundle`), check.py (what a
load checks in bundle.json: fields, bounds, files, weights, head), save.py (`save_bundle`, and
the helpers every command that edits bundle.json uses), seal.py, sign.py, and catalog.py
(which bundles exist: paths only, no torch).

The names below load on first use, so `cnnlab app` can find its bundle (catalog.py) before
torch is imported.
"""

from cnnlab.lazy import lazy_exports

_EXPORTS = {
    "Bundle": "cnnlab.bundle.loading",
    "check_bundle": "cnnlab.bundle.loading",
    "copy_bundle": "cnnlab.bundle.loading",
    "load_bundle": "cnnlab.bundle.loading",
    "save_bundle": "cnnlab.bundle.save",
    "seal_bundle": "cnnlab.bundle.seal",
    "sign_bundle": "cnnlab.bundle.sign",
    "find_bundles": "cnnlab.bundle.catalog",
    "resolve_bundle": "cnnlab.bundle.catalog",
    "shipped_bundles": "cnnlab.bundle.catalog",
}

lazy_exports(globals(), _EXPORTS)
