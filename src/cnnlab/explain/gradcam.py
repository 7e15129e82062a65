"""Grad-CAM (Selvaraju et al. 2017): where in the image a layer's evidence for a class lies.

heatmap = ReLU(sum_k alpha_k A_k), alpha_k = spatial mean of d(score)/d(A_k), upsampled to the
input and scaled to 0..1. The default layer is the last convolution of `forward_features`,
the same for every model thanks to the uniform interface. Arrays only; the CLI and the app
draw them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.errors import CnnlabError
from cnnlab.runtime.taps import evaluating, hooked, tapped

if TYPE_CHECKING:
    from cnnlab.bundle.loading import Bundle


@dataclass
class GradCam:
    heatmap: np.ndarray  # (H, W) float32 in [0, 1], at the input's size
    layer: str
    class_index: int
    score: float  # the logit explained (negated logit for class 0 of a one-output model)


def conv_layers(model: nn.Module, x: torch.Tensor, features_only: bool = True) -> list[str]:
    """Conv layers in the order they run (through `forward_features` when the model has it)."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    order: list[str] = []

    def note(name: str):
        return lambda module, args, output: order.append(name)

    run = getattr(model, "forward_features", None) if features_only else None
    with evaluating(model), torch.no_grad(), tapped(post=[(m, note(n)) for n, m in convs]):
        (run or model)(x)
    return list(dict.fromkeys(order))


def default_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The last conv layer of `forward_features` (of the whole forward pass, if it has none)."""
    convs = conv_layers(model, x) or conv_layers(model, x, features_only=False)
    if not convs:
        raise CnnlabError("this model has no conv layer for Grad-CAM; pass --layer")
    return convs[-1]


def bundle_cam_layer(bundle: Bundle) -> str:
    """A bundle's Grad-CAM layer, found with one blank input at its own size: once per model
    (the app caches it, `receive` and `screen` keep it), never per image."""
    pre = bundle.preprocess
    return default_layer(bundle.model, torch.zeros(1, pre.channels, *pre.size))


SMALL_INPUT = 64  # an input side below this, or
SMALL_MAP = 4  # a class-activation map side below this: too coarse to point at anything


def caveat(input_size: tuple[int, int], map_size: tuple[int, int]) -> str | None:
    """Why a Grad-CAM says little here (a 28x28 digit; a 3x3 map upsampled over the image), or
    None: its heatmap is the last conv layer's map stretched to the input, so a map of a few
    cells can only say "the left half", and a tiny input has little to localise."""
    reasons = []
    if min(input_size) < SMALL_INPUT:
        reasons.append(f"the input is only {input_size[0]}x{input_size[1]} pixels")
    if min(map_size) < SMALL_MAP:
        reasons.append(f"the map it comes from is {map_size[0]}x{map_size[1]}, each cell "
                       f"covering about {input_size[0] // max(map_size[0], 1)} pixels a side")  # fmt: skip
    if not reasons:
        return None
    return ("Grad-CAM says little here: " + " and ".join(reasons) + ". Read the overlay as a "
            "rough region, not an outline; on inputs under 64x64 or maps under 4x4 it cannot "
            "localise much.")  # fmt: skip


def class_score(logits: torch.Tensor, class_index: int) -> torch.Tensor:
    """The logit of a class; a one-output (sigmoid) model's class 0 is the negated logit."""
    if logits.shape[1] == 1:
        if class_index not in (0, 1):
            raise CnnlabError(f"a one-output model has classes 0 and 1, not {class_index}")
        return logits[0, 0] if class_index == 1 else -logits[0, 0]
    if not 0 <= class_index < logits.shape[1]:
        raise CnnlabError(f"class index {class_index} is out of range 0..{logits.shape[1] - 1}")
    return logits[0, class_index]


def gradcam(
    model: nn.Module, x: torch.Tensor, layer: str | None = None, class_index: int | None = None
) -> GradCam:
    """Grad-CAM of one normalised image `x` (1, C, H, W); class defaults to the predicted one."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise CnnlabError(f"Grad-CAM takes one image (1, C, H, W), got {tuple(x.shape)}")
    layer = layer or default_layer(model, x)
    kept: dict[str, torch.Tensor] = {}

    def keep(name: str, out: torch.Tensor) -> torch.Tensor:
        kept[name] = out
        return out.clone()  # later in-place ops (ReLU(inplace=True)) act on the copy

    with evaluating(model), torch.enable_grad():
        inp = x.detach().clone().requires_grad_(True)  # gradients flow even if frozen
        with hooked(model, [layer], keep):
            logits = model(inp)
        if layer not in kept:
            raise CnnlabError(f"layer {layer!r} did not run for this input")
        acts = kept[layer]
        if acts.dim() != 4:
            raise CnnlabError(f"layer {layer!r} has no spatial output for Grad-CAM")
        if logits.dim() != 2:
            raise CnnlabError("Grad-CAM needs a model that outputs (1, classes) logits")
        if class_index is None:
            class_index = int(logits[0, 0] > 0) if logits.shape[1] == 1 else int(logits.argmax())
        score = class_score(logits, class_index)
        (grads,) = torch.autograd.grad(score, acts)
    weights = grads.float().mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * acts.detach().float()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    top = float(cam.max())
    heat = (cam / top if top > 0 else torch.zeros_like(cam)).clamp(0, 1).cpu().numpy()
    return GradCam(heat.astype(np.float32), layer, class_index, float(score.detach()))


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """uint8 image (C, H, W) or (H, W, C), grey or RGB, blended with the heatmap in 'jet': (H, W, 3)."""
    import matplotlib

    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.transpose(1, 2, 0)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[:2] != heatmap.shape:
        raise ValueError(f"image {img.shape[:2]} and heatmap {heatmap.shape} differ in size")
    rgb = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[..., :3]
    colour = matplotlib.colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3]
    blend = (1 - alpha) * rgb.astype(np.float32) / 255.0 + alpha * colour
    return (blend.clip(0, 1) * 255).round().astype(np.uint8)


def plot_gradcam(image: np.ndarray, cam: GradCam, label: str):
    """Two panels: the image as the model saw it (grey stays grey) and the overlay with its scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = np.asarray(image)
    img = img.transpose(1, 2, 0) if img.shape[0] in (1, 3) and img.ndim == 3 else img
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 4.2), constrained_layout=True)
    if img.shape[-1] == 1:
        axes[0].imshow(img[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        axes[0].imshow(img)
    axes[0].set_title("input (as the model sees it)", fontsize=10)
    axes[1].imshow(overlay_heatmap(img, cam.heatmap))
    sm = plt.cm.ScalarMappable(cmap="jet", norm=matplotlib.colors.Normalize(0, 1))
    fig.colorbar(sm, ax=axes[1], shrink=0.8, label="Grad-CAM (0..1)")
    axes[1].set_title(f"Grad-CAM for {label!r} at {cam.layer}", fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
