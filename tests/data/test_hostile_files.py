"""Data files whose few bytes claim gigabytes (a sparse file, a gzip or deflate bomb, a header
announcing a huge shape, a pickled object array) are one clear error, read capped, before
anything near the claimed size is allocated."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import resource
import struct
import zipfile

import numpy as np
import pytest

from cnnlab.data.cifar import load_cifar_source
from cnnlab.data.idx import read_idx
from cnnlab.data.npz import load_npz
from cnnlab.errors import CnnlabError


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.fixture
def small_cap(monkeypatch):
    monkeypatch.setenv("CNNLAB_MAX_FILE_MB", "1")


def _idx_header(shape: tuple[int, ...]) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, len(shape)) + struct.pack(f">{len(shape)}I", *shape)


def test_an_idx_gzip_bomb_is_refused_while_inflating(tmp_path, small_cap):
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    bomb.write_bytes(gzip.compress(_idx_header((1000, 100, 100)) + bytes(10_000_000)))
    assert bomb.stat().st_size < 50_000
    with pytest.raises(CnnlabError, match=r"train-images-idx3-ubyte\.gz.*over the 1 MB limit"):
        read_idx(bomb)


def test_an_idx_file_is_read_capped(tmp_path):
    sparse = tmp_path / "train-images-idx3-ubyte"
    sparse.write_bytes(_idx_header((10**5, 100, 100)))
    os.truncate(sparse, 2**30)  # sparse: no disk used
    before = _rss()
    with pytest.raises(CnnlabError, match="over the 256 MB limit"):
        read_idx(sparse)
    assert _rss() - before < 2**28


@pytest.mark.parametrize("shape", [(65536, 65536, 65536, 65536), (2**32 - 1,) * 3])
def test_an_idx_header_claiming_a_huge_shape_is_refused(tmp_path, shape):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(_idx_header(shape) + bytes(64))
    with pytest.raises(CnnlabError, match="header says"):
        read_idx(path)


class _ObjectArrayBomb:
    """Unpickles to numpy.ndarray.__setstate__ with an object dtype and 10**12 elements: a
    pickle of a few hundred bytes asking for 8 TB of pointers."""

    def __reduce__(self):
        from numpy.core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, (0,), b"b"),
                (1, (10**12,), np.dtype("O"), False, [1]))  # fmt: skip


def test_a_cifar_batch_with_an_object_array_is_refused(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    (root / "data_batch_1").write_bytes(pickle.dumps({"data": _ObjectArrayBomb(), "labels": [1]}))
    with pytest.raises(CnnlabError, match="data_batch_1.*object"):
        load_cifar_source(tmp_path)


def test_a_cifar_batch_is_read_capped(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    (root / "data_batch_1").write_bytes(b"")
    os.truncate(root / "data_batch_1", 2**30)
    before = _rss()
    with pytest.raises(CnnlabError, match="data_batch_1.*over the 256 MB limit"):
        load_cifar_source(tmp_path)
    assert _rss() - before < 2**28


def _npy(shape: tuple[int, ...], body: bytes, dtype: str = "|u1") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue() + body


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_an_npz_whose_header_claims_a_terabyte_is_refused(tmp_path, compression):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("train_images.npy", _npy((10**6, 1000, 1000), bytes(1_000_000)))
        zf.writestr("train_labels.npy", _npy((10**6,), bytes(1000)))
    before = _rss()
    with pytest.raises(
        CnnlabError, match=r"bomb\.npz: train_images \(1,000,000x1,000x1,000\) .*1,000\.0 GB"
    ):
        load_npz(path)
    assert _rss() - before < 2**28


def test_an_npz_with_an_object_array_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("train_images.npy", _npy((2,), b"", dtype="|O"))
        zf.writestr("train_labels.npy", _npy((2,), bytes(2)))
    with pytest.raises(CnnlabError, match="obj.npz"):
        load_npz(path)
