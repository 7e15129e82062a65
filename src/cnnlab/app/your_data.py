"""The Model page's "Evaluate on your data": a labelled folder on the machine running the app,
or a zip of one uploaded, judged by `evaluate_bundle` exactly as `cnnlab evaluate --data DATA
--out DIR` judges it, its figures drawn beside the validation ones.

Nothing of the data is kept: an uploaded zip is unpacked (by the archive code every `--data`
goes through: links, devices and paths that leave the folder refused, at most
UNPACKED_MAX_BYTES) into a temporary folder, the figures are read into the session, and the
folder is removed. The bundle is not changed (`cnnlab evaluate --record` is for that).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

from cnnlab.app.table_widget import show_table
from cnnlab.errors import CnnlabError
from cnnlab.fileio import GIB

UNPACKED_MAX_BYTES = 4 * GIB  # a site sample of a few thousand images: far less
FIGURES = (("roc", "roc_curve.png", "ROC curve"), ("cm", "confusion_matrix.png", "confusion matrix"),
           ("rel", "reliability.png", "calibration (reliability diagram)"))  # fmt: skip
STATE = "your_data"


def evaluate_on(bundle, folder: str, upload: Any | None) -> dict[str, Any]:
    """Evaluate `bundle` on a folder path or an uploaded archive; the report, the figures'
    bytes and the mistakes (files named relative to the data's root)."""
    from cnnlab.data.archives import ARCHIVE_SUFFIXES, unpack_into
    from cnnlab.evaluate.scores import evaluate_bundle
    from cnnlab.fileio import data_name

    with tempfile.TemporaryDirectory(prefix="cnnlab-your-data-") as tmp:
        work = Path(tmp)
        if upload is not None:
            name = Path(upload.name).name
            if not name.lower().endswith(ARCHIVE_SUFFIXES):
                raise CnnlabError(f"{name} is not a .zip (or .tar.gz) of an image folder")
            archive = work / name
            archive.write_bytes(upload.getvalue())
            data = unpack_into(archive, work / "data", UNPACKED_MAX_BYTES)
            archive.unlink()
        else:
            data = Path(folder.strip()).expanduser()
            if not data.exists():
                raise CnnlabError(f"{data} does not exist on the machine running the app")
            name = data_name(data.resolve())
        out = work / "figures"
        out.mkdir()
        report = evaluate_bundle(bundle, str(data), "test", out)
        figures = {key: (out / file).read_bytes()
                   for key, file, _ in FIGURES if (out / file).is_file()}  # fmt: skip
        mistakes_png = (
            (out / "mistakes.png").read_bytes() if (out / "mistakes.png").is_file() else None
        )
        mistakes = (
            json.loads((out / "mistakes.json").read_text())
            if (out / "mistakes.json").is_file()
            else []
        )
        root = str(data)
        for row in mistakes:  # the temporary folder's path means nothing once it is gone
            if row.get("file"):
                row["file"] = os.path.relpath(row["file"], root)
        seen = (report.get("leakage") or {}).get("training_overlap") or {}
        for item in seen.get("list", []):
            item["file"] = os.path.relpath(item["file"], root)
    report["data"] = name
    return {"name": name, "report": report, "figures": figures, "mistakes_png": mistakes_png,
            "mistakes": mistakes}  # fmt: skip


def your_data_section(bundle, bundle_path: Path, validation: dict[str, bytes | None],
                      metrics: dict[str, Any]) -> None:  # fmt: skip
    from cnnlab.app.resources import upload_limit_mb

    st.subheader("Evaluate on your data")
    st.caption("A labelled folder (`root/<class>/*` or `root/test/<class>/*`, classes named as "
               f"the model's: {', '.join(bundle.classes)}) on the machine running the app, or a "
               f"zip of one. The model is judged with its own rule, as `cnnlab evaluate BUNDLE "
               f"--data DATA --out DIR` does; nothing of the data is kept.")  # fmt: skip
    folder = st.text_input("Folder on this machine", key="your_data_folder",
                           placeholder="/data/site/xrays")  # fmt: skip
    upload = st.file_uploader(f"or a .zip of one (up to {upload_limit_mb()} MB)", type=["zip"],
                              key="your_data_zip")  # fmt: skip
    if st.button("Evaluate", key="your_data_go", disabled=not (folder.strip() or upload)):
        try:
            with st.spinner("Evaluating..."):
                result = evaluate_on(bundle, folder, upload)
            st.session_state[STATE] = {"bundle": str(bundle_path), **result}
        except CnnlabError as e:
            st.session_state.pop(STATE, None)
            st.error(f"Cannot evaluate on this data: {e}")
    result = st.session_state.get(STATE)
    if result and result["bundle"] == str(bundle_path):
        show_result(bundle, result, validation, metrics)


def show_result(bundle, result: dict[str, Any], validation: dict[str, bytes | None],
                metrics: dict[str, Any]) -> None:  # fmt: skip
    from cnnlab.evaluate.external import external_block
    from cnnlab.report.metrics import figure_table

    report, name = result["report"], result["name"]
    for line in [report.get("warning"), *(report.get("leakage") or {}).get("warnings", [])]:
        if line:
            st.warning(line)
    block = external_block(report, f"your data: {name}", bundle.classes, "the bundle's own rule")
    show_table(figure_table(metrics, [block]))
    drawn = [(key, caption) for key, _, caption in FIGURES if key in result["figures"]]
    # one column per figure, validation above yours: each pair compared straight down
    for row, (label, figures) in enumerate((("validation", validation),
                                            (f"{name} ({report['n']} images)", result["figures"]))):  # fmt: skip
        for column, (key, caption) in zip(st.columns(len(drawn) or 1), drawn, strict=False):
            if figures.get(key):
                column.image(figures[key], caption=f"{label}: {caption}", width="stretch")
            elif row == 0:
                column.info(f"No validation {caption} in this bundle.")
    if result["mistakes_png"] and result["mistakes"]:
        st.image(result["mistakes_png"], width="stretch",
                 caption=f"{name}: the wrong answers the model was surest of, per true class")  # fmt: skip
        show_table(result["mistakes"])
    elif result["mistakes_png"]:
        st.success(f"No mistakes on {name}.")
