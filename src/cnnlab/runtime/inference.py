"""Batched, gradient-free forward passes: the one place PyTorch runs a model for evaluate,
predict, the app and the API, reading the out-of-distribution check's features in the same
pass (`cnnlab.runtime.ood.capture`, through `runtime.taps`). ONNX Runtime's counterpart is
`cnnlab.deploy.onnx.OnnxBackend.run`, whose graph outputs the same features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from cnnlab.data.preprocess import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.runtime.device import Runtime
from cnnlab.runtime.ood import capture
from cnnlab.runtime.taps import evaluating


@torch.inference_mode()
def logits_and_features(
    model: nn.Module,
    images: torch.Tensor,
    preprocess: Preprocess,
    runtime: Runtime,
    parts: Sequence[tuple[str, str]] = (),
    batch_size: int = 256,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One eval-mode pass over uint8 (N, C, H, W): float32 logits (N, K) and each of `parts`'
    features (N, D_i) (the OOD check's `(layer, take)` pairs; none: no hook at all), all on
    the CPU. A model already in eval mode, as a loaded bundle's, is not touched: concurrent
    callers share it."""
    scale, shift = preprocess.affine(runtime.device)
    parts = list(parts)
    logits: list[torch.Tensor] = []
    features: list[list[torch.Tensor]] = [[] for _ in parts]
    with evaluating(model):
        for chunk in images.split(batch_size):
            x = chunk.to(runtime.device, non_blocking=True).float() * scale + shift
            if runtime.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with capture(model, parts) as seen, runtime.autocast():
                logits.append(model(x).float().cpu())
            for i, (layer, take) in enumerate(parts):
                if f"{layer}:{take}" not in seen:
                    raise CnnlabError(f"layer {layer!r} did not run for this input")
                features[i].append(seen[f"{layer}:{take}"])
    if not logits:
        return torch.zeros(0, 0), [torch.zeros(0, 0) for _ in parts]
    return torch.cat(logits), [torch.cat(f) for f in features]


def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    preprocess: Preprocess,
    runtime: Runtime,
    batch_size: int = 512,
) -> torch.Tensor:
    """uint8 (N, C, H, W) in, float32 logits (N, K) out on the CPU, in eval mode."""
    return logits_and_features(model, images, preprocess, runtime, (), batch_size)[0]
