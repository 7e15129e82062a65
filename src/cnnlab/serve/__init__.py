"""The HTTP prediction API (FastAPI): `create_app(bundles)`; `cnnlab serve` runs it with uvicorn
(cnnlab.serve.server). ServeLimits loads nothing heavy; create_app (torch) loads when asked."""

from cnnlab.lazy import lazy_exports
from cnnlab.serve.limits import ServeLimits as ServeLimits

lazy_exports(globals(), {"create_app": "cnnlab.serve.api"}, eager=("ServeLimits",))
