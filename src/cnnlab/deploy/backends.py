"""Which engine runs a bundle's forward pass: PyTorch (the default) or ONNX Runtime.

A backend turns the uint8 batch that `Bundle.run` receives into logits and the bundle's
out-of-distribution features, in one pass of one engine; the bundle then applies its own
temperature, threshold and check, so both backends decide and flag alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from cnnlab.bundle.loading import Bundle
from cnnlab.deploy import BACKENDS
from cnnlab.errors import CnnlabError


class Backend(Protocol):
    name: str

    def run(
        self, images: torch.Tensor, batch_size: int = 256
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """uint8 (N, C, H, W) at the bundle's size -> float32 logits (N, K) and the features of
        each part of the bundle's out-of-distribution check (N, D_i) (none without one), on
        the CPU."""
        ...


def use_backend(bundle: Bundle, name: str = "torch", onnx_file: str | Path | None = None) -> Bundle:
    """Point `bundle.run` (and so `predict_images`, every surface's path) at a backend; returns
    the bundle."""
    if name not in BACKENDS:
        raise CnnlabError(f"unknown backend {name!r} (use {' or '.join(BACKENDS)})")
    if name == "torch":
        if onnx_file:
            raise CnnlabError("--onnx FILE goes with --backend onnx")
        bundle.backend = None
    else:
        from cnnlab.deploy.onnx_source import onnx_backend_for

        bundle.backend = onnx_backend_for(bundle, onnx_file)
    return bundle


def load_with_backend(
    ref: str | Path,
    name: str = "torch",
    onnx_file: str | Path | None = None,
    require_signed: str | Path | None = None,
) -> Bundle:
    """`load_bundle` then `use_backend`: what predict and serve start with. For ONNX the
    PyTorch model is built only if the graph's source needs it (an export kept from these
    very weights does not: a warm `serve --backend onnx` imports neither timm nor torchvision)."""
    from cnnlab.bundle.loading import load_bundle

    bundle = load_bundle(ref, require_signed=require_signed, build_model=name != "onnx")
    return use_backend(bundle, name, onnx_file)


def backend_name(bundle: Bundle) -> str:
    return getattr(bundle.backend, "name", "torch")
