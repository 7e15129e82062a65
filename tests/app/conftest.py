"""App test fixtures: small bundles made in a blink (no training; the medical report computed
by the library on synthetic scores), image bytes of every kind the app must handle, and an
AppTest factory pointed at one bundle and an isolated runs/ folder."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.bundle import save_bundle
from cnnlab.bundle.seal import seal_bundle
from cnnlab.data.preprocess import Preprocess
from cnnlab.evaluate.medical import binary_report
from cnnlab.evaluate.scores import classification_report
from cnnlab.models import create_model
from cnnlab.report.card import medical_card
from tests.conftest import dicom_bytes

APP = str(Path(__file__).resolve().parents[2] / "src" / "cnnlab" / "app" / "main.py")
SIZE = 64


def make_app_bundle(out: Path, binary: bool = True, seed: int = 0) -> Path:
    """A grayscale fastnet bundle (binary NORMAL/PNEUMONIA, or 10 digits) with validation
    metrics and a card like a trained one's: intervals, ROC points, calibration bins."""
    torch.manual_seed(seed)
    k = 1 if binary else 10
    args = {"in_channels": 1, "num_classes": k, "input_size": [SIZE, SIZE], "widths": [4, 8]}
    model = create_model("fastnet", **args)
    if binary:
        with torch.no_grad():  # confident: p(PNEUMONIA) about 0.9 for any image
            model.get_classifier().bias.fill_(2.6)
    classes = ["NORMAL", "PNEUMONIA"] if binary else [str(i) for i in range(10)]
    rng = np.random.default_rng(seed)
    labels = torch.from_numpy(rng.integers(0, len(classes), 120))
    logits = torch.randn(120, k, generator=torch.Generator().manual_seed(seed))
    if binary:
        logits[:, 0] += 2.0 * (labels.float() - 0.5)  # informative: AUC well above 0.5
        decision = {"threshold": 0.37, "temperature": 1.2, "policy": "target_sensitivity:0.95",
                    "policy_text": "sensitivity >= 0.95 on the validation split",
                    "positive_class": "PNEUMONIA"}  # fmt: skip
    else:
        logits[torch.arange(120), labels] += 2.0
        decision = None
    metrics = classification_report(logits, labels, classes, 0.37 if binary else None, 1.2)
    if binary:
        metrics.update(binary_report(logits, labels, classes, 0.37, 1.2, n_boot=100))
    pre = Preprocess(channels=1, size=[SIZE, SIZE], mean=[0.5], std=[0.25], resize="stretch")
    save_bundle(out, model, "fastnet", args, pre, classes,
                class_mode="binary" if binary else "categorical", decision=decision,
                metrics=metrics)  # fmt: skip
    if binary:
        import json

        meta = json.loads((out / "bundle.json").read_text())
        (out / "card.md").write_text(medical_card(meta))
        seal_bundle(out)
    return out


@pytest.fixture(scope="session")
def app_bundle(tmp_path_factory) -> Path:
    return make_app_bundle(tmp_path_factory.mktemp("bundles") / "xray")


@pytest.fixture(scope="session")
def digits_bundle(tmp_path_factory) -> Path:
    return make_app_bundle(tmp_path_factory.mktemp("bundles") / "digits", binary=False, seed=3)


@pytest.fixture
def app_env(monkeypatch, tmp_path):
    """Point the app at one bundle and an empty runs/ folder; returns a factory of AppTests."""
    from streamlit.testing.v1 import AppTest

    runs = tmp_path / "runs"
    runs.mkdir()

    def make(bundle: Path | None, extra_runs: list[Path] | None = None) -> AppTest:
        if bundle is None:
            monkeypatch.delenv("CNNLAB_APP_BUNDLE", raising=False)
        else:
            monkeypatch.setenv("CNNLAB_APP_BUNDLE", str(bundle))
        roots = [runs, *(extra_runs or [])]
        monkeypatch.setenv("CNNLAB_APP_RUNS", ":".join(map(str, roots)))
        return AppTest.from_file(APP, default_timeout=60)

    return make


# ----------------------------------------------------------------------------- image bytes


def verdicts(at) -> list[str]:
    """The Classify page's answers, one per classified image, whatever their colour (red for
    the positive class, green for the other, amber unsure, blue unlike the training images)."""
    boxes = (*at.success, *at.error, *at.warning, *at.info)
    return [
        b.value
        for b in boxes
        if "cannot be classified" not in b.value and "Not for diagnosis" not in b.value
    ]


def xray_like(seed: int = 0, size: int = 96) -> np.ndarray:
    """A gray 'chest': two dark lung fields on a brighter body, with noise."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 170, np.float32) + rng.normal(0, 12, (size, size))
    yy, xx = np.mgrid[:size, :size]
    for cx in (size * 0.32, size * 0.68):
        img[((xx - cx) / (size * 0.17)) ** 2 + ((yy - size * 0.5) / (size * 0.32)) ** 2 < 1] -= 90
    return img.clip(0, 255).astype(np.uint8)


def encode(arr: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr, mode)
    img.save(buf, format=fmt)
    return buf.getvalue()


def rgba_png() -> bytes:
    gray = xray_like(1)
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 128)])
    return encode(rgba)


def png16() -> bytes:
    arr = xray_like(2).astype(np.uint16) * 257
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")  # uint16: mode I;16, a 16-bit PNG
    return buf.getvalue()


def huge_png(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny file whose header claims width x height (a decompression bomb's signature)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width + 1) * 4)  # a few rows; the rest would be missing
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def corrupt_jpeg() -> bytes:
    data = encode(xray_like(3, 128), "JPEG")
    return data[: len(data) // 3]  # cut off mid-scan


def dicom_without_pixels() -> bytes:
    return dicom_bytes(None)


def dicom_image(arr: np.ndarray) -> bytes:
    """A 16-bit MONOCHROME2 DICOM holding `arr` (uint8) scaled to 12 bits."""
    return dicom_bytes(arr)
