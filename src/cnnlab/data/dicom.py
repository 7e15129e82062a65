"""DICOM pixels to a display-ready uint8 image, the way a radiology viewer shows them.

Order matters: stored values -> modality LUT (rescale slope/intercept) -> VOI LUT or
window centre/width -> MONOCHROME1 inverted (so bone is bright as in MONOCHROME2) -> 0-255.
"""

from __future__ import annotations

import io

import numpy as np

from cnnlab.data.images import ImageReadError


def read_dicom(data: bytes) -> np.ndarray:
    """Decode DICOM bytes to uint8 (H, W, C); the first frame of a multi-frame file."""
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pragma: no cover - pydicom is a dependency
        raise ImageReadError("DICOM support needs the pydicom package") from None
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as e:  # pydicom raises many types for broken files
        raise ImageReadError(f"unreadable DICOM file: {e}") from None
    if "PixelData" not in ds:
        raise ImageReadError("DICOM file has no pixel data (no image inside)")
    try:
        arr = ds.pixel_array
    except Exception as e:
        raise ImageReadError(f"cannot decode DICOM pixel data: {e}") from None
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[0]
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422") or (arr.ndim == 3 and arr.shape[-1] == 3):
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            arr = convert_color_space(arr, photometric, "RGB")
        return np.ascontiguousarray(_rescale(arr.astype(np.float64), None))
    if arr.ndim != 2:
        raise ImageReadError(f"unsupported DICOM pixel array of shape {arr.shape}")
    values = apply_modality_lut(arr, ds).astype(np.float64)
    windowed = "WindowCenter" in ds or "VOILUTSequence" in ds
    if windowed:
        values = apply_voi_lut(values, ds, index=0).astype(np.float64)
    lo, hi = _range(ds, values, windowed)
    out = _rescale(values, (lo, hi))
    if photometric == "MONOCHROME1":
        out = 255 - out
    return np.ascontiguousarray(out[..., None])


def _range(ds, values: np.ndarray, windowed: bool) -> tuple[float, float]:
    """The value range mapped to 0-255: the VOI output range when windowed, else the data's."""
    if windowed and "VOILUTSequence" not in ds:
        bits = int(getattr(ds, "BitsStored", 8) or 8)
        signed = int(getattr(ds, "PixelRepresentation", 0) or 0) == 1
        # apply_voi_lut's linear window maps onto the full range of the stored type
        if signed:
            return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return 0.0, 2**bits - 1.0
    return float(values.min()), float(values.max())


def _rescale(values: np.ndarray, bounds: tuple[float, float] | None) -> np.ndarray:
    if bounds is None:
        bounds = (0.0, 255.0) if values.max() <= 255 else (float(values.min()), float(values.max()))
    lo, hi = bounds
    scaled = (values - lo) / max(hi - lo, 1e-12) * 255.0
    return scaled.round().clip(0, 255).astype(np.uint8)
