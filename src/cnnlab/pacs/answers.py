"""DICOM instances in, answers and their DICOM results out: shared by the DICOMweb screener and
the C-STORE receiver, so both answer through `cnnlab.predict.predict_sources` (the path
`cnnlab predict` takes on the same files) and write the same SR and Secondary Capture."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

from cnnlab.pacs.secondary import build_capture
from cnnlab.pacs.structured import Algorithm, build_report
from cnnlab.predict import predict_sources
from cnnlab.report.present import Presented, present

if TYPE_CHECKING:
    from cnnlab.bundle.loading import Bundle


@dataclass(frozen=True)
class Answered:
    """One instance read: its dataset (header and pixels), its bytes, its answer."""

    source: Dataset
    data: bytes
    shown: Presented


def instance_bytes(ds: Dataset) -> bytes:
    """An instance as a DICOM file's bytes (the decode path files take)."""
    import pydicom

    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def answer_images(bundle: Bundle, images: list[Dataset]) -> list[Answered]:
    """Each instance through the one inference path, named by its SOP Instance UID; one that
    cannot even be written back to bytes is answered "not screened" with the reason."""
    blobs = []
    for ds in images:
        try:
            blobs.append(instance_bytes(ds))
        except Exception as e:  # noqa: BLE001 - a broken instance is that instance's problem
            blobs.append(f"corrupt DICOM instance: {type(e).__name__}: {e}".encode())
    names = [str(ds.get("SOPInstanceUID", f"instance-{i}")) for i, ds in enumerate(images)]
    preds = predict_sources(bundle, blobs, names)
    return [Answered(ds, blob, present(pred, bundle))
            for ds, blob, pred in zip(images, blobs, preds, strict=True)]  # fmt: skip


def results_for(
    bundle: Bundle,
    answers: list[Answered],
    sr_series_uid: str,
    sc_series_uid: str,
    cam_layer: str | None,
) -> list[Dataset]:
    """An SR per answer (Not screened included, with its reason) and a Secondary Capture with
    the Grad-CAM per image screened, numbered in order within their new series."""
    from cnnlab.explain import gradcam_image, overlay_heatmap

    algorithm = Algorithm.of(bundle)
    out: list[Dataset] = []
    captures = 0
    for i, a in enumerate(answers, start=1):
        out.append(build_report(a.source, a.shown, algorithm, sr_series_uid, i))
        pred = a.shown.prediction
        if pred.screened and pred.pixels is not None:
            pixels, cam = gradcam_image(bundle, pred.pixels, cam_layer, pred.label)
            captures += 1
            out.append(build_capture(a.source, a.shown, overlay_heatmap(pixels, cam.heatmap),
                                     algorithm, sc_series_uid, captures))  # fmt: skip
    return out
