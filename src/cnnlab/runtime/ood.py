"""The out-of-distribution check a bundle carries: is this input like the training images?

A classifier answers for every input, a photo of a cat given to a chest X-ray model included.
The check is the Mahalanobis distance to the nearest class mean, with one covariance shared by
the classes (Lee et al., NeurIPS 2018), measured on two views of the model's features, as
their "feature ensemble" does:

- an early stage (the first at a quarter of the input's resolution or less), each channel's
  mean and spread over the image: intensity and texture statistics, which tell an inverted
  X-ray or a digit from an X-ray even where the last features would not;
- the features the classifier head reads (the input of its first dense layer): what the
  image shows.

Each distance is divided by its own cut-off (a high percentile of the held-out validation
images' distances); the larger of the two is the input's distance, and one beyond the
check's threshold "does not look like the training images". The label is still given.

Stored compactly: `ood.safetensors` holds each part's class means and its covariance's leading
eigenvectors with their variances; the rest of the space shares one variance (probabilistic
PCA), so a 1280-wide feature needs a few hundred vectors, not a 1280x1280 matrix. bundle.json's
`ood` block holds the layers, the scales and the threshold. Fitting is training's work
(`cnnlab.evaluate.ood_fit`); applying it is here, so predict, the app and the API judge alike.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.fileio import MIB
from cnnlab.runtime.taps import evaluating, hooked

OOD_FILE = "ood.safetensors"
SENTENCE = "Does not look like the training images"
TAKES = ("stats", "input")  # a stage's per-channel mean and std / a layer's input, flattened


@dataclass
class OODPart:
    """One view of the features: class means and a low-rank-plus-one precision of their shared
    covariance, and the distance that counts as 1 (its cut-off on the held-out images)."""

    layer: str
    take: str  # "stats" (of the layer's output map) or "input" (of the layer, flattened)
    means: torch.Tensor  # (K, D)
    components: torch.Tensor  # (k, D) orthonormal leading eigenvectors
    variances: torch.Tensor  # (k,) their eigenvalues (shrunk: never 0)
    residual_variance: float  # the mean eigenvalue of the rest of the space
    scale: float = 1.0

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) features -> (N,) Mahalanobis distance to the nearest class mean (unscaled)."""
        x = features.double()
        mu, v = self.means.double(), self.components.double()
        # |x - mu_c|^2 and its part in the kept directions, without an (N, K, D) tensor
        full = (x.square().sum(1, keepdim=True) - 2 * x @ mu.T + mu.square().sum(1)).clamp_min(0)
        proj = (x @ v.T)[:, None, :] - (mu @ v.T)[None]  # (N, K, k)
        inside = (proj.square() / self.variances.double()).sum(-1)
        rest = (full - proj.square().sum(-1)).clamp_min(0)
        d2 = inside + rest / self.residual_variance
        return d2.min(1).values.sqrt().float()


