"""Reading one image file, safely, and fitting it to a model's input.

Training (image folders) and serving (CLI predict, app, API) call the same two functions,
`read_image` and `fit_image`, so a model never sees pixels prepared two different ways.
The kinds of file read are a table (`IMAGE_FORMATS`: DICOM, then whatever Pillow reads); the
suffixes image folders list and file pickers accept are derived from it.
"""

from __future__ import annotations

import io
import platform
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.data.dicom import DicomTags, open_dicom, read_dicom_tags
from cnnlab.errors import ImageReadError
from cnnlab.fileio import read_capped

MAX_PIXELS = 50_000_000  # refuse decompression bombs before decoding (a 20000x20000 PNG is 400 MP)

_ORIENTATION_KEYS = {"exif", "xmp", "XML:com.adobe.xmp"}


def _to_uint8(img: Image.Image) -> np.ndarray:
    """High-bit-depth grayscale (16-bit PNG/TIFF, float) scaled to 0-255 by its nominal range."""
    arr = np.array(img)  # a writable copy: tensors made from it may be modified
    if arr.dtype == np.uint8:
        return arr
    if img.mode.startswith("I;16") or arr.dtype == np.uint16:
        return (arr.astype(np.float32) / 257.0).round().clip(0, 255).astype(np.uint8)
    arr = arr.astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    if img.mode == "F" and lo >= 0.0 and hi <= 1.0:
        return (arr * 255).round().astype(np.uint8)
    if hi <= 255 and lo >= 0:
        return arr.round().astype(np.uint8)
    return ((arr - lo) / max(hi - lo, 1e-12) * 255).round().astype(np.uint8)


