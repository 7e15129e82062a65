"""Batched augmentation with Keras ImageDataGenerator's names, applied to whole tensors.

Random parameters are drawn per image from a seeded generator, and all geometric changes
(rotation, shifts, shear, zoom, flips) are folded into one affine matrix per image, then
sampled with a single `grid_sample` over the batch: no per-image Python loop, no PIL.
Pixels are floats on the 0-255 scale (before normalisation), so `cval` and
`brightness_range` mean what they mean in Keras. Keras's `rescale` is not augmentation but
preprocessing: `rescale: 1/255` is read as `data.normalize: unit`, which travels with the
bundle so serving scales pixels exactly as training did.

Keras conventions kept: shifts below 1 are fractions of the size, from 1 up pixels; zoom
draws x and y factors independently from [1 - z, 1 + z] (above 1 shows more of the image);
shear is in degrees and slides rows in proportion to the column, as Keras's (row, col)
matrix does; `reflect` is dcba|abcd|dcba, `wrap` abcd|abcd|abcd, `nearest` aaaa|abcd|dddd.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cnnlab.config import AugmentConfig, zoom_bounds

_PADDING = {"nearest": "border", "reflect": "reflection", "wrap": "border", "constant": "zeros"}


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64) * (hi - lo) + lo


class BatchAugment:
    """Callable `(x, gen) -> x` on float (N, C, H, W) batches; identity when nothing is enabled."""

    def __init__(self, cfg: AugmentConfig) -> None:
        self.cfg = cfg
        zlo, zhi = zoom_bounds(cfg.zoom_range)
        self.zoom = (zlo, zhi)
        self.affine = any(
            [
                cfg.rotation_range,
                cfg.width_shift_range,
                cfg.height_shift_range,
                cfg.shear_range,
                (zlo, zhi) != (1.0, 1.0),
            ]
        )
        self.intensity = any([cfg.contrast_range, cfg.gamma_range, cfg.blur, cfg.noise])
        self.enabled = (
            self.affine
            or self.intensity
            or any(
                [
                    cfg.horizontal_flip,
                    cfg.vertical_flip,
                    cfg.random_crop,
                    cfg.brightness_range,
                    cfg.cutout,
                ]
            )
        )

    def __call__(
        self,
        x: torch.Tensor,
        gen: torch.Generator,
        idx: torch.Tensor | None = None,
        epoch: int = 0,
    ) -> torch.Tensor:
        """`idx` (the images' indices in the training set) and `epoch` serve the alternating
        flip, which mirrors an image by where it stands in the data, not by a fresh draw."""
        if not self.enabled:
            return x
        n = x.shape[0]
        mirror = None  # random flips are drawn where they always were (same seeds, same runs)
        if self.cfg.horizontal_flip == "alternate":
            mirror = alternate_flip(torch.arange(n) if idx is None else idx.cpu(), epoch)
        if self.affine:
            x = self._affine(x, gen, mirror)
        else:
            x = self._flips(x, gen, mirror)
        if self.cfg.random_crop:
            x = random_translate(x, self.cfg.random_crop, gen)
        if self.cfg.brightness_range:
            lo, hi = self.cfg.brightness_range
            factor = _uniform(gen, n, lo, hi).to(x.device, x.dtype).view(n, 1, 1, 1)
            x = (x * factor).clamp_(0, 255)
        if self.intensity:
            x = acquisition(x, self.cfg, gen)
        if self.cfg.cutout:
            x = cutout(x, self.cfg.cutout, gen)
        return x

    def _flips(self, x: torch.Tensor, gen: torch.Generator, mirror: torch.Tensor | None):
        n = x.shape[0]
        if mirror is None and self.cfg.horizontal_flip:
            mirror = torch.rand(n, generator=gen) < 0.5
        if mirror is not None:
            x = torch.where(mirror.to(x.device).view(n, 1, 1, 1), x.flip(3), x)
        if self.cfg.vertical_flip:
            mask = (torch.rand(n, generator=gen) < 0.5).to(x.device).view(n, 1, 1, 1)
            x = torch.where(mask, x.flip(2), x)
        return x

    def matrices(
        self,
        n: int,
        height: int,
        width: int,
        gen: torch.Generator,
        mirror: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(n, 2, 3) maps from output to input positions, in grid_sample's [-1, 1] coordinates;
        `mirror` says which images to flip left-right (drawn here when not given)."""
        c = self.cfg
        theta = torch.deg2rad(_uniform(gen, n, -c.rotation_range, c.rotation_range))
        shear = torch.deg2rad(_uniform(gen, n, -c.shear_range, c.shear_range))
        zx = _uniform(gen, n, *self.zoom)
        zy = _uniform(gen, n, *self.zoom)
        wsr, hsr = c.width_shift_range, c.height_shift_range
        tx = _uniform(gen, n, -wsr, wsr) * (width if wsr < 1 else 1)
        ty = _uniform(gen, n, -hsr, hsr) * (height if hsr < 1 else 1)
        if mirror is None and c.horizontal_flip:
            mirror = torch.rand(n, generator=gen) < 0.5
        fx = torch.where(mirror, -1.0, 1.0) if mirror is not None else torch.ones(n)
        fy = (
            torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
            if c.vertical_flip
            else torch.ones(n)
        )
        cos, sin = torch.cos(theta), torch.sin(theta)
        # pixel-space (x, y) matrix: rotation @ shear @ zoom @ flip (Keras order); it maps each
        # output pixel to the input position it samples, then goes to normalised coordinates
        rot = torch.stack([cos, -sin, sin, cos], 1).view(n, 2, 2)
        one, zero = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        # Keras's [[1, -sin], [0, cos]] acts on (row, col): in (x, y) it is [[cos, 0], [-sin, 1]]
        shr = torch.stack([torch.cos(shear), zero, -torch.sin(shear), one], 1).view(n, 2, 2)
        zoom = torch.diag_embed(torch.stack([zx * fx.double(), zy * fy.double()], 1))
        m = rot @ shr @ zoom
        half = torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64)
        m = m * half.view(1, 1, 2) / half.view(1, 2, 1)  # D^-1 M D
        t = torch.stack([tx, ty], 1) / half
        return torch.cat([m, t.unsqueeze(2)], 2)

    def _affine(self, x: torch.Tensor, gen: torch.Generator, mirror: torch.Tensor | None):
        n, _, h, w = x.shape
        theta = self.matrices(n, h, w, gen, mirror)
        return warp(x, theta, self.cfg.fill_mode, self.cfg.cval)


