"""Batched, gradient-free forward passes: the one path evaluate, predict, app and API share."""

from __future__ import annotations

import torch
import torch.nn as nn

from cnnlab.data.preprocess import Preprocess
from cnnlab.runtime.device import Runtime
from cnnlab.runtime.taps import evaluating


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    preprocess: Preprocess,
    runtime: Runtime,
    batch_size: int = 512,
) -> torch.Tensor:
    """uint8 (N, C, H, W) in, float32 logits (N, K) out on the CPU, in eval mode (a model in it
    already, as a loaded bundle's, is not touched: concurrent callers share it)."""
    scale, shift = preprocess.affine(runtime.device)
    outs = []
    with evaluating(model):
        for chunk in images.split(batch_size):
            x = chunk.to(runtime.device, non_blocking=True).float() * scale + shift
            if runtime.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with runtime.autocast():
                out = model(x)
            outs.append(out.float().cpu())
    if not outs:
        return torch.zeros(0, 0)
    return torch.cat(outs)
