"""The convolution drawn in the style of Dumoulin & Visin's conv_arithmetic: the input with its
padding, the kernel window at one output position, the rows and columns no window reads,
and the output grid filling in; one PNG, or a GIF of the window sliding.

Drawn with Pillow, not matplotlib: a frame costs milliseconds, so the app redraws on every
slider move and a GIF of 144 positions takes well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_path
from cnnlab.learn.convolution import ConvSetting

PADDING = (255, 255, 255)
READ = (158, 202, 225)
LOST = (252, 187, 161)
TAP = (33, 113, 181)
WINDOW = (8, 48, 107)
TODO = (229, 245, 224)
DONE = (116, 196, 118)
NOW = (0, 109, 44)
GRID = (150, 150, 150)
TEXT = (30, 30, 30)
MAX_FRAMES = 144
MAX_DRAWN = 128  # cells a side


@lru_cache(maxsize=4)
def font(size: int = 14) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@dataclass(frozen=True)
class Layout:
    cell: int
    margin: int
    top: int  # height of the text above the grids
    gap: int  # between input and output grids
    width: int
    height: int


def check_drawable(s: ConvSetting) -> None:
    """Refuse an input past MAX_DRAWN cells a side before anything is drawn or listed: each
    cell is at least 8 pixels, and `--size 100000000` asked for an image of 10**17 pixels."""
    (t, b), (lft, r) = s.padding
    ph, pw = s.size[0] + t + b, s.size[1] + lft + r
    if max(ph, pw) > MAX_DRAWN:
        raise CnnlabError(f"the drawing draws inputs up to {MAX_DRAWN}x{MAX_DRAWN} (with "
                          f"padding), not {ph}x{pw}; leave out --draw for the arithmetic")  # fmt: skip


def layout(s: ConvSetting, lines: list[str]) -> Layout:
    """Pixel sizes of the drawing (tests check the written image against them)."""
    check_drawable(s)
    (t, b), (lft, r) = s.padding
    ph, pw = s.size[0] + t + b, s.size[1] + lft + r
    oh, ow = s.out
    cell = max(8, min(32, 440 // max(ph, pw, 1)))
    margin, gap = 16, 70
    top = 12 + 20 * len(lines) + 26
    grid_h = max(ph, oh) * cell
    width = 2 * margin + (pw + ow) * cell + gap
    text = max((int(font(14).getlength(line)) for line in lines), default=0) + 2 * margin
    width = max(width, text, 560)
    height = top + grid_h + 60 + margin
    return Layout(cell, margin, top, gap, width, height)


def diagram_size(s: ConvSetting) -> tuple[int, int]:
    """(width, height) in pixels of `draw_conv(s, ...)` and of every GIF frame."""
    check_drawable(s)
    lay = layout(s, _header(s))
    return lay.width, lay.height


def _header(s: ConvSetting) -> list[str]:
    return s.describe()


def draw_conv(s: ConvSetting, position: int = 0, header: bool = True) -> Image.Image:
    """One frame: the window at output `position` (row by row from 0), outputs before it done.
    `header=False`: without the setting and formula above it (a page that prints them already,
    as the app's Learn page does, shows the formula once)."""
    check_drawable(s)
    oy, ox = s.unit(position)
    lines = _header(s) if header else []
    lay = layout(s, lines)
    img = Image.new("RGB", (lay.width, lay.height), "white")
    d = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        d.text((lay.margin, 10 + 20 * i), line, fill=TEXT, font=font(14))
    (t, b), (lft, r) = s.padding
    ph, pw = s.size[0] + t + b, s.size[1] + lft + r
    c = lay.cell
    x0, y0 = lay.margin, lay.top
    lost_rows, lost_cols = (set(v) for v in s.unused())
    taps = {(rr + t, cc + lft) for rr, cc in s.taps(position)}
    d.text((x0, y0 - 20), f"input {s.size[0]}x{s.size[1]}" + (" + padding" if t + b + lft + r else ""),
           fill=TEXT, font=font(13))  # fmt: skip
    for i in range(ph):
        for j in range(pw):
            inside = t <= i < t + s.size[0] and lft <= j < lft + s.size[1]
            if (i, j) in taps:
                fill = TAP
            elif not inside:
                fill = PADDING
            elif (i - t) in lost_rows or (j - lft) in lost_cols:
                fill = LOST
            else:
                fill = READ
            box = (x0 + j * c, y0 + i * c, x0 + (j + 1) * c - 1, y0 + (i + 1) * c - 1)
            d.rectangle(box, fill=fill, outline=GRID)
            if fill == LOST and c >= 10:
                d.line((box[0], box[3], box[2], box[1]), fill=(200, 90, 60))
    rows = [rr for rr, _ in taps]
    cols = [cc for _, cc in taps]
    d.rectangle((x0 + min(cols) * c - 1, y0 + min(rows) * c - 1, x0 + (max(cols) + 1) * c,
                 y0 + (max(rows) + 1) * c), outline=WINDOW, width=3)  # fmt: skip
    oh, ow = s.out
    ox0 = x0 + pw * c + lay.gap
    ay = y0 + min(ph, oh) * c // 2
    d.line((x0 + pw * c + 12, ay, ox0 - 14, ay), fill=TEXT, width=2)
    d.polygon([(ox0 - 14, ay - 6), (ox0 - 4, ay), (ox0 - 14, ay + 6)], fill=TEXT)
    d.text((ox0, y0 - 20), f"output {oh}x{ow}", fill=TEXT, font=font(13))
    for i in range(oh):
        for j in range(ow):
            k = i * ow + j
            fill = NOW if k == position else DONE if k < position else TODO
            d.rectangle((ox0 + j * c, y0 + i * c, ox0 + (j + 1) * c - 1, y0 + (i + 1) * c - 1),
                        fill=fill, outline=GRID)  # fmt: skip
    d.rectangle((ox0 + ox * c - 1, y0 + oy * c - 1, ox0 + (ox + 1) * c, y0 + (oy + 1) * c),
                outline=(0, 0, 0), width=2)  # fmt: skip
    legend_y = y0 + max(ph, oh) * c + 14
    d.text((lay.margin, legend_y), f"output ({oy}, {ox}), position {position + 1} of {s.positions}",
           fill=TEXT, font=font(13))  # fmt: skip
    x = lay.margin
    for colour, label in ((TAP, "kernel taps"), (READ, "input"), (PADDING, "padding"),
                          (LOST, "never read"), (DONE, "computed")):  # fmt: skip
        d.rectangle((x, legend_y + 24, x + 12, legend_y + 36), fill=colour, outline=GRID)
        d.text((x + 17, legend_y + 23), label, fill=TEXT, font=font(12))
        x += 30 + int(d.textlength(label, font=font(12)))
    return img


def conv_frames(s: ConvSetting, max_frames: int = MAX_FRAMES) -> list[Image.Image]:
    """The window sliding over the first `max_frames` positions, row by row."""
    return [draw_conv(s, p) for p in range(min(s.positions, max_frames))]


def gif_bytes(s: ConvSetting, max_frames: int = MAX_FRAMES, ms: int = 350) -> bytes:
    import io

    frames = conv_frames(s, max_frames)
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=ms, loop=0)
    return buf.getvalue()


