"""The preprocessing spec that travels with a model: size, channels, resize policy, mean/std.

Training normalises batches with `Preprocess.normalize`; predict, the app and the API
read files with `Preprocess.load` and then call the same `normalize`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from cnnlab.data.images import load_image_tensor

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
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(
            channels=int(d["channels"]),
            size=[int(s) for s in d["size"]],
            mean=[float(m) for m in d["mean"]],
            std=[float(s) for s in d["std"]],
            resize=str(d.get("resize", "stretch")),
        )

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
            from cnnlab.errors import CnnlabError

            raise CnnlabError(f"data.mean/std need {channels} values (one per channel)")
        return list(mean), list(std)
    assert train_images is not None
    return channel_stats(train_images)
