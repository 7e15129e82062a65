"""A unit's receptive field on the image, two ways, side by side.

Theoretical: the box every input pixel of which can change the unit, from the summary's
receptive field, jump and start (`Field.bounds`). Effective: how much each pixel *does*
change it for this image -- the magnitude of the unit's input gradient, which Luo et al.
(NeurIPS 2016) showed is roughly Gaussian and fills only part of the box. Every gradient
pixel lies inside the box, or the box would be wrong; tests check that on real models.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from cnnlab.anatomy.receptive import SPATIAL
from cnnlab.anatomy.summary import LayerRow, Summary
from cnnlab.errors import CnnlabError
from cnnlab.explain.capture import resolve_layer
from cnnlab.runtime.taps import evaluating, hooked


@dataclass
class UnitField:
    layer: str
    unit: tuple[int, int]  # (row, col) in the layer's output
    map_size: tuple[int, int]  # the layer's output H x W
    rf: tuple[int, int]  # theoretical size, as `cnnlab summary` prints it
    jump: tuple[int, int]
    box: tuple[tuple[float, float], tuple[float, float]]  # (top, bottom), (left, right) inclusive
    image_size: tuple[int, int]
    gradient: np.ndarray | None = None  # (H, W) |d unit / d input|, summed over channels

    @property
    def clipped(self) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the box inside the image, inclusive."""
        (t, b), (lft, r) = self.box
        h, w = self.image_size
        return (max(0, math.ceil(t)), max(0, math.ceil(lft)), min(h - 1, math.floor(b)),
                min(w - 1, math.floor(r)))  # fmt: skip

    def inside_share(self) -> float:
        """Share of the gradient's mass inside the theoretical box (1.0 when the box is right)."""
        g = self._mass()
        t, lft, b, r = self.clipped
        return float(g[t : b + 1, lft : r + 1].sum() / g.sum()) if g.sum() > 0 else 1.0

    def effective_side(self, share: float = 0.9) -> int:
        """Side of the smallest square around the box's centre holding `share` of the gradient."""
        g = self._mass()
        total = g.sum()
        if total <= 0:
            return 0
        (t, b), (lft, r) = self.box
        cy, cx = (t + b) / 2, (lft + r) / 2
        yy, xx = np.mgrid[: g.shape[0], : g.shape[1]]
        dist = np.maximum(np.abs(yy - cy), np.abs(xx - cx))  # square rings around the centre
        order = np.argsort(dist, axis=None)
        cum = np.cumsum(g.ravel()[order])
        k = int(np.searchsorted(cum, share * total))
        radius = dist.ravel()[order][min(k, len(order) - 1)]
        return int(round(2 * radius)) + 1

    def _mass(self) -> np.ndarray:
        if self.gradient is None:
            raise CnnlabError("no effective field computed")
        return self.gradient.astype(np.float64)

    def comparison(self) -> str:
        """How the two differ, in one or two sentences."""
        rh, rw = self.rf
        text = f"theoretical field {rh}x{rw} (the box, from `cnnlab summary`)"
        if self.gradient is None:
            return text
        side = self.effective_side()
        share = self.inside_share()
        area = side * side / max(rh * rw, 1)
        text += (
            f"; effective field: 90% of the gradient lies in a {side}x{side} square, "
            f"{area:.0%} of the box's area, {share:.1%} of it inside the box"
        )
        if area < 0.8:
            return text + (". Pixels near the centre reach the unit through many paths, those at "
                           "the edge through few, so the effective field is smaller than the "
                           "theoretical one (Luo et al. 2016).")  # fmt: skip
        return text + ": after so few layers the effective field still fills the box."


def spatial_rows(summary: Summary) -> list[LayerRow]:
    """Layers with a spatial output and a known receptive field."""
    return [r for r in summary.rows if r.field.kind == SPATIAL and len(r.output_shape) == 3
            and "#" not in r.name]  # fmt: skip