def alternate_flip(idx: torch.Tensor, epoch: int) -> torch.Tensor:
    """airbench's alternating flip: a fixed pseudo-random half of the images is mirrored in
    even epochs, the other half in odd ones, so any two epochs in a row show every image both
    ways (random flips repeat a view in a quarter of such pairs). The start bit is a hash of
    the image's index: no state to keep, the same after a resume."""
    start = ((idx.long() * 2654435761) % 4294967296) >= 2147483648  # Knuth's hash, top bit
    return start ^ bool(epoch % 2)


def affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """`F.affine_grid(theta, [n, 1, h, w], align_corners=False)` by broadcasting: the same
    numbers, about 5x faster on a CPU (its batched matmul with K=3 is memory-bound)."""
    n = theta.shape[0]
    xs = ((torch.arange(w, device=theta.device, dtype=theta.dtype) * 2 + 1) / w - 1).view(1, 1, w)
    ys = ((torch.arange(h, device=theta.device, dtype=theta.dtype) * 2 + 1) / h - 1).view(1, h, 1)
    t = theta.reshape(n, 6, 1, 1)
    gx = t[:, 0] * xs + (t[:, 1] * ys + t[:, 2])
    gy = t[:, 3] * xs + (t[:, 4] * ys + t[:, 5])
    return torch.stack([gx, gy], -1)


