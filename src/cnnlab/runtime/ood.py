"""The out-of-distribution check a bundle carries: is this input like the training images?

A classifier answers for every input, a photo of a cat given to a chest X-ray model included.
The check is the Mahalanobis distance (Lee et al., NeurIPS 2018) of the model's penultimate
features (the input of its last dense layer) to the nearest class mean, with one covariance
shared by the classes; an input farther than the cut-off (a high percentile of the held-out
validation images' distances) "does not look like the training images". The label is still
given, with that caveat.

Stored compactly: `ood.safetensors` holds the class means and the covariance's leading
eigenvectors with their variances; the rest of the feature space gets one shared variance
(probabilistic PCA), so a 1280-wide feature needs a few hundred vectors, not a 1280x1280
matrix. bundle.json's `ood` block holds the cut-off and how it was fitted. Fitting is
training's work (`cnnlab.train.ood`); applying it is here, so predict, the app and the API
judge alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnlab.data.preprocess import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.runtime.device import Runtime

OOD_FILE = "ood.safetensors"
SENTENCE = "Does not look like the training images"


@dataclass
class OODCheck:
    """Class means and a low-rank-plus-diagonal precision of the shared covariance, and the cut-off."""

    layer: str  # the module whose input is the feature vector (e.g. head.dense2)
    means: torch.Tensor  # (K, D) class means of the training features
    components: torch.Tensor  # (k, D) orthonormal leading eigenvectors of the shared covariance
    variances: torch.Tensor  # (k,) their eigenvalues (shrunk: never 0)
    residual_variance: float  # the mean eigenvalue of the rest of the space
    threshold: float  # distances above this are out of distribution
    record: dict[str, Any] = field(default_factory=dict)  # bundle.json's `ood` block

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) features -> (N,) Mahalanobis distance to the nearest class mean."""
        x = features.double()
        mu, v = self.means.double(), self.components.double()
        # |x - mu_c|^2 and its part in the kept directions, without an (N, K, D) tensor
        full = (x.square().sum(1, keepdim=True) - 2 * x @ mu.T + mu.square().sum(1)).clamp_min(0)
        proj = (x @ v.T)[:, None, :] - (mu @ v.T)[None]  # (N, K, k)
        inside = (proj.square() / self.variances.double()).sum(-1)
        rest = (full - proj.square().sum(-1)).clamp_min(0)
        d2 = inside + rest / self.residual_variance
        return d2.min(1).values.sqrt().float()

    def flags(self, distances: torch.Tensor) -> torch.Tensor:
        return distances > self.threshold

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"means": self.means.float().contiguous(),
                "components": self.components.float().contiguous(),
                "variances": self.variances.float().contiguous(),
                "residual_variance": torch.tensor([self.residual_variance])}  # fmt: skip


def save_ood(folder: Path, check: OODCheck) -> Path:
    """Write ood.safetensors into a bundle folder, atomically; bundle.json takes `check.record`."""
    from safetensors.torch import save_file

    from cnnlab.fileio import atomic_path

    with atomic_path(Path(folder) / OOD_FILE) as tmp:
        save_file(check.tensors(), str(tmp), metadata={"layer": check.layer})
    return Path(folder) / OOD_FILE


def load_ood(folder: Path, record: dict[str, Any] | None) -> OODCheck | None:
    """The bundle's check, or None when bundle.json has no `ood` block (older bundles)."""
    if not record:
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / record.get("file", OOD_FILE)
    try:
        t = load_file(str(path))
        return OODCheck(str(record["layer"]), t["means"], t["components"], t["variances"],
                        float(t["residual_variance"][0]), float(record["threshold"]), dict(record))  # fmt: skip
    except (SafetensorError, OSError, KeyError, IndexError) as e:
        raise CnnlabError(
            f"bundle {folder} has an `ood` block but {path.name} is missing or unreadable ({e}); "
            "refit it with `cnnlab ood-fit`"
        ) from None


def feature_layer(model: nn.Module) -> str:
    """The penultimate features' module: the model's last dense layer (whose input they are)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if head is None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        head = linears[-1] if linears else None
    for name, module in model.named_modules():
        if module is head:
            return name
    raise CnnlabError("the model has no dense output layer whose input could serve as features")


class _Capture:
    """The input of one module, flattened, once per forward pass (`reset` before each pass)."""

    def __init__(self, module: nn.Module) -> None:
        self.seen: list[torch.Tensor] = []
        self.calls = 0
        self.handle = module.register_forward_pre_hook(self._hook)

    def _hook(self, module, args) -> None:
        self.calls += 1
        if self.calls == 1:  # the image itself; test-time augmentation calls again for its views
            self.seen.append(args[0].detach().flatten(1).float().cpu())

    def reset(self) -> None:
        self.calls = 0


@contextlib.contextmanager
def capture_input(model: nn.Module, layer: str) -> Iterator[_Capture]:
    modules = dict(model.named_modules())
    if layer not in modules:
        raise CnnlabError(f"the model has no layer {layer!r} to read features from")
    capture = _Capture(modules[layer])
    try:
        yield capture
    finally:
        capture.handle.remove()


@torch.inference_mode()
def logits_and_features(
    model: nn.Module,
    images: torch.Tensor,
    preprocess: Preprocess,
    runtime: Runtime,
    layer: str,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One eval-mode pass over uint8 (N, C, H, W): float32 logits (N, K) and the features that
    enter `layer` (N, D), both on the CPU."""
    was_training = model.training
    model.eval()
    scale, shift = preprocess.affine(runtime.device)
    logits = []
    with capture_input(model, layer) as capture:
        for chunk in images.split(batch_size):
            x = chunk.to(runtime.device, non_blocking=True).float() * scale + shift
            if runtime.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            capture.reset()
            with runtime.autocast():
                logits.append(model(x).float().cpu())
    model.train(was_training)
    if not logits:
        return torch.zeros(0, 0), torch.zeros(0, 0)
    return torch.cat(logits), torch.cat(capture.seen)