@dataclass
class OODCheck:
    parts: list[OODPart]
    threshold: float  # scaled distances above this are out of distribution
    record: dict[str, Any] = field(default_factory=dict)  # bundle.json's `ood` block

    @property
    def layers(self) -> list[tuple[str, str]]:
        return [(p.layer, p.take) for p in self.parts]

    def distances(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Each part's features (as `runtime.inference.logits_and_features` gives them) ->
        (N,) the larger of the parts' distances, each in units of its own cut-off."""
        scaled = [p.distances(f) / p.scale for p, f in zip(self.parts, features, strict=True)]
        return torch.stack(scaled).max(0).values

    def flags(self, distances: torch.Tensor) -> torch.Tensor:
        return distances > self.threshold

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for i, p in enumerate(self.parts):
            out |= {f"{i}.means": p.means.float().contiguous(),
                    f"{i}.components": p.components.float().contiguous(),
                    f"{i}.variances": p.variances.float().contiguous(),
                    f"{i}.residual_variance": torch.tensor([p.residual_variance])}  # fmt: skip
        return out


def save_ood(folder: Path, check: OODCheck) -> Path:
    """Write ood.safetensors into a bundle folder, atomically; bundle.json takes `check.record`."""
    from safetensors.torch import save_file

    from cnnlab.fileio import atomic_path

    with atomic_path(Path(folder) / OOD_FILE) as tmp:
        save_file(check.tensors(), str(tmp))
    return Path(folder) / OOD_FILE


OOD_MAX_BYTES = 256 * MIB  # (classes + 256 eigenvectors) x 4,096 floats per part: far less


def load_ood(
    folder: Path, record: dict[str, Any] | None, data: bytes | None = None
) -> OODCheck | None:
    """The bundle's check, or None when bundle.json has no `ood` block (older bundles). `data`:
    the file's bytes as the load verified them against the seal; else read here, capped, a
    plain file inside `folder` only. Every tensor must be finite and of the shape the record
    gives: a NaN mean would turn every distance NaN, and so the check silently off."""
    if not record:
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load

    from cnnlab.fileio import read_inside

    name = record.get("file", OOD_FILE)
    where = Path(folder) / str(name)
    if data is None:
        data = read_inside(folder, name, OOD_MAX_BYTES)
    try:
        t = load(data)
        parts = [_part(t, i, p, where) for i, p in enumerate(record["parts"])]
        threshold = float(record["threshold"])
    except (SafetensorError, KeyError, IndexError, TypeError, ValueError) as e:
        raise CnnlabError(
            f"bundle {folder} has an `ood` block but {where.name} does not match it "
            f"({type(e).__name__}: {e}); refit it with `cnnlab ood-fit`"
        ) from None
    extra = sorted(set(t) - {f"{i}.{k}" for i in range(len(parts)) for k in _TENSORS})
    if extra:
        raise CnnlabError(f"{where}: holds tensors its record does not name: {', '.join(extra)}")
    return OODCheck(parts, threshold, dict(record))


_TENSORS = ("means", "components", "variances", "residual_variance")


def _part(t: dict[str, torch.Tensor], i: int, p: dict[str, Any], where: Path) -> OODPart:
    """Part i of the check, its tensors checked against its record (features D, rank k)."""
    d, k = int(p["features"]), int(p["rank"])
    means = t[f"{i}.means"]
    shapes = {"means": (means.shape[0] if means.dim() == 2 else -1, d), "components": (k, d),
              "variances": (k,), "residual_variance": (1,)}  # fmt: skip
    for key, shape in shapes.items():
        tensor = t[f"{i}.{key}"]
        if tuple(tensor.shape) != shape or not tensor.is_floating_point() or not shape[0] >= 1:
            raise CnnlabError(f"{where}: tensor {i}.{key} has shape {tuple(tensor.shape)} "
                              f"({tensor.dtype}); the record says {shape}")  # fmt: skip
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise CnnlabError(f"{where}: tensor {i}.{key} holds {bad:,} NaN or infinite values")
    for key in ("variances", "residual_variance"):
        if not bool((t[f"{i}.{key}"] > 0).all()):
            raise CnnlabError(f"{where}: tensor {i}.{key} must be positive (variances)")
    return OODPart(str(p["layer"]), str(p["take"]), means, t[f"{i}.components"],
                   t[f"{i}.variances"], float(t[f"{i}.residual_variance"][0]), float(p["scale"]))  # fmt: skip


# ----------------------------------------------------------------------------- which features


MAX_FEATURES = 4096  # wider, a covariance (and its eigenvectors) would not fit in memory


def head_layer(model: nn.Module) -> str:
    """The first dense layer of the classifier head no wider than MAX_FEATURES: its input is
    what the head reads. (A Keras-style net's first dense layer reads the flattened feature
    map, 36,992 wide for the brief's 150x150 folder CNN: then the next one, 512 wide.)"""
    head = getattr(model, "head", None)
    linears = [m for m in (head.modules() if isinstance(head, nn.Module) else ())
               if isinstance(m, nn.Linear)]  # fmt: skip
    if not linears and hasattr(model, "get_classifier"):
        linears = [model.get_classifier()]
    if not linears:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
    narrow = [m for m in linears if m.in_features <= MAX_FEATURES] or linears[-1:]
    for name, module in model.named_modules():
        if narrow and module is narrow[0]:
            return name
    raise CnnlabError("the model has no dense layer whose input could serve as features")


def stage_names(model: nn.Module) -> list[str]:
    """The feature extractor's stages in forward order: a transfer model's backbone stages
    (TransferNet.stage_names), else the layers of a `features` Sequential."""
    if hasattr(model, "stage_names") and hasattr(model, "backbone"):
        inner = "backbone.model." if hasattr(model.backbone, "model") else "backbone."
        return [inner + s for s in model.stage_names]
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential):
        return [f"features.{n}" for n, _ in features.named_children()]
    return []