def warp(
    x: torch.Tensor, theta: torch.Tensor, fill_mode: str = "nearest", cval: float = 0.0
) -> torch.Tensor:
    """Resample float (N, C, H, W) through (N, 2, 3) output-to-input matrices (normalised
    coordinates, align_corners=False), bilinear, filling outside pixels by `fill_mode`."""
    n, _, h, w = x.shape
    grid = affine_grid(theta.to(x.device, torch.float32), h, w)
    src = x.float()
    if fill_mode == "wrap":
        # wrap the sample positions into the image, then read from a copy padded by one pixel
        # of the opposite edge, so bilinear weights across the seam blend the right pixels
        grid = torch.remainder(grid + 1, 2) - 1
        grid = grid * torch.tensor([w / (w + 2), h / (h + 2)], device=grid.device)
        src = F.pad(src, (1, 1, 1, 1), mode="circular")
    elif fill_mode == "constant" and cval:
        src = src - cval
    out = F.grid_sample(
        src, grid, mode="bilinear", padding_mode=_PADDING[fill_mode], align_corners=False
    )
    if fill_mode == "constant" and cval:
        out = out + cval
    return out.to(x.dtype) if x.is_floating_point() else out


def random_translate(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Pad by `pad` (reflect) and crop back at a random offset per image: a batched random crop."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    rows = (
        (dy.view(n, 1) + torch.arange(h, device=x.device))
        .view(n, 1, h, 1)
        .expand(n, c, h, w + 2 * pad)
    )
    out = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
    return out.gather(3, cols)


def cutout(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Blank one random `size` x `size` square per image (set to the image mean)."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=gen).to(x.device).view(n, 1, 1, 1)
    cx = torch.randint(0, w, (n,), generator=gen).to(x.device).view(n, 1, 1, 1)
    ys = torch.arange(h, device=x.device).view(1, 1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, 1, w)
    half = size // 2
    mask = ((ys - cy).abs() <= half) & ((xs - cx).abs() <= half)
    fill = x.mean(dim=(2, 3), keepdim=True)
    return torch.where(mask, fill, x)


def acquisition(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """What another scanner or exposure does to an image, drawn per image: gamma (log-uniform),
    contrast about the image's mean, Gaussian blur, Gaussian noise; pixels stay in 0-255."""
    n = x.shape[0]

    def draw(lo: float, hi: float) -> torch.Tensor:
        return _uniform(gen, n, lo, hi).to(x.device, x.dtype).view(n, 1, 1, 1)

    if cfg.gamma_range:
        lo, hi = cfg.gamma_range
        gamma = draw(math.log(lo), math.log(hi)).exp()
        x = 255.0 * (x / 255.0).clamp(0, 1).pow(gamma)
    if cfg.contrast_range:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * draw(*cfg.contrast_range) + mean).clamp(0, 255)
    if cfg.blur:
        x = gaussian_blur(x, draw(0.0, cfg.blur).view(n))
    if cfg.noise:
        noise = torch.randn(x.shape, generator=gen, dtype=torch.float32).to(x.device, x.dtype)
        x = (x + noise * draw(0.0, cfg.noise)).clamp(0, 255)
    return x


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of (N, C, H, W) with its own sigma (pixels; 0 = unchanged): one separable
    grouped convolution over the batch, edges replicated."""
    n, c, h, w = x.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).clamp_min(1e-3).view(n, 1)
    k = torch.exp(-(taps.view(1, -1) ** 2) / (2 * s * s))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, taps)
    flat = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="replicate")
    flat = F.conv2d(flat, k.view(n * c, 1, -1, 1), groups=n * c)
    flat = F.conv2d(flat, k.view(n * c, 1, 1, -1), groups=n * c)
    return flat.view(n, c, h, w)


def describe(cfg: AugmentConfig) -> str:
    on = [f"{k}={v}" for k, v in vars(cfg).items() if v and k not in ("fill_mode", "cval")]
    if not on:
        return "none"
    if BatchAugment(cfg).affine:
        on.append(f"fill_mode={cfg.fill_mode}")
    return ", ".join(on)
