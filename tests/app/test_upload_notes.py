"""What the app tells users about their file: the size limit, and silent conversions."""

from __future__ import annotations

import numpy as np

from cnnlab.data.images import read_image
from cnnlab.data.intake import upload_notes, upload_too_large
from cnnlab.data.preprocess import Preprocess
from tests.app.conftest import dicom_image, encode, huge_png, png16, rgba_png, xray_like

GRAY = Preprocess(1, [64, 64], [0.5], [0.25])
RGB = Preprocess(3, [96, 96], [0.5] * 3, [0.25] * 3)


def test_size_limit_message():
    assert upload_too_large(32 * 2**20, 32) is None
    assert upload_too_large(33 * 2**20, 32) == "file is 33.0 MB, over the 32 MB upload limit"


def test_notes_for_rgba_16_bit_dicom_and_resizing():
    assert upload_notes(rgba_png(), RGB) == ["transparency (alpha channel) ignored"]
    assert upload_notes(png16(), GRAY) == [
        "16-bit image scaled to 8 bits", "PNG 96x96 resized to 64x64 (stretch)"
    ]  # fmt: skip
    assert upload_notes(encode(xray_like()), RGB) == ["grayscale repeated to 3 channels"]
    rgb = np.dstack([xray_like()] * 3)
    assert upload_notes(encode(rgb, "JPEG"), GRAY)[0] == "colour converted to grayscale"
    assert upload_notes(dicom_image(xray_like()), GRAY) == [
        "DICOM: windowed to 8 bits, resized to 64x64 (stretch)"
    ]


def test_notes_match_what_the_reader_does():
    # the notes describe real conversions: the 16-bit image keeps its range in 8 bits
    arr = read_image(png16(), "grayscale")
    assert arr.dtype == np.uint8 and abs(int(arr.mean()) - int(xray_like(2).mean())) <= 1


def test_unreadable_or_bomb_headers_give_no_notes_and_decode_nothing():
    assert upload_notes(b"hello, not an image", GRAY) == []
    assert upload_notes(b"", GRAY) == []
    assert upload_notes(huge_png(), GRAY) == []  # Pillow refuses the header; reader says why
