"""One corpus of bad and implausible inputs, generated on the spot, for every surface that reads
images: `cnnlab predict` and `cnnlab audit` (files, folders, links), the API and the app (bytes).

Each entry says what a reader must answer: a reason that contains `expect`. Nothing here may
make any surface crash, exit 1, answer 5xx or print a traceback.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import dicom_bytes


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _chunk(b"IEND", b""))  # fmt: skip


def encode(arr: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w), dtype=np.uint8)


def text_bomb_png() -> bytes:
    """A valid 32x32 PNG with a zTXt chunk that inflates to 4 MB (over Pillow's text limit)."""
    good = encode(texture(32, 32))
    ztxt = b"comment\0\0" + zlib.compress(b"\0" * (4 << 20), 9)
    end = good.rindex(b"IEND") - 4
    return good[:end] + _chunk(b"zTXt", ztxt) + good[end:]


def broken_crc_png() -> bytes:
    data = bytearray(encode(texture(32, 32)))
    i = data.index(b"IDAT")
    data[i + 8] ^= 0xFF  # a byte of the compressed pixels: CRC and zlib both break
    return bytes(data)


def unreadable_bytes() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, what the reason says): files no decoder can use."""
    jpeg = encode(np.dstack([texture(64, 64)] * 3), "JPEG")
    return {
        "empty.png": (b"", "empty file (0 bytes)"),
        "notes.png": (b"these are my notes\n" * 10, "not a recognised image format"),
        "cut.jpg": (jpeg[: len(jpeg) // 2], "corrupt or truncated image"),
        "bomb.png": (png_claiming(100_000, 100_000), "too large to decode safely"),
        "big.png": (png_claiming(8_000, 8_000), "over the 50 MP limit"),
        "crc.png": (broken_crc_png(), "corrupt or truncated image"),
        "textbomb.png": (text_bomb_png(), "corrupt or truncated image"),
        "nopixels.dcm": (dicom_bytes(None), "DICOM file has no pixel data"),
        "garbage.dcm": (b"\0" * 128 + b"DICM" + os.urandom(300), "DICOM"),
    }


def implausible_bytes() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, reason): real images that no model should answer."""
    return {
        "dot.png": (encode(np.full((1, 1), 128, np.uint8)), "far below the model's"),
        "strip.png": (encode(texture(1, 4900)), "is a strip"),
        "blank.png": (encode(np.full((2000, 2000), 200, np.uint8)), "the image is blank"),
    }


def good_bytes() -> dict[str, bytes]:
    """Odd but fine: each decodes and gets an answer."""
    gray16 = (texture(40, 40).astype(np.uint16) * 257).astype(np.uint16)
    rgba = np.dstack([texture(40, 40, 1)] * 3 + [np.full((40, 40), 128, np.uint8)])
    gif = io.BytesIO()
    frames = [Image.fromarray(texture(40, 40, s)) for s in (2, 3)]
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    return {
        "plain.png": encode(texture(40, 40, 4)),
        "gray16.png": encode(gray16),
        "rgba.png": encode(rgba),
        "anim.gif": gif.getvalue(),
        "scan.dcm": dicom_bytes(texture(40, 40, 5)),
        "rgb.jpg": encode(np.dstack([texture(40, 40, 6)] * 3), "JPEG"),
    }


def write_file_corpus(folder: Path) -> dict[str, str]:
    """The corpus as files in `folder`, plus what only files can be: a 10 GB sparse file, a FIFO,
    broken and looping links, a name that is not UTF-8. Returns name -> expected reason for
    the unreadable ones (predict and audit must both give it)."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (data, why) in unreadable_bytes().items():
        (folder / name).write_bytes(data)
        expected[name] = why
    with open(folder / "sparse.jpg", "wb") as f:  # noqa: PTH123
        f.truncate(10 * 2**30)  # 10 GB that take no disk: must be refused, not read
    expected["sparse.jpg"] = "over the 256 MB limit"
    for name, data in good_bytes().items():
        (folder / name).write_bytes(data)
    os.mkfifo(folder / "pipe.png")  # neither listed nor opened: it would block a reader
    os.symlink("nowhere.png", folder / "gone.png")
    os.symlink("self.png", folder / "self.png")
    os.symlink("..", folder / "up")  # `ln -s .. up`: a loop for whoever follows it
    odd = os.fsencode(folder)
    with open(odd + b"/caf\xe9.png", "wb") as f:  # noqa: PTH123 - Latin-1, not UTF-8
        f.write(good_bytes()["plain.png"])
    with open(odd + b"/b\xe9d.png", "wb"):  # noqa: PTH123 - and an unreadable one
        pass
    expected[os.fsdecode(b"b\xe9d.png")] = "empty file (0 bytes)"
    return expected
