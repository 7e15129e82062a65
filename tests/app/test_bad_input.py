"""Bad uploads: each gets a clear message in the page, the app carries on with the next
upload, and nothing is written to disk (checked with a Python audit hook on every open)."""

from __future__ import annotations

import os
import sys

import pytest
from streamlit import config

from tests.app.conftest import (
    corrupt_jpeg,
    dicom_without_pixels,
    encode,
    huge_png,
    png16,
    rgba_png,
    verdicts,
    xray_like,
)

WRITES: list[str] | None = None  # while a list, every file opened for writing is added to it
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _audit(event: str, args: tuple) -> None:
    if WRITES is None or event not in ("open", "os.open"):
        return
    path, mode, flags = (args + (None, None))[:3]
    writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
        isinstance(flags, int) and flags & WRITE_FLAGS
    )
    if writing and path not in ("/dev/null",):
        WRITES.append(str(path))


sys.addaudithook(_audit)  # hooks cannot be removed; it records only while WRITES is a list


@pytest.fixture
def no_writes():
    global WRITES
    WRITES = []
    try:
        yield WRITES
    finally:
        WRITES = None


BAD = {
    "notes.png": (b"These are my notes, not an image.\n" * 20, "not a recognised image format"),
    "cut.jpg": (corrupt_jpeg(), "corrupt or truncated image"),
    "empty.png": (b"", "empty file (0 bytes)"),
    "bomb.png": (huge_png(), "too large to decode safely"),
    "nopixels.dcm": (dicom_without_pixels(), "DICOM file has no pixel data"),
}


def test_each_bad_file_gets_its_own_message_and_good_ones_still_work(
    app_env, app_bundle, no_writes
):
    at = app_env(app_bundle).run()
    files = [(name, data, "application/octet-stream") for name, (data, _) in BAD.items()]
    files.insert(2, ("good.png", encode(xray_like(0)), "image/png"))
    at.file_uploader(key="classify_files").set_value(files).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    for name, (_, reason) in BAD.items():
        hit = [e for e in errors if e.startswith(f"**{name}**: cannot be classified")]
        assert len(hit) == 1 and reason in hit[0], (name, errors)
    assert len(verdicts(at)) == 1 and verdicts(at)[0].startswith("Pneumonia likely")
    table = at.dataframe[0].value
    assert list(table["file"]) == [f[0] for f in files]
    assert table["error"].notna().sum() == len(BAD)
    # the next upload works as if nothing had happened
    at.file_uploader(key="classify_files").set_value(
        [("next.png", encode(xray_like(3)), "image/png")]
    ).run()
    assert not at.exception and len(verdicts(at)) == 1
    assert not [e for e in at.error if "cannot be classified" in e.value]
    assert no_writes == []


def test_upload_over_the_size_limit_is_refused_and_the_limit_shown(app_env, app_bundle, no_writes):
    before = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 1)
    try:
        at = app_env(app_bundle).run()
        assert "up to 1 MB each" in at.file_uploader(key="classify_files").label
        big = encode(xray_like(0)) + b"\0" * (1024 * 1024)  # a valid PNG, padded past 1 MB
        files = [("big.png", big, "image/png"), ("ok.png", encode(xray_like(1)), "image/png")]
        at.file_uploader(key="classify_files").set_value(files).run()
        assert not at.exception
        assert [e.value for e in at.error if "cannot be classified" in e.value] == [
            "**big.png**: cannot be classified: file is 1.0 MB, over the 1 MB upload limit"
        ]
        assert len(verdicts(at)) == 1
    finally:
        config.set_option("server.maxUploadSize", before)
    assert no_writes == []


@pytest.mark.parametrize(
    "name, data, note",
    [("alpha.png", rgba_png(), "transparency (alpha channel) ignored"),
     ("deep.png", png16(), "16-bit image scaled to 8 bits")],
)  # fmt: skip
def test_rgba_and_16_bit_png_are_classified_with_a_note(
    app_env, app_bundle, no_writes, name, data, note
):
    at = app_env(app_bundle).run()
    at.file_uploader(key="classify_files").set_value([(name, data, "image/png")]).run()
    assert not at.exception and not [e for e in at.error if "cannot be classified" in e.value]
    assert verdicts(at)[0].startswith("Pneumonia likely")
    assert any(note in c.value for c in at.caption)
    assert no_writes == []


def test_the_write_detector_sees_writes(tmp_path, no_writes):
    (tmp_path / "x.txt").write_text("x")
    os.close(os.open(tmp_path / "y.bin", os.O_WRONLY | os.O_CREAT))
    assert no_writes == [str(tmp_path / "x.txt"), str(tmp_path / "y.bin")]
