"""Image folders: layouts, class order, modes and sizes, formats, the decode cache, archives."""

from __future__ import annotations

import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.config import DataConfig
from cnnlab.data import decode, load_source, prepare_data
from cnnlab.data.archives import extraction_dir
from cnnlab.data.folder import find_folder_root, scan_split
from cnnlab.errors import CnnlabError
from tests.conftest import write_image_folder


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))


def cached_keys(tmp_path: Path) -> set[str]:
    folder = tmp_path / "cache" / "decoded"
    return {p.stem for p in folder.glob("*.json")} if folder.is_dir() else set()


def test_split_layout_aliases_and_stable_class_order(tmp_path):
    root = tmp_path / "d"
    write_image_folder(root, ["dog", "cat"], 3, splits=["train", "test"])
    write_image_folder(root, ["dog"], 2, splits=["validation"])  # a split lacking a class
    loaded = load_source(str(root))
    assert set(loaded.splits) == {"train", "val", "test"}
    for data in loaded.splits.values():
        assert data.classes == ["cat", "dog"]  # sorted names, the same in every split
        for path, label in zip(data.paths, data.labels.tolist(), strict=True):
            assert Path(path).parent.name == data.classes[label]
    assert loaded.splits["val"].labels.tolist() == [1, 1]
    only_test = load_source(str(root), "test")
    assert set(only_test.splits) == {"test"} and len(only_test.splits["test"]) == 6
    only_test_folder = write_image_folder(tmp_path / "e", ["a"], 1, splits=["test"])
    with pytest.raises(CnnlabError, match="has no 'train' folder"):
        load_source(str(only_test_folder), "train")


def test_class_layout_and_wrapper_folder(tmp_path):
    write_image_folder(tmp_path / "wrap" / "pets", ["b", "a"], 2)
    assert find_folder_root(tmp_path / "wrap") == tmp_path / "wrap" / "pets"
    loaded = load_source(str(tmp_path / "wrap"))
    data = loaded.splits["train"]
    assert data.classes == ["a", "b"] and data.class_counts() == {"a": 2, "b": 2}
    # red class k=0 is "b" (written first), so its images are red-dominant
    red = data.images[data.labels == 1].float().mean(dim=(0, 2, 3))
    assert red[0] > red[1] + 100


def test_color_modes_and_target_size(tmp_path):
    root = write_image_folder(tmp_path / "d", ["x", "y"], 2, size=20, mode="L")
    gray = load_source(str(root)).splits["train"]
    assert gray.channels == 1  # auto keeps gray images at one channel
    rgb = load_source(str(root), color_mode="rgb", image_size=[12, 10]).splits["train"]
    assert tuple(rgb.images.shape) == (4, 3, 12, 10)
    assert torch.equal(rgb.images[:, 0], rgb.images[:, 2])  # gray repeated, not invented
    # one colour image among gray ones, auto: everything becomes RGB
    Image.fromarray(np.full((20, 20, 3), (250, 0, 0), np.uint8)).save(root / "x" / "red.png")
    mixed = load_source(str(root)).splits["train"]
    assert mixed.channels == 3 and len(mixed) == 5


def test_differing_sizes_need_image_size(tmp_path):
    root = write_image_folder(tmp_path / "d", ["x", "y"], 2, size=16)
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(root / "y" / "odd.png")
    with pytest.raises(CnnlabError, match="differ in size.*data.image_size"):
        load_source(str(root))
    assert len(load_source(str(root), image_size=[16, 16]).splits["train"]) == 5


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP", "JPEG"])
def test_formats_decode_to_the_right_pixels(tmp_path, fmt):
    rng = np.random.default_rng(1)
    arr = np.kron(rng.integers(0, 256, (4, 4, 3)), np.ones((4, 4, 1))).astype(np.uint8)
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        kwargs = {"WEBP": {"lossless": True}, "JPEG": {"quality": 95, "subsampling": 0}}
        Image.fromarray(arr).save(
            tmp_path / "d" / cls / f"img.{fmt.lower()}", fmt, **kwargs.get(fmt, {})
        )
    data = load_source(str(tmp_path / "d")).splits["train"]
    err = (data.images[0].permute(1, 2, 0).numpy().astype(int) - arr).__abs__()
    assert err.mean() < (6 if fmt == "JPEG" else 1e-9)


