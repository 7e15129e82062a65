"""DICOM pixels to a display-ready uint8 image, the way a radiology viewer shows them.

Order matters: stored values -> modality LUT (rescale slope/intercept) -> VOI LUT, or
window centre/width, or else the image's own value range -> 0-255 -> MONOCHROME1
inverted (so bone is bright as in MONOCHROME2). The window is applied here, straight
onto 0-255, rather than through pydicom's apply_voi_lut, whose output range depends on
BitsStored and the rescale values and is easy to map back wrongly.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from cnnlab.errors import ImageReadError

COLOR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "PALETTE COLOR")


def open_dicom(data: bytes, header_only: bool = False):
    """pydicom's dataset, read leniently (force=True, as viewers read loose files). pydicom's
    warnings on how it recovered one (e.g. "Expected implicit VR, but found explicit VR") are
    silenced: the file is then either shown or refused with a reason, and they would print
    beneath every upload."""
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=header_only)


# ViewCodeSequence meanings (SNOMED CT, CID 4010) to the ViewPosition terms, for files that
# give the view only as a code
VIEW_MEANINGS = {"postero-anterior": "PA", "antero-posterior": "AP", "left lateral": "LL",
                 "right lateral": "RL", "lateral": "LATERAL", "left anterior oblique": "LAO",
                 "right anterior oblique": "RAO"}  # fmt: skip


@dataclass(frozen=True)
class DicomTags:
    """What a DICOM image says of itself, kept from the read that decoded its pixels: the
    identifiers every result row carries back to the PACS, and the tags a bundle's `accepts`
    is held against (modality, body part, view). "" where the file does not say."""

    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    sop_class_uid: str = ""
    accession: str = ""
    patient_id: str = ""  # shown only where the user asks for it
    modality: str = ""  # CR, DX, CT, ...
    body_part: str = ""  # BodyPartExamined: CHEST, KNEE, ...
    view: str = ""  # ViewPosition (PA, AP, LL, ...), else from ViewCodeSequence

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _text(ds, keyword: str) -> str:
    value = ds.get(keyword, "")
    return str(value.value if hasattr(value, "value") else value or "").strip()


def dicom_tags(ds) -> DicomTags:
    """The identifiers and acceptance tags of a pydicom dataset."""
    view = _text(ds, "ViewPosition").upper()
    if not view and ds.get("ViewCodeSequence"):
        meaning = str(getattr(ds.ViewCodeSequence[0], "CodeMeaning", "")).strip().lower()
        view = VIEW_MEANINGS.get(meaning, meaning.upper())
    return DicomTags(
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        sop_uid=_text(ds, "SOPInstanceUID"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        accession=_text(ds, "AccessionNumber"),
        patient_id=_text(ds, "PatientID"),
        modality=_text(ds, "Modality").upper(),
        body_part=_text(ds, "BodyPartExamined").upper(),
        view=view,
    )


def read_dicom_tags(data: bytes, max_pixels: int) -> tuple[np.ndarray, DicomTags]:
    """Decode DICOM bytes to uint8 (H, W, C), the first frame of a multi-frame file, and its
    tags from the same read. Pixel data over `max_pixels` is refused before it is decoded. A
    file whose header reads but whose pixels do not raises ImageReadError carrying the tags
    (`.dicom`): a corrupt instance from a PACS is still named by its identifiers."""
    try:
        ds = open_dicom(data)
    except Exception as e:  # pydicom raises many types for broken files
        raise ImageReadError(f"unreadable DICOM file: {e}") from None
    tags = dicom_tags(ds)
    try:
        return _pixels(ds, max_pixels), tags
    except ImageReadError as e:
        e.dicom = tags
        raise


def _pixels(ds, max_pixels: int) -> np.ndarray:
    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pragma: no cover - pydicom is a dependency
        raise ImageReadError("DICOM support needs the pydicom package") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ImageReadError("DICOM file has no pixel data (no image inside)")
    rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if rows * cols * max(frames, 1) > max_pixels:  # before decoding: compressed bombs
        raise ImageReadError(
            f"DICOM image is {cols}x{rows}x{frames} ({rows * cols * frames / 1e6:.0f} MP), "
            f"over the {max_pixels / 1e6:.0f} MP limit"
        )
    try:
        arr = ds.pixel_array
    except Exception as e:
        raise ImageReadError(f"cannot decode DICOM pixel data: {e}") from None
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[0]
    if photometric in COLOR:
        return np.ascontiguousarray(_color(arr, ds, photometric))
    if arr.ndim != 2:
        raise ImageReadError(f"unsupported DICOM pixel array of shape {tuple(arr.shape)}")
    try:
        values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
        out = _voi(values, ds)
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise ImageReadError(f"invalid DICOM display settings: {e}") from None
    if photometric == "MONOCHROME1":
        out = 255 - out
    return np.ascontiguousarray(out[..., None])


def _first(value) -> float:
    """Window centre/width may hold several alternatives (VM > 1): the first is the default."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        value = value[0]
    return float(value)


def _voi(values: np.ndarray, ds) -> np.ndarray:
    """Modality values to uint8: VOI LUT table, else window centre/width, else min-max."""
    if ds.get("VOILUTSequence"):
        from pydicom.pixels import apply_voi

        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        whole = np.array_equal(values, np.round(values))  # a LUT is indexed by integers
        lut_in = values.astype(np.int64) if whole else values
        mapped = np.asarray(apply_voi(lut_in, ds, index=0), dtype=np.float64)
        return _to_uint8(mapped, 0.0, float(2**bits - 1))
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        func = str(getattr(ds, "VOILUTFunction", "LINEAR") or "LINEAR").upper()
        if func == "SIGMOID":
            if width <= 0:
                raise ValueError("window width must be positive")
            return _to_uint8(1.0 / (1.0 + np.exp(-4.0 * (values - center) / width)), 0.0, 1.0)
        if func == "LINEAR":  # PS3.3 C.11.2.1.2.1
            if width < 1:
                raise ValueError("window width must be at least 1 for LINEAR windowing")
            center, width = center - 0.5, width - 1
            if width == 0:
                return np.where(values > center, 255, 0).astype(np.uint8)
        elif width <= 0:
            raise ValueError("window width must be positive")
        return _to_uint8((values - center) / width + 0.5, 0.0, 1.0)
    return _to_uint8(values, float(values.min()), float(values.max()))


def _color(arr: np.ndarray, ds, photometric: str) -> np.ndarray:
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
    elif photometric.startswith("YBR") and photometric not in ("YBR_RCT", "YBR_ICT"):
        from pydicom.pixels import convert_color_space

        arr = convert_color_space(arr, photometric, "RGB")
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ImageReadError(f"unsupported DICOM colour pixel array of shape {tuple(arr.shape)}")
    values = arr.astype(np.float64)
    bits = int(getattr(ds, "BitsStored", 8) or 8)
    if photometric == "PALETTE COLOR":
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    return _to_uint8(values, 0.0, float(2**bits - 1))


def _to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scaled = (values - lo) / max(hi - lo, 1e-12) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)
