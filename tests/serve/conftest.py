"""Small bundles made without training (random weights are enough to compare engines) and
real image files in the formats the API accepts."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.bundle import load_bundle, save_bundle
from cnnlab.data.preprocess import Preprocess
from cnnlab.models import create_model
from tests.conftest import digit_images


def make_bundle(
    out: Path, binary: bool = False, seed: int = 0, decision: dict | None = None, tta: str = "none"
):
    """A fastnet bundle on 28x28 grayscale digits (10 classes) or a binary one (2 classes)."""
    torch.manual_seed(seed)
    args = {"in_channels": 1, "num_classes": 1 if binary else 10, "input_size": [28, 28],
            "widths": [4, 8], "tta": tta}  # fmt: skip
    model = create_model("fastnet", **args)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    classes = ["NORMAL", "PNEUMONIA"] if binary else [str(i) for i in range(10)]
    pre = Preprocess(channels=1, size=[28, 28], mean=[0.13], std=[0.31], resize="stretch")
    save_bundle(out, model, "fastnet", args, pre, classes,
                class_mode="binary" if binary else "categorical", decision=decision)  # fmt: skip
    return load_bundle(out)


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(arr: np.ndarray, size: int | None = None) -> bytes:
    img = Image.fromarray(arr).convert("RGB")  # an RGB JPEG into a grayscale model
    if size:
        img = img.resize((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return digit_images(24, seed=5)[0]


@pytest.fixture(scope="module")
def digit_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundles") / "digits")


@pytest.fixture(scope="module")
def binary_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundles") / "xray", binary=True, seed=1,
                       decision={"threshold": 0.3, "temperature": 2.0, "policy": "test"})  # fmt: skip
