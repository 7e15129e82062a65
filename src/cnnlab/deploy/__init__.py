"""Deployment: ONNX export and the inference backends behind predict, the app and the API.

`BACKENDS` is defined here, not in `backends.py`, so that the CLI's parser can list the choices
without loading torch (importing `backends.py` does); the rest loads when asked."""

from cnnlab.lazy import lazy_exports

BACKENDS = ("torch", "onnx")  # the engines that run a bundle's forward pass

lazy_exports(
    globals(),
    dict.fromkeys(("Backend", "use_backend"), "cnnlab.deploy.backends"),
    eager=("BACKENDS",),
)
