"""What happens to an uploaded image on its way into a model, said in words: the size limit,
and notes on conversions the reader makes silently (alpha dropped, 16 bits to 8, resizing).

Only headers are read here (no pixel decoding), so a decompression bomb costs nothing; the
reader (`cnnlab.data.images.read_image`) remains the one that refuses bad files.
"""

from __future__ import annotations

import io
import warnings

from cnnlab.data.images import is_dicom
from cnnlab.data.preprocess import Preprocess

MIB = 1024 * 1024


def upload_too_large(n_bytes: int, limit_mb: float) -> str | None:
    """The message for a file over the upload limit (Streamlit's `server.maxUploadSize`, MB)."""
    if n_bytes > limit_mb * MIB:
        return f"file is {n_bytes / MIB:.1f} MB, over the {limit_mb:g} MB upload limit"
    return None


def _header(data: bytes) -> tuple[str, str, tuple[int, int], bool] | None:
    """(format, mode, (width, height), has a transparent colour) from the header alone; None
    when Pillow can't tell."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            transparent = "transparency" in img.info
            return str(img.format), str(img.mode), tuple(img.size), transparent  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - any unreadable header: the reader reports the reason
        return None


def upload_notes(data: bytes, preprocess: Preprocess) -> list[str]:
    """Conversions this file goes through before the model sees it, one short note each."""
    target = f"{preprocess.size[0]}x{preprocess.size[1]}"
    gray_model = preprocess.channels == 1
    if is_dicom(data[:132]):
        return [f"DICOM: windowed to 8 bits, resized to {target} ({preprocess.resize})"]
    head = _header(data)
    if head is None:
        return []
    fmt, mode, (w, h), transparent = head
    notes = []
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and transparent):
        notes.append("transparency (alpha channel) ignored")
    if mode.startswith("I;16") or mode in ("I", "F"):
        notes.append("16-bit image scaled to 8 bits")
    colour = mode not in ("1", "L", "LA", "I", "F") and not mode.startswith("I;16")
    if colour and gray_model:
        notes.append("colour converted to grayscale")
    if not colour and not gray_model:
        notes.append("grayscale repeated to 3 channels")
    if [h, w] != list(preprocess.size):
        notes.append(f"{fmt} {w}x{h} resized to {target} ({preprocess.resize})")
    return notes