def is_dicom(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def open_image(
    data: bytes, name: str = "upload", draft: tuple[int, int] | None = None
) -> Image.Image:
    """Decode image bytes with Pillow, size-checked before decoding and EXIF-oriented after.

    `draft` lets a JPEG decode at a reduced scale (still every block, so truncation shows).
    """
    return _open_pillow(data, name, draft)[0]


def _open_pillow(
    data: bytes, name: str, draft: tuple[int, int] | None = None
) -> tuple[Image.Image, SourceFacts]:
    """The decoded image and what it was (format, mode, displayed size: before any draft)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageReadError(
                    f"image is {w}x{h} ({w * h / 1e6:.0f} MP), over the {MAX_PIXELS / 1e6:.0f} MP limit"
                )
            fmt, mode, transparent = str(img.format), img.mode, "transparency" in img.info
            if draft is not None and img.format == "JPEG":
                img.draft("L", draft)
            img.load()
            loaded = img.size
            # a JPEG keeps its orientation in EXIF or XMP; without either there is nothing to turn
            if img.format != "JPEG" or _ORIENTATION_KEYS & img.info.keys():
                ImageOps.exif_transpose(img, in_place=True)  # keeps img.format; no copy
            if img.size != loaded and img.size == loaded[::-1]:
                w, h = h, w  # shown turned by 90 degrees
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(
            f"image too large to decode safely (decompression bomb?): {e}"
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError("not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as e:
        raise ImageReadError(f"corrupt or truncated image: {e}") from None
    return img, SourceFacts(fmt, mode, (w, h), transparent)


def _pil_to_array(img: Image.Image) -> np.ndarray:
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        gray = img.convert("L") if img.mode in ("1", "LA") else img
        return _to_uint8(gray)[..., None]
    return np.array(img.convert("RGB"))  # CMYK, YCbCr, RGBA (alpha dropped), ...


def _to_mode(arr: np.ndarray, color_mode: str) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[..., None]
    if color_mode == "grayscale" and arr.shape[2] == 3:
        gray = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        arr = gray.round().clip(0, 255).astype(np.uint8)[..., None]
    elif color_mode == "rgb" and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr)


# ----------------------------------------------------------------------------- readers by table


@dataclass(frozen=True)
class SourceFacts:
    """What an image file was before it became pixels (the upload notes say what changed)."""

    format: str  # "PNG", "JPEG", ... (Pillow's name) or "DICOM"
    mode: str  # Pillow's mode: "RGBA", "I;16", "P", ...; "" for DICOM
    size: tuple[int, int]  # (width, height), as shown (EXIF orientation applied)
    transparent: bool = False  # a palette image with a transparent colour
    dicom: DicomTags | None = None  # a DICOM file's identifiers and tags, from the same read


@dataclass(frozen=True)
class ImageFormat:
    """One kind of image file: its name, its suffixes, how to recognise it, how to read it."""

    name: str
    label: str  # what people call such files: "DICOM", "JPG, PNG, ..."
    suffixes: tuple[str, ...]
    detect: Callable[[bytes, str], bool]  # (the file's first 132 bytes, its name) -> is it one?
    # (bytes, name, draft) -> uint8 (H, W, C), C = 1 or 3, and the facts; `draft` (w, h) lets a
    # reader decode at a reduced scale where it can (the audit's hashes need no more)
    read: Callable[[bytes, str, tuple[int, int] | None], tuple[np.ndarray, SourceFacts]]
    pixels: Callable[[bytes, str], int]  # the pixel count the header claims, without decoding


def _is_dicom_file(head: bytes, name: str) -> bool:
    return is_dicom(head) or name.lower().endswith((".dcm", ".dicom"))


def _read_dicom(data: bytes, name: str, draft=None) -> tuple[np.ndarray, SourceFacts]:
    arr, tags = read_dicom_tags(data, MAX_PIXELS)
    return arr, SourceFacts("DICOM", "", (arr.shape[1], arr.shape[0]), dicom=tags)


def _dicom_pixels(data: bytes, name: str) -> int:
    ds = open_dicom(data, header_only=True)
    return int(getattr(ds, "Rows", 0) or 0) * int(getattr(ds, "Columns", 0) or 0)


def _read_pillow(data: bytes, name: str, draft=None) -> tuple[np.ndarray, SourceFacts]:
    img, facts = _open_pillow(data, name, draft)
    return _pil_to_array(img), facts


def _pillow_pixels(data: bytes, name: str) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        w, h = Image.open(io.BytesIO(data)).size  # the header only
    return w * h


# the first format whose `detect` says yes reads the file; Pillow takes whatever is left
IMAGE_FORMATS = (
    ImageFormat("DICOM", "DICOM", (".dcm", ".dicom"), _is_dicom_file, _read_dicom, _dicom_pixels),
    ImageFormat("image", "JPG, PNG, BMP, TIFF, WebP, GIF",
                (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"),
                lambda head, name: True, _read_pillow, _pillow_pixels),
)  # fmt: skip
IMAGE_SUFFIXES = frozenset(s for f in IMAGE_FORMATS for s in f.suffixes)
UPLOAD_TYPES = [s.lstrip(".") for f in IMAGE_FORMATS for s in f.suffixes]  # for file pickers
UPLOAD_KINDS = " or ".join(f.label for f in reversed(IMAGE_FORMATS))  # "JPG, PNG, ... or DICOM"


def image_format(head: bytes, name: str) -> ImageFormat:
    """The table's entry for a file with these first bytes and this name."""
    return next(f for f in IMAGE_FORMATS if f.detect(head, name))


def read_source(source: str | Path | bytes) -> bytes:
    """A file's bytes (capped: `cnnlab.fileio.read_capped`) or the bytes given; ImageReadError
    for a file that cannot be read (missing, a folder, a FIFO, over the size limit)."""
    if isinstance(source, bytes):
        return source
    try:
        return read_capped(source)
    except OSError as e:
        raise ImageReadError(f"cannot read file: {e.strerror or e}") from None


def read_image_facts(
    source: str | Path | bytes,
    color_mode: str = "auto",
    *,
    name: str | None = None,
    draft: tuple[int, int] | None = None,
) -> tuple[np.ndarray, SourceFacts]:
    """`read_image`, and what the file was before (format, mode, size). The one decode path:
    predict, the app, the API, training's image folders and the audit all come through here.
    `name` (default: the path) picks DICOM by suffix; `draft` allows a reduced-scale decode."""
    name = name or ("upload" if isinstance(source, bytes) else str(source))
    data = read_source(source)
    if not data:
        raise ImageReadError("empty file (0 bytes)")
    try:
        arr, facts = image_format(data[:132], name).read(data, name, draft)
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageReadError("not enough memory to decode this image") from None
    except Exception as e:  # noqa: BLE001 - a decoder's bug on one odd file is that file's problem
        raise ImageReadError(f"cannot decode: {type(e).__name__}: {e}") from None
    return _to_mode(arr, color_mode), facts


def claimed_pixels(data: bytes, name: str = "upload") -> int:
    """How many pixels an image's header says it holds, read without decoding (0 when the
    header cannot be read: decoding will then say why): for a per-request pixel budget."""
    if not data:
        return 0
    try:
        return max(0, int(image_format(data[:132], name).pixels(data, name)))
    except Exception:  # noqa: BLE001 - any unreadable header is the decoder's to report
        return 0


def read_image(source: str | Path | bytes, color_mode: str = "auto") -> np.ndarray:
    """Decode a file (or its bytes) to uint8 (H, W, C), C = 1 or 3, EXIF orientation applied.

    `color_mode`: "grayscale", "rgb", or "auto" (1 channel when the image is grayscale).
    Raises ImageReadError for anything that is not a usable image.
    """
    return read_image_facts(source, color_mode)[0]


def match_channels(img: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (..., C, H, W) to `channels` channels: gray repeated to RGB, RGB to luminance."""
    c = img.shape[-3]
    if c == channels:
        return img
    if c == 1 and channels == 3:
        return img.expand(*img.shape[:-3], 3, *img.shape[-2:]).contiguous()
    if c == 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        return (img.float() * w).sum(-3, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {c} channels to {channels}")


def fit_image(
    img: torch.Tensor, size: tuple[int, int] | list[int], policy: str = "stretch"
) -> torch.Tensor:
    """uint8 (C, H, W) or (N, C, H, W) to `size` by the bundle's resize policy.

    stretch: resize to size (aspect ratio changes); letterbox: fit inside, pad with black;
    center_crop: fill, then crop the centre.
    """
    h, w = int(size[0]), int(size[1])
    ih, iw = img.shape[-2:]
    if (ih, iw) == (h, w):
        return img
    if policy == "stretch":
        return resize(img, h, w)
    if policy == "letterbox":
        scale = min(h / ih, w / iw)
        nh, nw = max(1, round(ih * scale)), max(1, round(iw * scale))
        top, left = (h - nh) // 2, (w - nw) // 2
        return F.pad(resize(img, nh, nw), (left, w - nw - left, top, h - nh - top), value=0)
    if policy == "center_crop":
        scale = max(h / ih, w / iw)
        nh, nw = max(h, round(ih * scale)), max(w, round(iw * scale))
        top, left = int(round((nh - h) / 2.0)), int(round((nw - w) / 2.0))
        return resize(img, nh, nw)[..., top : top + h, left : left + w]
    raise ValueError(f"unknown resize policy {policy!r}")


def resize(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Antialiased bilinear resize of uint8 (..., C, H, W), pixel for pixel what torchvision's
    `resize` gives (tests compare them), without importing torchvision: that costs 2 s, which
    every process paid on its first image (a served model's first request, a one-image
    predict). PyTorch resizes uint8 natively on AVX2/AVX512 and ARM; elsewhere in float,
    rounded, as torchvision does there."""
    if tuple(img.shape[-2:]) == (h, w) or img.numel() == 0:
        return img
    shape = img.shape
    x = img.reshape(-1, *shape[-3:])
    cast = img.dtype == torch.uint8 and not (
        torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
        or platform.machine() in ("aarch64", "arm64")
    )
    out = F.interpolate(x.float() if cast else x, size=[h, w], mode="bilinear",
                        align_corners=False, antialias=True)  # fmt: skip
    if cast:
        out = out.round_().to(img.dtype)
    return out.reshape(*shape[:-2], h, w)


def load_image_tensor(
    source: str | Path | bytes,
    channels: int,
    size: tuple[int, int] | list[int],
    policy: str = "stretch",
) -> torch.Tensor:
    """Read and fit one image: uint8 (C, H, W) ready for `Preprocess.normalize`."""
    return load_image_facts(source, channels, size, policy)[0]


def load_image_facts(
    source: str | Path | bytes,
    channels: int,
    size: tuple[int, int] | list[int],
    policy: str = "stretch",
) -> tuple[torch.Tensor, SourceFacts]:
    """`load_image_tensor`, and what the file was before (for the notes on what changed)."""
    arr, facts = read_image_facts(source, "grayscale" if channels == 1 else "rgb")
    return fit_image(torch.from_numpy(arr).permute(2, 0, 1).contiguous(), size, policy), facts
