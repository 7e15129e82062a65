"""Deployment: ONNX export and the inference backends behind predict, the app and the API."""

from cnnlab.deploy.backends import BACKENDS, Backend, use_backend

__all__ = ["BACKENDS", "Backend", "use_backend"]
