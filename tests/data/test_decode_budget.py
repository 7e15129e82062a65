"""Decoding a folder at a size that cannot fit (the decode cache's disk, or memory with the
cache off) is refused from the first image, naming data.image_size, before the rest is decoded:
300 small PNGs at `image_size: [4096, 4096]` would have written 15 GB."""

from __future__ import annotations

from collections import namedtuple

import pytest

from cnnlab.config import DataConfig
from cnnlab.data import decode, prepare_data
from cnnlab.errors import CnnlabError
from tests.conftest import write_image_folder


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))


def test_a_decode_the_cache_disk_cannot_hold_is_refused_from_the_first_image(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "d", ["a", "b"], 20, size=8)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(decode.shutil, "disk_usage", lambda p: usage(10**9, 0, 100 * 10**6))
    seen = []
    real = decode.decode_file
    monkeypatch.setattr(decode, "decode_file", lambda *a: seen.append(a) or real(*a))
    cfg = DataConfig(source=str(root), image_size=[1024, 1024], val_fraction=0.5)
    with pytest.raises(CnnlabError, match=r"40 images at 1024x1024x3 need 125\.8 MB in the decode "
                       r"cache .*100\.0 MB free.*lower data\.image_size"):  # fmt: skip
        prepare_data(cfg)
    assert len(seen) < 40
    assert not list((tmp_path / "cache").rglob("*.u8"))


def test_a_decode_memory_cannot_hold_is_refused_with_the_cache_off(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "d", ["a", "b"], 20, size=8, mode="L")
    monkeypatch.setattr(decode, "memory_bytes", lambda: 20 * 10**6)
    cfg = DataConfig(source=str(root), image_size=[1024, 1024], val_fraction=0.5, cache=False)
    with pytest.raises(CnnlabError, match=r"40 images at 1024x1024x1 need 41\.9 MB in memory "
                       r"\(20\.0 MB here\).*lower data\.image_size"):  # fmt: skip
        prepare_data(cfg)
