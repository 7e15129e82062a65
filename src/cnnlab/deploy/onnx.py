"""ONNX export with a parity check, and the ONNX Runtime backend for predict, app and API.

The graph takes the same uint8 (N, C, H, W) batch that `Bundle.predict_proba` takes, at
the bundle's size, with the bundle's mean/std folded in as one multiply-add: nobody can
feed it pixels normalised differently (pytorch #80133). Decoding and resizing stay in
`Preprocess.load`, shared by both backends. Outputs: `logits` and `probabilities`
(temperature-calibrated; [1 - p, p] for one-logit binary models), and for a bundle with an
out-of-distribution check `ood.0`, `ood.1`, ...: the features each part of the check reads,
taken in the same pass (`runtime.ood.capture`), so the ONNX backend runs one engine per batch.
The batch axis is dynamic.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from cnnlab.bundle.loading import Bundle
from cnnlab.bundle.seal import WEIGHTS
from cnnlab.data.preprocess import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_path, file_digest
from cnnlab.machine import available_cpus
from cnnlab.runtime.decision import probabilities
from cnnlab.runtime.device import Runtime
from cnnlab.runtime.inference import logits_and_features
from cnnlab.runtime.ood import capture

log = logging.getLogger("cnnlab")

INPUT, OUTPUTS = "images", ("logits", "probabilities")
OPSET = 18
PARITY_LIMIT = 1e-4  # max |difference| of probabilities between PyTorch and ONNX Runtime
OOD_PARITY_LIMIT = 1e-3  # ... and of OOD distances (in units of the cut-off; relative beyond 1)
OOD_PARTS = "cnnlab.ood_parts"  # metadata: the (layer, take) pairs the ood.i outputs hold
PARITY_IMAGES = 64


def ood_outputs(parts: list[tuple[str, str]]) -> list[str]:
    return [f"ood.{i}" for i in range(len(parts))]


class Deployable(nn.Module):
    """uint8 images in; logits, calibrated probabilities and the out-of-distribution check's
    features (one output per part, read as PyTorch reads them) out: what gets exported."""

    def __init__(
        self,
        model: nn.Module,
        preprocess: Preprocess,
        temperature: float,
        parts: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        scale, shift = preprocess.affine("cpu")
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)
        self.temperature = float(temperature)
        self.parts = list(parts or [])

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with capture(self.model, self.parts) as seen:
            logits = self.model(images.to(torch.float32) * self.scale + self.shift)
        features = [seen[f"{layer}:{take}"] for layer, take in self.parts]
        z = logits / self.temperature
        if z.shape[1] == 1:
            p = torch.sigmoid(z)
            return logits, torch.cat([1 - p, p], 1), *features
        return logits, torch.softmax(z, 1), *features


@dataclass
class ParityReport:
    max_abs_diff: float
    n: int
    source: str  # where the images came from
    ood_max_diff: float | None = None  # out-of-distribution distances; None: no check

    def describe(self) -> str:
        ood = ("" if self.ood_max_diff is None else
               f"; out-of-distribution distances: max |d_torch - d_onnx| / max(1, d_torch) = "
               f"{self.ood_max_diff:.2e} (limit {OOD_PARITY_LIMIT:.0e})")  # fmt: skip
        return (
            f"parity: max |p_torch - p_onnx| = {self.max_abs_diff:.2e} over {self.n} images "
            f"from {self.source} (limit {PARITY_LIMIT:.0e}){ood}"
        )

    @property
    def passed(self) -> bool:
        ood = self.ood_max_diff
        return self.max_abs_diff <= PARITY_LIMIT and (ood is None or ood <= OOD_PARITY_LIMIT)


@dataclass
class ExportResult:
    path: Path | None
    size_bytes: int
    parity: ParityReport
    seconds: float
    outputs: tuple[str, ...] = OUTPUTS  # the graph's outputs: OUTPUTS, then ood.0, ood.1, ...


# ----------------------------------------------------------------------------- export


def weights_digest(bundle: Bundle) -> str:
    """sha256 of the bundle's weights file: ties an ONNX file to the weights it came from."""
    sealed = getattr(bundle, "sealed", {}).get(WEIGHTS)
    if sealed:  # the digest of the very bytes the load verified and used
        return sealed["sha256"]
    if bundle.path is None or not (bundle.path / WEIGHTS).is_file():
        return ""
    return file_digest(bundle.path / WEIGHTS)