def test_cache_hit_skips_decoding_and_changes_invalidate_it(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "d", ["a", "b"], 3)
    first = load_source(str(root)).splits["train"]
    assert len(cached_keys(tmp_path)) == 1
    assert not list((tmp_path / "cache" / "decoded").glob(".*"))  # no temp files left

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(decode, "decode_file", no_decoding)
    second = load_source(str(root)).splits["train"]
    assert torch.equal(first.images, second.images) and second.paths == first.paths
    monkeypatch.undo()
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))

    # another size, another mode, a touched file: new keys
    load_source(str(root), image_size=[8, 8])
    load_source(str(root), color_mode="grayscale")
    os.utime(root / "a" / "img_0.png", ns=(1, 1))
    load_source(str(root))
    assert len(cached_keys(tmp_path)) == 3  # the touched folder's entry replaced the old one
    assert len(list((tmp_path / "cache" / "decoded").glob("*.u8"))) == 3


def test_damaged_cache_is_decoded_again(tmp_path):
    root = write_image_folder(tmp_path / "d", ["a", "b"], 3)
    first = load_source(str(root)).splits["train"].images.clone()
    (key,) = cached_keys(tmp_path)
    data_file = tmp_path / "cache" / "decoded" / f"{key}.u8"
    data_file.write_bytes(data_file.read_bytes()[:10])  # truncated by a crash elsewhere
    assert torch.equal(load_source(str(root)).splits["train"].images, first)
    meta = json.loads((tmp_path / "cache" / "decoded" / f"{key}.json").read_text())
    assert meta["shape"] == [6, 3, 32, 32] and data_file.stat().st_size == 6 * 3 * 32 * 32


def test_cache_off_writes_nothing(tmp_path):
    root = write_image_folder(tmp_path / "d", ["a", "b"], 2)
    cfg = DataConfig(source=str(root), cache=False, val_fraction=0.5)
    prepared = prepare_data(cfg)
    assert len(prepared.train) + len(prepared.val) == 4
    assert cached_keys(tmp_path) == set()


def test_processes_threads_and_serial_agree(tmp_path):
    root = write_image_folder(tmp_path / "d", ["a", "b"], 40, size=12, suffix=".jpg")
    lst = scan_split(root)
    out = {
        backend: decode.decode_split(lst, (10, 10), "rgb", "stretch", False, 2, backend)
        for backend in ("process", "thread", "serial")
    }
    assert len(out["serial"].files) == 80
    for backend in ("process", "thread"):
        assert torch.equal(out[backend].images, out["serial"].images)
        assert torch.equal(out[backend].labels, out["serial"].labels)


def _archive(root: Path, target: Path) -> Path:
    if target.suffix == ".zip":
        with zipfile.ZipFile(target, "w") as zf:
            for f in sorted(root.rglob("*")):
                zf.write(f, f.relative_to(root.parent))
    else:
        with tarfile.open(target, "w:gz") as tf:
            tf.add(root, arcname=root.name)
    return target


@pytest.mark.parametrize("name", ["set.tar.gz", "set.zip"])
def test_archive_is_extracted_once_and_loaded(tmp_path, name, monkeypatch):
    root = write_image_folder(tmp_path / "pets", ["cat", "dog"], 2, splits=["train", "test"])
    archive = _archive(root, tmp_path / name)
    loaded = load_source(str(archive))
    assert set(loaded.splits) == {"train", "test"} and loaded.classes == ["cat", "dog"]
    assert extraction_dir(archive).is_dir()

    def no_extraction(*args, **kwargs):
        raise AssertionError("extracted twice")

    monkeypatch.setattr(tarfile.TarFile, "extractall", no_extraction)
    monkeypatch.setattr(zipfile.ZipFile, "extractall", no_extraction)
    assert len(load_source(str(archive), "test").splits["test"]) == 4


def test_unsafe_or_corrupt_archive_is_refused(tmp_path):
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../outside.png", b"x")
    with pytest.raises(CnnlabError, match="could reach outside"):
        load_source(str(bad))
    assert not (tmp_path / "cache" / "outside.png").exists()
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(CnnlabError, match="cannot extract"):
        load_source(str(broken))
    assert not extraction_dir(broken).exists()  # nothing half-extracted left behind


def test_binary_class_mode_prepares_two_classes(tmp_path):
    root = write_image_folder(tmp_path / "d", ["normal", "pneumonia"], 10)
    prepared = prepare_data(DataConfig(source=str(root), class_mode="binary", val_fraction=0.2))
    assert prepared.classes == ["normal", "pneumonia"] and len(prepared.val) == 4
    with pytest.raises(CnnlabError, match="binary needs exactly 2"):
        prepare_data(DataConfig(source=str(write_image_folder(tmp_path / "e", list("abc"), 2)),
                                class_mode="binary"))  # fmt: skip
