"""One interface for every model (timm's): forward_features, forward_head, get_classifier.

Grad-CAM target layers, feature maps and transfer learning then work the same way for
the brief's small CNNs, the classic architectures and timm/torchvision backbones.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn


def as_size(input_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(input_size, int):
        return (input_size, input_size)
    if len(input_size) == 3:  # (C, H, W)
        input_size = input_size[1:]
    h, w = (int(s) for s in input_size)
    return (h, w)


class ClassifierCNN(nn.Module):
    """`features` (convolutions) then `head` (pooling/flatten/dense layers)."""

    def __init__(self, features: OrderedDict, head: OrderedDict) -> None:
        super().__init__()
        self.features = nn.Sequential(features)
        self.head = nn.Sequential(head)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def get_classifier(self) -> nn.Module:
        return [m for m in self.head.modules() if isinstance(m, nn.Linear)][-1]


def flat_features(features: nn.Module, in_channels: int, size: tuple[int, int]) -> int:
    """Width of the flattened feature map, by a dry run on one blank image."""
    was_training = features.training
    features.eval()
    with torch.no_grad():
        try:
            out = features(torch.zeros(1, in_channels, *size))
        except RuntimeError as e:
            raise ValueError(
                f"input size {size[0]}x{size[1]} is too small for this model ({e})"
            ) from None
    features.train(was_training)
    return int(out[0].numel())
