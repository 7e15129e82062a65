"""Pooled backbone features, computed once and cached on disk.

A frozen backbone without augmentation gives the same features every epoch, so running
it once and training the head on the stored vectors turns minutes per epoch into
milliseconds. The cache key covers the images, the backbone's weights and the
preprocessing, so any change to one of them computes the features anew.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cnnlab.data.download import cache_dir
from cnnlab.data.preprocess import Preprocess
from cnnlab.fileio import atomic_path
from cnnlab.runtime.device import Runtime

log = logging.getLogger("cnnlab")


def feature_cache_dir() -> Path:
    """`$CNNLAB_FEATURE_CACHE`, else `features/` in cnnlab's cache (benchmarks point it at a
    fresh folder to time a cold start)."""
    return Path(os.environ.get("CNNLAB_FEATURE_CACHE") or cache_dir() / "features")


def cache_key(model: torch.nn.Module, images: torch.Tensor, preprocess: Preprocess) -> str:
    """A digest of the images, the backbone's weights and buffers, and the preprocessing."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((tuple(images.shape), preprocess.to_dict(), getattr(model, "arch", ""))).encode())
    h.update(images.contiguous().numpy().tobytes())
    for name, tensor in model.backbone.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def compute_features(
    model: torch.nn.Module,
    images: torch.Tensor,
    preprocess: Preprocess,
    runtime: Runtime,
    batch_size: int = 64,
    progress: bool = False,
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (N, D) pooled features, the backbone in eval mode."""
    from tqdm import tqdm

    was = model.training
    model.eval()
    model.to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    scale, shift = preprocess.affine(runtime.device)
    out = []
    chunks = images.split(batch_size)
    for chunk in tqdm(chunks, desc="features", unit="batch", disable=not progress, leave=False):
        x = chunk.to(runtime.device).float() * scale + shift
        if runtime.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # inference mode only here: parameters moved above must stay ordinary tensors
        with torch.inference_mode(), runtime.autocast():
            out.append(model.pooled_features(x).float().cpu())
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0, 0)


def cached_features(
    model: torch.nn.Module,
    images: torch.Tensor,
    preprocess: Preprocess,
    runtime: Runtime,
    batch_size: int = 64,
    use_cache: bool = True,
    progress: bool = False,
) -> tuple[torch.Tensor, bool]:
    """(features, came_from_cache); a missing or unreadable cache file is computed and rewritten."""
    path = None
    if use_cache:
        path = feature_cache_dir() / f"{cache_key(model, images, preprocess)}.safetensors"
        if path.is_file():
            try:
                return load_file(str(path))["features"], True
            except (SafetensorError, OSError, KeyError):
                log.warning("feature cache %s is unreadable; computing the features again", path)
    started = time.perf_counter()
    feats = compute_features(model, images, preprocess, runtime, batch_size, progress)
    log.info(
        "backbone features for %d images in %.1f s", len(images), time.perf_counter() - started
    )
    if path is not None:
        with atomic_path(path) as tmp:
            save_file({"features": feats.contiguous()}, str(tmp))
    return feats, False