def onnx_model_bytes(bundle: Bundle) -> bytes:
    """Export the bundle's model (fp32, CPU, contiguous) with torch.export to ONNX bytes, with
    its out-of-distribution check's features as outputs when it has one."""
    model = copy.deepcopy(bundle.model).float().cpu().eval()
    model.to(memory_format=torch.contiguous_format)
    parts = bundle.ood.layers if bundle.ood is not None else []
    wrapped = Deployable(model, bundle.preprocess, bundle.temperature, parts).eval()
    c, (h, w) = bundle.preprocess.channels, bundle.preprocess.size
    example = torch.zeros(2, c, h, w, dtype=torch.uint8)  # batch 2: a 1 would be specialised
    chatter = io.StringIO()  # the exporter prints its progress on stdout; keep stdout clean
    try:
        with contextlib.redirect_stdout(chatter):
            program = torch.onnx.export(
                wrapped, (example,), dynamo=True, opset_version=OPSET, verbose=False,
                input_names=[INPUT], output_names=[*OUTPUTS, *ood_outputs(parts)],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            )  # fmt: skip
    except Exception as e:  # noqa: BLE001 - exporter errors come in many types
        log.debug("exporter output:\n%s", chatter.getvalue())
        raise CnnlabError(
            f"cannot export {bundle.meta['model']['name']} to ONNX: {type(e).__name__}: {e}"
        ) from None
    proto = program.model_proto
    meta = {
        "cnnlab.bundle": bundle.name,
        "cnnlab.model": bundle.meta["model"]["name"],
        "cnnlab.classes": json.dumps(bundle.classes),
        "cnnlab.class_mode": str(bundle.meta.get("class_mode", "categorical")),
        "cnnlab.decision": json.dumps(dict(bundle.decision)),
        "cnnlab.preprocess": json.dumps(bundle.preprocess.to_dict()),
        "cnnlab.input": f"uint8 [N, {c}, {h}, {w}], 0-255, normalisation inside the graph",
        "cnnlab.weights_sha256": weights_digest(bundle),
        OOD_PARTS: json.dumps(parts),
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def parity_check(
    bundle: Bundle, model: bytes | str | Path, images: torch.Tensor
) -> tuple[float, float | None]:
    """max |difference| of calibrated probabilities, PyTorch fp32 vs ONNX Runtime, and of the
    out-of-distribution distances (relative where they pass 1, so a far-off synthetic image's
    fp32 rounding is not a failure; None without a check)."""
    fp32 = Runtime(torch.device("cpu"), None, False)
    model_cpu = copy.deepcopy(bundle.model).float().cpu()
    parts = bundle.ood.layers if bundle.ood is not None else []
    logits, features = logits_and_features(model_cpu, images, bundle.preprocess, fp32, parts, 64)
    got_logits, got_features = OnnxBackend(model).run(images, 64)
    if not len(images):
        return 0.0, None if bundle.ood is None else 0.0
    ref, got = (probabilities(z, bundle.temperature) for z in (logits, got_logits))
    diff = float((ref - got).abs().max())
    if bundle.ood is None:
        return diff, None
    ref_d, got_d = (bundle.ood.distances(f) for f in (features, got_features))
    return diff, float(((ref_d - got_d).abs() / ref_d.abs().clamp_min(1)).max())


def export_onnx(
    bundle: Bundle,
    path: str | Path | None = None,
    images: torch.Tensor | None = None,
    source: str = "",
) -> tuple[bytes, ExportResult]:
    """Export, check parity on `images` (uint8 at the bundle's size), then write `path` atomically.

    A parity error above PARITY_LIMIT (or OOD_PARITY_LIMIT for the out-of-distribution
    distances) is a CnnlabError and leaves no file behind.
    """
    started = time.perf_counter()
    if images is None:
        images, source = parity_images(bundle)
    data = onnx_model_bytes(bundle)
    diff, ood_diff = parity_check(bundle, data, images)
    report = ParityReport(diff, len(images), source or "the given images", ood_diff)
    if not report.passed:
        raise CnnlabError(f"ONNX export failed the parity check: {report.describe()}")
    out = None
    if path is not None:
        out = Path(path)
        with atomic_path(out) as tmp:
            tmp.write_bytes(data)
    outputs = (*OUTPUTS, *ood_outputs(bundle.ood.layers if bundle.ood is not None else []))
    return data, ExportResult(out, len(data), report, time.perf_counter() - started, outputs)


# ----------------------------------------------------------------------------- parity images


def parity_images(
    bundle: Bundle, paths: list[str] | None = None, n: int = PARITY_IMAGES
) -> tuple[torch.Tensor, str]:
    """Real images for the parity check: `paths` (files/folders), else the bundle's own data
    source when it is on this machine, else synthetic images (said so in the report)."""
    from cnnlab.data.images import ImageReadError
    from cnnlab.predict import expand_inputs

    if paths:
        files = _spread(expand_inputs(paths, recursive=True), n)
        tensors = []
        for f in files:
            try:
                tensors.append(bundle.preprocess.load(f))
            except ImageReadError as e:
                raise CnnlabError(f"parity image {f}: {e}") from None
        return torch.stack(tensors), f"{len(files)} files under {', '.join(paths)}"
    source = str(bundle.meta.get("data", {}).get("source") or "")
    if source and Path(source).exists():
        try:
            return _from_source(bundle, source, n), f"the training data {source}"
        except (CnnlabError, ImageReadError, OSError, ValueError) as e:
            log.warning("could not read parity images from %s (%s)", source, e)
    log.warning("no real images for the parity check (pass --images PATH); using synthetic ones")
    return synthetic_images(bundle.preprocess, n), "synthetic images (no real ones found)"


def _spread(items: list, n: int) -> list:
    if len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def _from_source(bundle: Bundle, source: str, n: int) -> torch.Tensor:
    from cnnlab.data.folder import is_image_folder
    from cnnlab.data.images import IMAGE_SUFFIXES
    from cnnlab.data.sources import load_source

    path = Path(source)
    if path.is_dir() and is_image_folder(path):  # read files as serving does: cheap for big sets
        files = sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        return torch.stack([bundle.preprocess.load(f) for f in _spread(files, n)])
    pre = bundle.preprocess
    mode = "grayscale" if pre.channels == 1 else "rgb"
    loaded = load_source(source, None, pre.size, mode, pre.resize)
    data = next(iter(loaded.splits.values()))
    return data.images[torch.linspace(0, len(data) - 1, min(n, len(data))).long()]


def synthetic_images(pre: Preprocess, n: int, seed: int = 0) -> torch.Tensor:
    """Smooth gradients plus noise: not real images, but they use the whole 0-255 range."""
    g = torch.Generator().manual_seed(seed)
    c, (h, w) = pre.channels, pre.size
    ramp = torch.linspace(0, 255, w).view(1, 1, 1, w).expand(n, c, h, w)
    noise = torch.randint(0, 256, (n, c, h, w), generator=g).float()
    mix = torch.rand(n, 1, 1, 1, generator=g)
    return (ramp * mix + noise * (1 - mix)).round().clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------- the backend


class OnnxBackend:
    """Runs the exported graph with ONNX Runtime: same uint8 input, logits and out-of-distribution
    features as PyTorch, all from one session run per chunk."""

    name = "onnx"

    def __init__(self, model: bytes | str | Path, threads: int = 0) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or available_cpus()
        opts.inter_op_num_threads = 1
        # ORT's idle workers spin-wait by default: on a small CPU they steal the cores that
        # PyTorch, the HTTP server and the request batcher in the same process need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        wanted = ("CUDAExecutionProvider", "CPUExecutionProvider")
        providers = [p for p in wanted if p in ort.get_available_providers()]
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, opts, providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CnnlabError(f"ONNX Runtime cannot load the model: {e}") from None
        names = [i.name for i in self.session.get_inputs()]
        if names != [INPUT]:
            raise CnnlabError(f"not a cnnlab ONNX export (inputs {names}, expected [{INPUT!r}])")
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        try:  # a file exported before the check (or by an older cnnlab) has no ood outputs
            self.parts = [tuple(p) for p in json.loads(self.metadata.get(OOD_PARTS, "[]"))]
        except (TypeError, ValueError):
            raise CnnlabError(
                f"not a cnnlab ONNX export (metadata {OOD_PARTS} unreadable)"
            ) from None
        outputs = {o.name for o in self.session.get_outputs()}
        self.outputs = [OUTPUTS[0], *ood_outputs(self.parts)]
        if not set(self.outputs) <= outputs:
            raise CnnlabError(f"not a cnnlab ONNX export (outputs {sorted(outputs)}, expected "
                              f"{self.outputs})")  # fmt: skip

    def run(
        self, images: torch.Tensor, batch_size: int = 256
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """uint8 (N, C, H, W) -> float32 logits (N, K) and each exported part's features
        (N, D_i), in chunks of `batch_size`: one session run per chunk."""
        chunks = [
            self.session.run(self.outputs, {INPUT: np.ascontiguousarray(chunk.numpy())})
            for chunk in images.cpu().split(max(1, batch_size))
        ]
        if not chunks:
            return torch.zeros(0, 0), [torch.zeros(0, 0) for _ in self.parts]
        logits, *features = (
            torch.from_numpy(np.concatenate(outs)) for outs in zip(*chunks, strict=True)
        )
        return logits, features

    def logits(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        return self.run(images, batch_size)[0]
