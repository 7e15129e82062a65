"""An image on its way into a model, decoded once: the pixels the model gets, and notes in
words on what the reader changed silently (alpha dropped, 16 bits to 8, resizing).

`decode_batch` is the one door for files and uploads: `cnnlab predict`, the app and the API
all read their inputs through it, and a prediction keeps the pixels it was made from, so
nothing is decoded twice. The upload size limit is checked here too, before anything is read,
and so are inputs no model should answer (far too small, a strip, blank: `implausible`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.dicom import DicomTags
from cnnlab.data.images import SourceFacts, claimed_pixels, fit_image, read_image_facts
from cnnlab.data.preprocess import Preprocess
from cnnlab.errors import ImageReadError
from cnnlab.fileio import MIB

UNUSABLE = "not a usable image"  # how every implausible input's message begins
MIN_AREA_SHARE_INV = 16  # an image needs at least 1/16 of the model's input pixels (224: 56x56)
MAX_ASPECT = 8.0  # longer side / shorter side
MIN_SPREAD = 2.0  # standard deviation of the pixel values (0-255) below which it is blank


def upload_too_large(n_bytes: int, limit_mb: float) -> str | None:
    """The message for a file over the upload limit (Streamlit's `server.maxUploadSize`, MB)."""
    if n_bytes > limit_mb * MIB:
        return f"file is {n_bytes / MIB:.1f} MB, over the {limit_mb:g} MB upload limit"
    return None


@dataclass
class Decoded:
    """One input as the model receives it, or why it cannot be used."""

    pixels: torch.Tensor | None  # uint8 (C, H, W) at the model's size; None when unreadable
    notes: list[str] = field(default_factory=list)  # conversions on the way, one short note each
    error: str | None = None
    dicom: DicomTags | None = None  # a DICOM input's identifiers and tags (None otherwise)


def conversion_notes(facts: SourceFacts, preprocess: Preprocess) -> list[str]:
    """Conversions a file with these facts goes through before the model sees it."""
    target = f"{preprocess.size[0]}x{preprocess.size[1]}"
    gray_model = preprocess.channels == 1
    if facts.format == "DICOM":
        return [f"DICOM: windowed to 8 bits, resized to {target} ({preprocess.resize})"]
    mode, (w, h) = facts.mode, facts.size
    notes = []
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and facts.transparent):
        notes.append("transparency (alpha channel) ignored")
    if mode.startswith("I;16") or mode in ("I", "F"):
        notes.append("16-bit image scaled to 8 bits")
    colour = mode not in ("1", "L", "LA", "I", "F") and not mode.startswith("I;16")
    if colour and gray_model:
        notes.append("colour converted to grayscale")
    if not colour and not gray_model:
        notes.append("grayscale repeated to 3 channels")
    if [h, w] != list(preprocess.size):
        notes.append(f"{facts.format} {w}x{h} resized to {target} ({preprocess.resize})")
    return notes


def implausible(arr: np.ndarray, facts: SourceFacts, preprocess: Preprocess) -> str | None:
    """Why a decoded image (uint8 (H, W, C), as read) is no input for this model, or None.

    A model answers any array with a confident-looking probability; a 1x1 pixel, a 49000x1
    strip or a blank page would each get one. These are refused instead, in this one place
    that `cnnlab predict`, the app and the API all pass through."""
    w, h = facts.size
    mh, mw = preprocess.size
    if w * h * MIN_AREA_SHARE_INV < mh * mw:
        return (
            f"{UNUSABLE}: {w}x{h} pixels is far below the model's {mw}x{mh} input (at least "
            f"1/{MIN_AREA_SHARE_INV} of its pixels are needed)"
        )
    if max(w, h) > MAX_ASPECT * min(w, h):
        return (
            f"{UNUSABLE}: {w}x{h} is a strip ({max(w, h) / min(w, h):.0f}:1; at most "
            f"{MAX_ASPECT:g}:1 is accepted)"
        )
    step = max(1, int(np.sqrt(arr.shape[0] * arr.shape[1] / 65536)))  # ~256x256 samples
    spread = float(arr[::step, ::step].astype(np.float32).std())
    if spread < MIN_SPREAD:
        return f"{UNUSABLE}: the image is blank (nearly one value everywhere; spread {spread:.1f})"
    return None


def decode_one(source: str | Path | bytes, preprocess: Preprocess) -> Decoded:
    """A file (or its bytes) through the bundle's preprocessing; a bad one comes back with
    `error` set (decoders raise several kinds: each is the file's problem, not the caller's),
    as does one that is no usable input for the model (`implausible`)."""
    try:
        arr, facts = read_image_facts(source, "grayscale" if preprocess.channels == 1 else "rgb")
        problem = implausible(arr, facts, preprocess)
        if problem is not None:
            return Decoded(None, [], problem, facts.dicom)
        img = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        pixels = fit_image(img, preprocess.size, preprocess.resize)
    except (ImageReadError, ValueError, RuntimeError, OSError) as e:
        return Decoded(None, [], str(e), getattr(e, "dicom", None))
    return Decoded(pixels, conversion_notes(facts, preprocess), dicom=facts.dicom)


def decode_batch(sources: list[str | Path | bytes], preprocess: Preprocess) -> list[Decoded]:
    """Every source decoded once, in order: what `predict_sources` and the API run the model on."""
    return [decode_one(s, preprocess) for s in sources]


def batch_pixels(sources: list[bytes]) -> int:
    """The pixels a batch of uploads claims in its headers, counted before anything is decoded
    (the API refuses a request over its pixel budget on this figure)."""
    return sum(claimed_pixels(s) for s in sources)


def upload_notes(data: bytes, preprocess: Preprocess) -> list[str]:
    """The notes for one upload (none when it cannot be read: the error says why)."""
    return decode_one(data, preprocess).notes
