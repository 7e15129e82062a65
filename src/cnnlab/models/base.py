"""One interface for every model (timm's): forward_features, forward_head, get_classifier.

Grad-CAM target layers, feature maps and transfer learning then work the same way for
the brief's small CNNs, the classic architectures and timm/torchvision backbones.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

TTA_MODES = ("none", "mirror", "translate", "mirror+translate")


def as_size(input_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(input_size, int):
        return (input_size, input_size)
    if len(input_size) == 3:  # (C, H, W)
        input_size = input_size[1:]
    h, w = (int(s) for s in input_size)
    return (h, w)


def tta_mode(value: str | bool | None) -> str:
    """A model's test-time augmentation; True/False are the names bundles used before modes."""
    if value is True:
        return "mirror"
    if value is False or value is None:
        return "none"
    if value not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {value!r}")
    return value


def tta_logits(fn, x: torch.Tensor, mode: str) -> torch.Tensor:
    """Average `fn`'s logits over views of the batch (airbench's test-time augmentation):
    the image and its mirror image; with translate, half the weight goes to the same views
    shifted one pixel up-left and down-right (reflect padding)."""

    def views(z: torch.Tensor) -> torch.Tensor:
        return 0.5 * (fn(z) + fn(z.flip(-1))) if "mirror" in mode else fn(z)

    logits = views(x)
    if "translate" in mode:
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = 0.5 * (views(padded[..., :h, :w]) + views(padded[..., 2:, 2:]))
        logits = 0.5 * (logits + shifted)
    return logits


def batch_norm(width: int, momentum: float = 0.1, learn_scale: bool = True) -> nn.BatchNorm2d:
    """BatchNorm2d; `learn_scale=False` keeps its scale at 1 (airbench: the next conv can take
    any scale, so a learned one only adds a direction for the optimiser to wander in)."""
    bn = nn.BatchNorm2d(width, momentum=momentum)
    bn.weight.requires_grad_(learn_scale)
    return bn


def identity_init(conv: nn.Conv2d) -> nn.Conv2d:
    """Make a conv's first `in_channels` filters pass their input through (dirac init, as
    airbench does): a deep plain stack then starts near an identity map, like a ResNet."""
    with torch.no_grad():
        w = conv.weight
        nn.init.dirac_(w[: min(w.shape[0], w.shape[1])])
    return conv


class Dropout(nn.Dropout):
    """nn.Dropout with its mask drawn by one vectorised `torch.rand`: PyTorch's `bernoulli_`
    takes over twice as long on a CPU (a 128x1600 batch on 2 AVX2 cores: 3.0 vs 1.3 ms; the
    brief's Keras CIFAR CNN drops 3 maps a step). Same expectation and gradient, as nn.Dropout
    keeps each value with probability 1 - p and scales it by 1 / (1 - p)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return x * 0
        keep = (torch.rand_like(x) >= self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * keep


_MAX_POOLS = (nn.MaxPool2d, nn.AdaptiveMaxPool2d)


def _watched(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks)  # fmt: skip


class Layers(nn.Sequential):
    """nn.Sequential that runs a ReLU directly followed by a max-pool the other way round.

    Both are monotone, so max-pooling first and rectifying the pooled map gives the same values
    and the same gradients (max(relu(x)) == relu(max(x)); where the max is not positive both
    pass no gradient), and the ReLU and its backward touch a quarter of the pixels: the
    brief's Keras MNIST CNN (conv-ReLU-pool twice) trains 1.28-1.36x as many images/s on 2 AVX2
    cores. The model keeps its written order in every other respect (names, state dict), and
    runs that order whenever a hook watches a layer (another caller's too: the values are the
    same) or torch.fx traces it: feature maps, Grad-CAM, the summary and generated code see
    the net as written."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self)
        swaps = [i for i in range(len(layers) - 1)
                 if type(layers[i]) is nn.ReLU and isinstance(layers[i + 1], _MAX_POOLS)]  # fmt: skip
        traced = isinstance(x, torch.fx.Proxy)  # torch.fx records the net as written
        if not swaps or traced or _global_hooks() or any(_watched(m) for m in layers):
            return super().forward(x)
        for i in swaps:
            layers[i], layers[i + 1] = layers[i + 1], layers[i]
        for layer in layers:
            x = layer(x)
        return x


def _global_hooks() -> bool:
    """Hooks registered for every module (torch.nn.modules.module.register_module_forward_hook)."""
    from torch.nn.modules import module

    names = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
             "_global_backward_pre_hooks")  # fmt: skip
    return any(getattr(module, name, None) for name in names)


class ClassifierCNN(nn.Module):
    """`features` (convolutions) then `head` (pooling/flatten/dense layers).

    In eval mode `forward` applies the model's test-time augmentation (`tta`), so evaluate,
    predict, the app and ONNX export all get it without knowing; training sees each batch
    once. Grad-CAM and feature maps hook a layer's first call in a pass: the image itself."""

    def __init__(self, features: OrderedDict, head: OrderedDict, tta: str | bool = "none") -> None:
        super().__init__()
        self.features = Layers(features)
        self.head = nn.Sequential(head)
        self.tta = tta_mode(tta)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = tta_mode(self.tta)
        if self.training or mode == "none":
            return self.head(self.features(x))
        return tta_logits(lambda z: self.head(self.features(z)), x, mode)

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
