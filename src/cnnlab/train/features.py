"""Pooled backbone features, computed once and cached on disk.

A frozen backbone without augmentation gives the same features every epoch, so running
it once and training the head on the stored vectors turns minutes per epoch into
milliseconds. The cache key covers the images, the backbone's weights and the
preprocessing, so any change to one of them computes the features anew.
"""

from __future__ import annotations

import hashlib
import logging
import time

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cnnlab.data.cache import enforce_limit, feature_cache_dir, touch
from cnnlab.data.preprocess import Preprocess
from cnnlab.fileio import atomic_path, on_terminal
from cnnlab.runtime.device import Runtime

log = logging.getLogger("cnnlab")


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
    for chunk in tqdm(
        chunks, desc="features", unit="batch", disable=not (progress and on_terminal()), leave=False
    ):
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
                feats = load_file(str(path))["features"]
                touch(path)
                return feats, True
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
        enforce_limit(keep=path.stem)
    return feats, False
