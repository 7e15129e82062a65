"""Real DICOM studies made in tests with pydicom: chest X-rays (CR and DX, MONOCHROME1 and 2,
8- and 16-bit, PA/AP), and what a chest model must refuse (a lateral view, a CT slice, a knee).
Nothing here is committed: the pixels come from the caller (../shared/data or synthetic)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

SOP_CLASS = {"CR": ComputedRadiographyImageStorage, "DX": DigitalXRayImageStorageForPresentation,
             "CT": CTImageStorage}  # fmt: skip


@dataclass(frozen=True)
class Study:
    """The identifiers of one study made here."""

    study_uid: str
    accession: str
    patient_id: str


def new_study(accession: str, patient_id: str = "PAT-1") -> Study:
    return Study(generate_uid(), accession, patient_id)


def chest_dicom(
    pixels: np.ndarray,
    study: Study,
    *,
    modality: str = "CR",
    photometric: str = "MONOCHROME2",
    bits: int = 8,
    view: str | None = "PA",
    body_part: str | None = "CHEST",
    series_uid: str | None = None,
) -> Dataset:
    """One image as a DICOM instance: `pixels` uint8 (H, W), stored so that a viewer (and
    cnnlab's reader) shows exactly those values: 16-bit as 12 stored bits x16 with a window
    over the full range, MONOCHROME1 inverted."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study.study_uid, series_uid or generate_uid()
    ds.AccessionNumber, ds.PatientID, ds.PatientName = (
        study.accession,
        study.patient_id,
        "TEST^PATIENT",
    )
    ds.StudyDate, ds.StudyTime, ds.SeriesNumber, ds.InstanceNumber = "20261201", "101500", 1, 1
    ds.Modality = modality
    if view is not None:
        ds.ViewPosition = view
    if body_part is not None:
        ds.BodyPartExamined = body_part
    values = pixels.astype(np.uint16)
    if photometric == "MONOCHROME1":
        values = 255 - values
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    if bits == 8:
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        ds.PixelData = values.astype(np.uint8).tobytes()
    else:  # 12 bits stored in 16
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = (values * 16).astype(np.uint16).tobytes()
    if modality == "CT":
        ds.RescaleIntercept, ds.RescaleSlope, ds.ImageType = (
            -1024,
            1,
            ["ORIGINAL", "PRIMARY", "AXIAL"],
        )
    return ds


def dicom_file_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def synthetic_chest(seed: int = 0, size: int = 256) -> np.ndarray:
    """A uint8 image with structure (not blank, not a strip): enough for the reader."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = 120 + 80 * np.sin(6 * x + seed) * np.cos(4 * y) + rng.normal(0, 10, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)
