"""Shared fixtures: fake datasets written to temp folders, the real data in ../shared/data, the CLI."""

from __future__ import annotations

import gzip
import io
import itertools
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Streamlit's script runner (AppTest) installs the app script as `__main__` and leaves it
    there; a later test in the same worker that spawns processes (DDP) would then run the app
    script in every child. Each test gets back the `__main__` it started with."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def _records_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("records")


_STORES = itertools.count()


@pytest.fixture(autouse=True)
def _records_in_tmp(_records_folder, monkeypatch):
    """Every decision a test makes (CLI subprocesses included) goes to a store of its own, never
    into the user's data folder (a folder of its own, since rotation writes beside it)."""
    folder = _records_folder / str(next(_STORES))
    folder.mkdir()
    monkeypatch.setenv("CNNLAB_RECORDS", str(folder / "decisions.db"))


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for the test: many tiny ops (or several Python threads) on two cores
    run far faster than contended pools of two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data. Missing data fails under CI (CI=true) and skips elsewhere."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"real data missing: {path} (CI must run with ../shared beside the checkout)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """Write an IDX file (the MNIST format): magic, big-endian dims, then raw uint8 data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def digit_images(n: int, seed: int = 0, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """A learnable toy set: class k is a bright bar at row band k on a noisy background."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 40, (n, size, size)).astype(np.uint8)
    band = size // 10
    for i, k in enumerate(labels):
        images[i, k * band : (k + 1) * band, 2:-2] = 220
    return images, labels.astype(np.uint8)


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """A tiny MNIST-format folder: 600 train and 200 test images, gzipped IDX."""
    d = tmp_path / "idx"
    d.mkdir()
    x, y = digit_images(600, 0)
    write_idx(d / "train-images-idx3-ubyte.gz", x)
    write_idx(d / "train-labels-idx1-ubyte.gz", y)
    x, y = digit_images(200, 1)
    write_idx(d / "t10k-images-idx3-ubyte.gz", x)
    write_idx(d / "t10k-labels-idx1-ubyte.gz", y)
    return d


def write_image_folder(
    root: Path,
    classes: list[str],
    per_class: int,
    size: int = 32,
    mode: str = "RGB",
    splits: list[str] | None = None,
    suffix: str = ".png",
    seed: int = 0,
) -> Path:
    """root/<split>/<class>/img_i.png (or root/<class>/... when splits is None); class k has colour k."""
    rng = np.random.default_rng(seed)
    for split in splits or [None]:
        base = root / split if split else root
        for k, name in enumerate(classes):
            (base / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = rng.integers(0, 30, (size, size, 3)).astype(np.uint8)
                arr[..., k % 3] += np.uint8(150 + 20 * (k // 3))
                Image.fromarray(arr).convert(mode).save(base / name / f"img_{i}{suffix}")
    return root


@pytest.fixture
def run_cli():
    """Run `python -m cnnlab ARGS` in a subprocess; returns CompletedProcess (text)."""

    def run(*args: str, cwd: Path | None = None, timeout: int = 300, env: dict | None = None):
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True, text=True,
                              cwd=cwd or ROOT, timeout=timeout, env=full_env)  # fmt: skip

    return run


def dicom_bytes(arr: np.ndarray | None, modality: str = "DX") -> bytes:
    """A minimal 16-bit MONOCHROME2 DICOM file holding `arr` (uint8) scaled to 12 bits; with
    `arr` None, a valid DICOM file that holds no pixel data."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = modality, "TEST"
    if arr is not None:
        ds.Rows, ds.Columns = arr.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = (arr.astype(np.uint16) * 16).tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def tiny_recipe_dict(source: Path, name: str = "tiny", **train) -> dict:
    """A recipe that trains a small fastnet on the toy digits in a second or two."""
    return {
        "name": name,
        "data": {"source": str(source), "val_fraction": 0.2},
        "model": {"name": "fastnet", "args": {"widths": [8, 16]}},
        "train": {"epochs": 2, "batch_size": 64, "optimizer": "sgd", "lr": 0.1,
                  "schedule": "onecycle", "threads": 1, "label_smoothing": 0.1, **train},
    }  # fmt: skip


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> list[Path]:
    """Two training runs written by `train_recipe` (bundle, history, steps, TensorBoard events):
    `tiny-a` (2 epochs) and `tiny-b` (1 epoch, another learning rate), under one runs/ folder."""
    from cnnlab.config import recipe_from_dict
    from cnnlab.train.run import train_recipe

    base = tmp_path_factory.mktemp("tiny-runs")
    data = base / "idx"
    data.mkdir()
    x, y = digit_images(600, 0)
    write_idx(data / "train-images-idx3-ubyte.gz", x)
    write_idx(data / "train-labels-idx1-ubyte.gz", y)
    runs = []
    for name, train in (("tiny-a", {}), ("tiny-b", {"epochs": 1, "lr": 0.05})):
        recipe = recipe_from_dict(tiny_recipe_dict(data, name, **train))
        runs.append(train_recipe(recipe, out_dir=base / "runs" / name, progress=False).out_dir)
    return runs
