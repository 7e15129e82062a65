"""The issue's bad-input folder: every bad file is reported by path and reason, the good ones
load with the right pixels and orientation, and nothing crashes."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import load_source
from cnnlab.data.images import read_image


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression-bomb-sized claim)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def exif_rotated_jpeg(path: Path) -> None:
    """Stored 16 wide x 8 high, left half red, right half blue; EXIF orientation 6 (turn 90
    degrees clockwise to display): displayed 8 wide x 16 high, red on top."""
    arr = np.zeros((8, 16, 3), np.uint8)
    arr[:, :8] = (255, 0, 0)
    arr[:, 8:] = (0, 0, 255)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(path, "JPEG", quality=95, exif=exif.tobytes())


@pytest.fixture
def bad_folder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "data"
    good, mixed = root / "good", root / "mixed"
    good.mkdir(parents=True)
    mixed.mkdir()
    (root / "empty").mkdir()
    rng = np.random.default_rng(0)
    expected: dict[str, np.ndarray] = {}  # name -> expected RGB (16, 16, 3) uint8
    for i in range(3):
        arr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(arr).save(good / f"plain_{i}.png")
        expected[f"plain_{i}.png"] = arr
    # 16-bit grayscale PNG: 0..65535 maps to 0..255 by dividing by 257
    gray16 = (np.arange(256, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(mixed / "gray16.png")
    expected["gray16.png"] = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, 2)
    # RGBA: alpha dropped, colour kept (as Keras's load_img)
    rgba = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(mixed / "rgba.png")
    expected["rgba.png"] = rgba[..., :3]
    # palette PNG: the palette colours
    pal = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).convert("P")
    pal.save(mixed / "palette.png")
    expected["palette.png"] = np.asarray(pal.convert("RGB"))
    # CMYK JPEG: back to RGB close to the original colours
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[:8], flat[8:] = (200, 40, 40), (30, 160, 220)
    Image.fromarray(flat).convert("CMYK").save(mixed / "cmyk.jpg", "JPEG", quality=95)
    expected["cmyk.jpg"] = flat
    exif_rotated_jpeg(mixed / "rotated.jpg")
    # the bad ones
    (mixed / "zero.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (mixed / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (mixed / "notes.png").write_text("this is not an image\n")
    (mixed / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    (mixed / "big.png").write_bytes(png_header_only(8_000, 8_000))
    return root, expected


def test_bad_folder_loads_and_reports_every_bad_file(bad_folder):
    root, expected = bad_folder
    loaded = load_source(str(root), image_size=[16, 16], color_mode="rgb")
    data = loaded.splits["train"]
    reasons = {Path(p).name: why for p, why in loaded.skipped}
    assert set(reasons) == {
        "zero.jpg",
        "truncated.jpg",
        "notes.png",
        "bomb.png",
        "big.png",
        "empty",
    }
    assert "empty file" in reasons["zero.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "not a recognised image" in reasons["notes.png"]
    assert "too large" in reasons["bomb.png"]
    assert "over the 50 MP limit" in reasons["big.png"]
    assert "empty class folder" in reasons["empty"]
    for path, _ in loaded.skipped:  # reported by full path
        assert Path(path).is_relative_to(root)

    assert data.classes == ["empty", "good", "mixed"]  # the empty class keeps its index
    names = [Path(p).name for p in data.paths]
    assert sorted(names) == sorted([*expected, "rotated.jpg"])
    for i, name in enumerate(names):
        img = data.images[i].permute(1, 2, 0).numpy()
        assert data.classes[int(data.labels[i])] == (
            "good" if name.startswith("plain") else "mixed"
        )
        if name == "rotated.jpg":
            continue
        err = np.abs(img.astype(int) - expected[name].astype(int))
        if name.endswith(".jpg"):
            assert err.mean() < 12, name  # lossy JPEG (and CMYK round trip): close, not exact
        else:
            assert err.max() == 0, name


def test_exif_orientation_is_applied(bad_folder):
    root, _ = bad_folder
    raw = read_image(root / "mixed" / "rotated.jpg", "rgb")
    assert raw.shape == (16, 8, 3)  # displayed 8 wide, 16 high
    top, bottom = raw[:7].reshape(-1, 3).mean(0), raw[9:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60  # red on top
    assert bottom[2] > 200 and bottom[0] < 60  # blue below
    loaded = load_source(str(root), image_size=[16, 16], color_mode="rgb")
    data = loaded.splits["train"]
    i = [Path(p).name for p in data.paths].index("rotated.jpg")
    img = data.images[i].float()
    assert img[0, :7].mean() > 200 and img[2, 9:].mean() > 200


def test_grayscale_mode_keeps_one_channel_and_16_bit_values(bad_folder):
    root, _ = bad_folder
    loaded = load_source(str(root), image_size=[16, 16], color_mode="grayscale")
    data = loaded.splits["train"]
    assert data.channels == 1
    i = [Path(p).name for p in data.paths].index("gray16.png")
    assert np.array_equal(data.images[i, 0].numpy(), np.arange(256).reshape(16, 16))


def test_unreadable_everything_is_a_clear_error(tmp_path):
    from cnnlab.errors import CnnlabError

    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "a" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(CnnlabError, match="no readable images"):
        load_source(str(tmp_path / "d"))