def early_stage(model: nn.Module, input_shape: tuple[int, int, int]) -> str | None:
    """The first stage whose feature map is at a quarter of the input's height or less (the
    last stage with a feature map when none is), found by one forward pass of a blank image."""
    modules = dict(model.named_modules())
    names = [n for n in stage_names(model) if n in modules]
    shapes: dict[str, tuple[int, ...]] = {}

    def note(name: str, out: torch.Tensor) -> None:
        shapes[name] = tuple(out.shape)

    x = torch.zeros(1, *input_shape, device=_device(model))
    with evaluating(model), torch.inference_mode(), hooked(model, names, note):
        model(x)
    maps = [n for n in names if len(shapes.get(n, ())) == 4]
    small = [n for n in maps if shapes[n][2] <= math.ceil(input_shape[1] / 4)]
    return small[0] if small else (maps[-1] if maps else None)


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def default_parts(model: nn.Module, input_shape: tuple[int, int, int]) -> list[tuple[str, str]]:
    """[(an early stage, "stats"), (the head's first dense layer, "input")]."""
    stage = early_stage(model, input_shape)
    return [*([(stage, "stats")] if stage else []), (head_layer(model), "input")]


# ----------------------------------------------------------------------------- capturing


def _features(take: str, t: torch.Tensor) -> torch.Tensor:
    """A part's features of one batch: each channel's mean and spread over the map ("stats"),
    or the tensor flattened ("input"), as float32 on the CPU."""
    t = t.detach().float()
    if take == "stats":
        t = torch.cat([t.mean((2, 3)), t.flatten(2).std(2, correction=0)], 1)
    return t.flatten(1).cpu()


@contextlib.contextmanager
def capture(model: nn.Module, parts: list[tuple[str, str]]) -> Iterator[dict[str, torch.Tensor]]:
    """The parts' features of the forward pass run inside the block, in this caller's dict:
    each layer's first call only (the image itself, not the extra views test-time
    augmentation runs). One block per pass: `runtime.inference.logits_and_features` for
    PyTorch, and the ONNX export, whose graph returns the same features as outputs."""
    modules = dict(model.named_modules())
    missing = [layer for layer, _ in parts if layer not in modules]
    if missing:
        raise CnnlabError(f"the model has no layer {missing[0]!r} to read features from")
    unknown = [take for _, take in parts if take not in TAKES]
    if unknown:
        raise CnnlabError(f"unknown feature kind {unknown[0]!r} (use {' or '.join(TAKES)})")
    seen: dict[str, torch.Tensor] = {}

    def keeper(take: str):
        def keep(layer: str, t: torch.Tensor) -> None:
            seen[f"{layer}:{take}"] = _features(take, t)

        return keep

    with contextlib.ExitStack() as stack:
        for take in TAKES:
            layers = list(dict.fromkeys(layer for layer, t in parts if t == take))
            if layers:
                stack.enter_context(hooked(model, layers, keeper(take), inputs=take == "input"))
        yield seen
