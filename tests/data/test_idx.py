"""IDX files: gz and raw, header checks, the t10k split alone."""

import gzip

import numpy as np
import pytest
import torch

from cnnlab.data import load_source
from cnnlab.data.idx import read_idx
from cnnlab.errors import CnnlabError
from tests.conftest import digit_images, write_idx


def test_gz_and_raw_read_identically(tmp_path):
    x, _ = digit_images(7)
    a = read_idx(write_idx(tmp_path / "a.gz", x, gz=True))
    b = read_idx(write_idx(tmp_path / "b", x, gz=False))
    assert a.shape == (7, 28, 28) and a.dtype == np.uint8
    assert np.array_equal(a, x) and np.array_equal(b, x)


def test_load_source_finds_both_splits(idx_dir):
    loaded = load_source(str(idx_dir))
    assert loaded.format == "idx"
    assert set(loaded.splits) == {"train", "test"}
    train = loaded.splits["train"]
    assert train.images.shape == (600, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64
    assert train.classes == [str(i) for i in range(10)]


def test_only_test_files_present(tmp_path):
    x, y = digit_images(30)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", y, gz=False)
    loaded = load_source(str(tmp_path), "test")
    assert len(loaded.splits["test"]) == 30
    with pytest.raises(CnnlabError, match="no 'train' split"):
        load_source(str(tmp_path), "train")


def test_wrong_magic_number(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(b"\x12\x34\x56\x78" + b"\0" * 100)
    )
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(CnnlabError, match="wrong magic number"):
        load_source(str(tmp_path))


def test_truncated_file(tmp_path):
    x, y = digit_images(10)
    path = write_idx(tmp_path / "train-images-idx3-ubyte", x, gz=False)
    path.write_bytes(path.read_bytes()[:-100])
    write_idx(tmp_path / "train-labels-idx1-ubyte", y, gz=False)
    with pytest.raises(CnnlabError, match="truncated"):
        load_source(str(tmp_path))


def test_label_count_mismatch(tmp_path):
    x, y = digit_images(10)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y[:5])
    with pytest.raises(CnnlabError, match="5 labels for 10 images"):
        load_source(str(tmp_path))


def test_broken_gzip(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + b"garbage")
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(CnnlabError, match="cannot read IDX file"):
        load_source(str(tmp_path))
