"""The preprocessing spec that travels with a model: size, channels, resize policy, mean/std.

Training normalises batches with `Preprocess.normalize`; predict, the app and the API
read files with `Preprocess.load` and then call the same `normalize`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.config import MAX_INPUT_PIXELS
from cnnlab.data.images import load_image_tensor
from cnnlab.errors import CnnlabError

RESIZE_POLICIES = ("stretch", "letterbox", "center_crop")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass
class Preprocess:
    channels: int
    size: list[int]  # [H, W]
    mean: list[float]  # per channel, on the 0-1 scale
    std: list[float]
    resize: str = "stretch"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "preprocess") -> Preprocess:
        """The spec from bundle.json's block, every value checked: a bad one is a CnnlabError
        that names it (a NaN mean or a zero std would make every prediction NaN; a 60000x60000
        size would allocate tens of GB per image)."""
        if not isinstance(d, dict):
            raise CnnlabError(f"{where} must be a mapping, got {_shown(d)}")
        for key in ("channels", "size", "mean", "std"):
            if key not in d:
                raise CnnlabError(f"{where} lacks '{key}'")
        channels = d["channels"]
        if isinstance(channels, bool) or channels not in (1, 3):
            raise CnnlabError(f"{where}.channels must be 1 or 3, got {_shown(channels)}")
        size = d["size"]
        if (
            not isinstance(size, list)
            or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)
        ):
            raise CnnlabError(f"{where}.size must be [height, width] in pixels, got {_shown(size)}")
        if size[0] * size[1] > MAX_INPUT_PIXELS:
            raise CnnlabError(
                f"{where}.size {size[0]}x{size[1]} is over the {MAX_INPUT_PIXELS / 1e6:.1f} MP a "
                "model input may have"
            )
        mean = _numbers(d["mean"], channels, f"{where}.mean")
        std = _numbers(d["std"], channels, f"{where}.std")
        if any(v <= 0 for v in std):
            raise CnnlabError(f"{where}.std must be positive, got {std}")
        if any(abs(v) > 1e3 for v in mean) or any(v < 1e-6 or v > 1e3 for v in std):
            raise CnnlabError(f"{where}.mean/std are on the 0-1 scale; got mean {mean}, std {std}")
        resize = d.get("resize", "stretch")
        if resize not in RESIZE_POLICIES:
            raise CnnlabError(
                f"{where}.resize must be one of {', '.join(RESIZE_POLICIES)}, got {_shown(resize)}"
            )
        return cls(channels=channels, size=list(size), mean=mean, std=std, resize=resize)

    def load(self, source: str | Path | bytes) -> torch.Tensor:
        """One file (or its bytes) to uint8 (C, H, W) exactly as training saw its images."""
        return load_image_tensor(source, self.channels, self.size, self.resize)

    def normalize(self, batch: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 (N, C, H, W) to normalised floats, on whatever device the batch is on."""
        scale, shift = self.affine(batch.device, dtype)
        return batch.to(dtype) * scale + shift

    def affine(self, device, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) with x_norm = x_uint8 * scale + shift; one fused multiply-add per batch."""
        mean = torch.tensor(self.mean, dtype=torch.float64).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float64).view(1, -1, 1, 1)
        scale = (1.0 / (255.0 * std)).to(device=device, dtype=dtype)
        shift = (-mean / std).to(device=device, dtype=dtype)
        return scale, shift


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _numbers(values: Any, n: int, where: str) -> list[float]:
    """`n` finite numbers (one per channel), or a CnnlabError naming `where`."""
    if (
        not isinstance(values, list)
        or len(values) != n
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    ):
        raise CnnlabError(
            f"{where} must be a list of {n} numbers (one per channel), got {_shown(values)}"
        )
    if not all(math.isfinite(v) for v in values):
        raise CnnlabError(f"{where} must be finite numbers, got {values}")
    return [float(v) for v in values]


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (0-1 scale) of uint8 (N, C, H, W), in chunks to bound memory."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for chunk in images.split(2048):
        x = chunk.to(torch.float64).div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        count += x.numel() // c
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]


def normalization(
    kind: str,
    channels: int,
    train_images: torch.Tensor | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
) -> tuple[list[float], list[float]]:
    """mean/std for a recipe's `normalize` setting."""
    if kind == "unit":
        return [0.0] * channels, [1.0] * channels
    if kind == "symmetric":
        return [0.5] * channels, [0.5] * channels
    if kind == "imagenet":
        if channels == 1:
            return [sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3]
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    if kind == "custom":
        assert mean is not None and std is not None
        if len(mean) != channels or len(std) != channels:
            raise CnnlabError(f"data.mean/std need {channels} values (one per channel)")
        return list(mean), list(std)
    assert train_images is not None
    return channel_stats(train_images)
