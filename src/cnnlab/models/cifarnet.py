"""cnnlab's fast CIFAR-10 CNN, after airbench (Keller Jordan, 2024), sized for a 2-core CPU.

What it keeps from airbench: a small 2x2 stem, then three groups of
conv -> max-pool -> BatchNorm -> activation -> conv -> BatchNorm -> activation, a global
max-pool and a bias-free linear head scaled down (a fixed temperature), trained with
one-cycle SGD, label smoothing and flip + 2-pixel translation. Pooling before the norm and
activation runs them on a quarter of the pixels, which matters more than multiply-adds on a
CPU. In eval mode the model averages its logits over the image, its mirror image and both
shifted by a pixel (airbench's test-time augmentation, `tta`: +0.5 points of CIFAR-10
validation accuracy over mirror images alone, for 6 forward passes instead of 2).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.models.base import ClassifierCNN, as_size, batch_norm, identity_init
from cnnlab.models.registry import register_model


class ScaledLinear(nn.Linear):
    """A linear layer whose output is multiplied by a fixed factor (airbench's 1/9)."""

    def __init__(self, in_features: int, out_features: int, scale: float) -> None:
        super().__init__(in_features, out_features, bias=False)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.scale


class WhiteningStem(nn.Module):
    """A 2x2 conv whose filters whiten image patches (airbench): fixed, set from the first
    training batch, with a bias (learned unless `learn_bias` is off). Kept as a buffer, so
    DistributedDataParallel broadcasts rank 0's filters and every rank whitens alike."""

    def __init__(self, in_channels: int, eps: float = 5e-4, learn_bias: bool = True) -> None:
        super().__init__()
        self.out_channels = 8 * in_channels  # each eigenvector of the 2x2 patches, +/- sign
        self.eps = eps
        self.register_buffer("weight", torch.zeros(self.out_channels, in_channels, 2, 2))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))
        # a fixed bias spares the first conv's input gradient: ~10% of a CPU step
        self.bias = nn.Parameter(torch.zeros(self.out_channels), requires_grad=learn_bias)

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        c = x.shape[1]
        patches = F.unfold(x.float(), 2).transpose(1, 2).reshape(-1, 4 * c).double()
        patches = patches - patches.mean(0)
        cov = patches.T @ patches / len(patches)
        eigval, eigvec = torch.linalg.eigh(cov)
        filters = (eigvec.T / torch.sqrt(eigval.clamp_min(0) + self.eps).view(-1, 1)).flip(0)
        filters = torch.cat([filters, -filters]).view(-1, c, 2, 2)
        self.weight.copy_(filters.to(self.weight))
        self.ready.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not bool(self.ready):
            self.fit(x)
        return F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


def _act(name: str) -> nn.Module:
    return {"relu": nn.ReLU(inplace=True), "gelu": nn.GELU()}[name]


@register_model(input_size=(3, 32, 32), num_classes=10)
def cifarnet(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size=(32, 32),
    widths: list[int] = (32, 64, 128),
    stem_width: int = 24,
    activation: str = "relu",
    head_scale: float = 1 / 9,
    tta: str | bool = "mirror+translate",
    whiten: bool = False,
    whiten_bias: bool = True,
    dirac: bool = False,
    norm_scale: bool = True,
    bn_momentum: float = 0.1,
):
    """Fast CIFAR CNN (airbench-style): 2x2 stem, three conv-pool-BN groups, TTA in eval.

    airbench's optimisation aids, each off by default: `dirac` starts every 3x3 conv as an
    identity map; `norm_scale: false` freezes BatchNorm's scales (their biases still learn,
    best with a raised `train.bias_lr_scale`); `bn_momentum` (PyTorch's sense: airbench uses 0.4)
    lets the running statistics follow fast-changing weights."""
    if activation not in ("relu", "gelu"):
        raise ValueError("activation must be relu or gelu")
    h, w = as_size(input_size)
    if min(h, w) < 2 ** (len(widths) + 1):
        raise ValueError(f"input {h}x{w} is too small for {len(widths)} pooling groups")
    f: OrderedDict = OrderedDict()
    if whiten:
        f["stem"] = WhiteningStem(in_channels, learn_bias=whiten_bias)
        stem_width = f["stem"].out_channels
    else:
        f["stem"] = nn.Conv2d(in_channels, stem_width, 2, bias=False)
        f["stem_bn"] = batch_norm(stem_width, bn_momentum, norm_scale)
    f["stem_act"] = _act(activation)
    prev = stem_width
    init = identity_init if dirac else (lambda conv: conv)
    for i, width in enumerate(widths, 1):
        width = int(width)
        f[f"group{i}_conv1"] = init(nn.Conv2d(prev, width, 3, padding=1, bias=False))
        f[f"group{i}_pool"] = nn.MaxPool2d(2)
        f[f"group{i}_bn1"] = batch_norm(width, bn_momentum, norm_scale)
        f[f"group{i}_act1"] = _act(activation)
        f[f"group{i}_conv2"] = init(nn.Conv2d(width, width, 3, padding=1, bias=False))
        f[f"group{i}_bn2"] = batch_norm(width, bn_momentum, norm_scale)
        f[f"group{i}_act2"] = _act(activation)
        prev = width
    head = OrderedDict(
        pool=nn.AdaptiveMaxPool2d(1),
        flatten=nn.Flatten(),
        fc=ScaledLinear(prev, num_classes, head_scale),
    )
    return ClassifierCNN(f, head, tta)
