"""The HTTP prediction API (FastAPI): `create_app(bundles)`; `cnnlab serve` runs it with uvicorn
(cnnlab.serve.server). ServeLimits loads nothing heavy; create_app (torch) loads when asked."""

from typing import Any

from cnnlab.serve.limits import ServeLimits

__all__ = ["ServeLimits", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from cnnlab.serve.api import create_app

        return create_app
    raise AttributeError(f"module 'cnnlab.serve' has no attribute {name!r}")