def save_conv_drawing(s: ConvSetting, path: str | Path, position: int = 0) -> Path:
    """FILE.png: the window at `position`; FILE.gif: the window sliding (first 144 positions)."""
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in (".png", ".gif"):
        raise CnnlabError(f"--draw must end in .png or .gif, got {path.name}")
    with atomic_path(path) as tmp:
        if kind == ".png":
            draw_conv(s, position).save(tmp, format="PNG")
        else:
            tmp.write_bytes(gif_bytes(s))
    return path


def _as_rgb(pixels) -> Image.Image:
    import numpy as np

    img = np.asarray(pixels)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.transpose(1, 2, 0)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    return Image.fromarray(img).convert("RGB")


def draw_window_on_image(pixels, s: ConvSetting, position: int, display: int = 300) -> Image.Image:
    """The image as the model sees it, with the kernel window of `position` outlined."""
    img = _as_rgb(pixels)
    h, w = s.size
    scale = display / max(h, w)
    out = img.resize((round(w * scale), round(h * scale)), Image.NEAREST)
    taps = s.taps(position)
    rows, cols = [r for r, _ in taps], [c for _, c in taps]
    d = ImageDraw.Draw(out)
    box = (
        min(cols) * scale - 1,
        min(rows) * scale - 1,
        (max(cols) + 1) * scale,
        (max(rows) + 1) * scale,
    )
    d.rectangle(box, outline=(255, 40, 40), width=2)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for r in (10, 14):
        d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(255, 40, 40), width=1)
    return out


def draw_partial_map(fmap, unit: tuple[int, int], display: int = 300) -> Image.Image:
    """A feature map filled in row by row up to `unit` (later outputs blank), `unit` outlined."""
    import matplotlib
    import numpy as np

    h, w = fmap.shape
    lo, hi = float(fmap.min()), float(fmap.max())
    norm = (fmap - lo) / (hi - lo if hi > lo else 1.0)
    rgb = (matplotlib.colormaps["viridis"](norm)[..., :3] * 255).astype(np.uint8)
    done = np.arange(h * w).reshape(h, w) <= unit[0] * w + unit[1]
    rgb[~done] = 245
    scale = display / max(h, w)
    out = Image.fromarray(rgb).resize((round(w * scale), round(h * scale)), Image.NEAREST)
    d = ImageDraw.Draw(out)
    y, x = unit
    d.rectangle((x * scale - 1, y * scale - 1, (x + 1) * scale, (y + 1) * scale),
                outline=(255, 40, 40), width=2)  # fmt: skip
    return out