def unit_field(summary: Summary, layer: str, unit: tuple[int, int] | None = None) -> UnitField:
    """The theoretical field of `unit` (default: the centre) of `layer`."""
    name = resolve_layer(summary.layer_names(), layer)
    row = next(r for r in summary.rows if r.name == name)
    if row.field.kind != SPATIAL or len(row.output_shape) != 3:
        raise CnnlabError(f"layer {name!r} has no spatial receptive field ({row.field.describe()})")
    h, w = row.output_shape[1:]
    unit = unit if unit is not None else (h // 2, w // 2)
    if not (0 <= unit[0] < h and 0 <= unit[1] < w):
        raise CnnlabError(f"unit {unit[0]},{unit[1]} is outside {name}'s {h}x{w} output")
    return UnitField(name, unit, (h, w), row.field.rf, row.field.jump, row.field.bounds(unit),
                     tuple(summary.input_shape[1:]))  # type: ignore[arg-type]  # fmt: skip


class _Stop(Exception):
    """Raised in the hook once the layer has run: the rest of the network is not needed."""


def effective_field(model: torch.nn.Module, x: torch.Tensor, field: UnitField) -> UnitField:
    """Fill in `field.gradient`: |d (sum over channels of the unit) / d input| for image `x`."""
    kept: dict[str, torch.Tensor] = {}

    def keep(name: str, out: torch.Tensor) -> None:
        kept[name] = out
        raise _Stop

    with evaluating(model), torch.enable_grad():
        inp = x.detach().clone().requires_grad_(True)
        with hooked(model, [field.layer], keep), contextlib.suppress(_Stop):
            model(inp)  # stops once the layer has run: the rest is not needed
        if field.layer not in kept:
            raise CnnlabError(f"layer {field.layer!r} did not run for this input")
        out = kept[field.layer]
        y, xx = field.unit
        (grad,) = torch.autograd.grad(out[0, :, y, xx].sum(), inp)
    field.gradient = grad[0].abs().sum(0).float().cpu().numpy()
    return field


def _rgb(image: np.ndarray) -> Image.Image:
    """uint8 (C, H, W) or (H, W, C), grey or colour, as an RGB image."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.transpose(1, 2, 0)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    return Image.fromarray(img).convert("RGB")


def draw_fields(image: np.ndarray, field: UnitField, display: int = 336) -> Image.Image:
    """Two panels: the image with the theoretical box, and the gradient heat map with the box."""
    import matplotlib

    base = _rgb(image)
    h, w = field.image_size
    scale = display / max(h, w)
    size = (round(w * scale), round(h * scale))
    left = base.resize(size, Image.NEAREST)
    g = field.gradient if field.gradient is not None else np.zeros((h, w), np.float32)
    heat = np.sqrt(g / g.max()) if g.max() > 0 else g  # square root: the faint edge shows too
    colour = (matplotlib.colormaps["inferno"](heat)[..., :3] * 255).astype(np.uint8)
    right = Image.fromarray(colour).resize(size, Image.NEAREST)
    gap, top = 16, 0
    out = Image.new("RGB", (2 * size[0] + gap, size[1] + top), "white")
    out.paste(left, (0, top))
    out.paste(right, (size[0] + gap, top))
    (bt, bb), (bl, br) = field.box
    for x0 in (0, size[0] + gap):
        d = ImageDraw.Draw(out)
        box = (x0 + bl * scale, top + bt * scale, x0 + (br + 1) * scale, top + (bb + 1) * scale)
        d.rectangle(box, outline=(0, 200, 255), width=2)
        uy, ux = ((bt + bb) / 2, (bl + br) / 2)
        cx, cy = x0 + (ux + 0.5) * scale, top + (uy + 0.5) * scale
        d.line((cx - 5, cy, cx + 5, cy), fill=(0, 200, 255), width=2)
        d.line((cx, cy - 5, cx, cy + 5), fill=(0, 200, 255), width=2)
    return out


def receptive_field_to_file(target, image: str | Path, layer: str, unit: tuple[int, int] | None,
                            out_dir: str | Path, summary: Summary | None = None) -> tuple[Path, UnitField]:  # fmt: skip
    """`cnnlab explain --receptive-field`: receptive_field_<layer>.png in `out_dir`."""
    from cnnlab.anatomy.summary import summarize
    from cnnlab.explain.gallery import load_input
    from cnnlab.report.figures import save_figure

    summary = summary or summarize(target.model, target.input_shape, target.name)
    field = unit_field(summary, layer, unit)
    pixels, x = load_input(target, image)
    effective_field(target.model, x, field)
    fig = plot_fields(pixels.cpu().numpy(), field)
    path = Path(out_dir) / f"receptive_field_{field.layer.replace('#', '_call')}.png"
    return save_figure(fig, path), field


def plot_fields(image: np.ndarray, field: UnitField):
    """The two panels with titles and the comparison sentence, as a matplotlib figure."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = np.asarray(draw_fields(image, field))
    fig, ax = plt.subplots(figsize=(9, 5.4), constrained_layout=True)
    ax.imshow(panels)
    ax.set_axis_off()
    y, x = field.unit
    rh, rw = field.rf
    ax.set_title(f"{field.layer}, unit ({y}, {x}) of {field.map_size[0]}x{field.map_size[1]}: "
                 f"theoretical field {rh}x{rw} (box) | effective field (|input gradient|, sqrt scale)",
                 fontsize=10)  # fmt: skip
    fig.text(0.5, 0.01, "\n".join(textwrap.wrap(field.comparison(), 120)), ha="center",
             va="bottom", fontsize=8.5)  # fmt: skip
    return fig


def field_past_image(rf: tuple[int, int], image_size: tuple[int, int]) -> str | None:
    """A note when a theoretical receptive field is larger than the image (309x309 on a
    224x224 X-ray): its box runs into the padding, and the effective field, not the box, says
    what the unit looks at. None when the field fits."""
    (rh, rw), (h, w) = rf, image_size
    if rh <= h and rw <= w:
        return None
    return (f"The theoretical field, {rh}x{rw}, is larger than the {h}x{w} image: every unit "
            "here can see the whole image (the rest of its box is padding). What it actually "
            "looks at is its effective field, which is usually far smaller.")  # fmt: skip
