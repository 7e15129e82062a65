"""The HTTP prediction API (FastAPI): `create_app(bundles)`; `cnnlab serve` runs it with uvicorn."""

from cnnlab.serve.app import ServeLimits, create_app

__all__ = ["ServeLimits", "create_app"]
