"""Deployment: ONNX export and the inference backends behind predict, the app and the API.

`BACKENDS` is defined here, not in `backends.py`, so that the CLI's parser can list the choices
without loading torch (importing `backends.py` does); the rest loads when asked."""

from typing import Any

BACKENDS = ("torch", "onnx")  # the engines that run a bundle's forward pass

__all__ = ["BACKENDS", "Backend", "use_backend"]


def __getattr__(name: str) -> Any:
    if name in ("Backend", "use_backend"):
        from cnnlab.deploy import backends

        return getattr(backends, name)
    raise AttributeError(f"module 'cnnlab.deploy' has no attribute {name!r}")
