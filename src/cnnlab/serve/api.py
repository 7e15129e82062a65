"""The HTTP prediction API: FastAPI over the same bundle, preprocessing and decision rule as the CLI.

    POST /v1/predict        multipart field `files` (one or more JPEG/PNG/DICOM images)
    GET  /v1/models         the models served
    GET  /v1/models/{name}  one model's metadata, card and readiness
    GET  /v1/health/live    liveness (HEAD too)
    GET  /v1/health/ready   readiness: models valid, queues below their bounds (503 if not)
    GET  /healthz           liveness, with batching statistics (HEAD too)

Every refusal is a 4xx JSON body {"error": code, "detail": message}; a request that cannot be
answered within its time budget is a 503 with Retry-After, at once when the queue's pace says
so, and so is one past the cap on requests under way; a Host the server does not answer to is
a 400 (guards.py: the probes pass both). Uploads stay in memory.

Here: the app put together, its life span (the batchers' worker threads) and its error
bodies. The routes and the predict path: routes.py; the models and their batchers: served.py.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from cnnlab.bundle.loading import Bundle
from cnnlab.serve.guards import AllowedHosts, RequestCap
from cnnlab.serve.guards import json_error as _error
from cnnlab.serve.limits import ServeLimits
from cnnlab.serve.multipart import UploadError
from cnnlab.serve.routes import router
from cnnlab.serve.served import Served
from cnnlab.serve.tokens import OPEN_PATHS, BearerAuth, TokenFile


def create_app(
    bundles: Bundle | Sequence[Bundle],
    limits: ServeLimits | None = None,
    allowed_hosts: Sequence[str] | None = None,
    record: bool = True,
    tokens: TokenFile | None = None,
) -> FastAPI:
    """An app serving `bundles` (the first is the default model); one micro-batcher per model.
    `allowed_hosts`: the Host names it answers (guards.AllowedHosts); None answers any.
    `record`: every decision goes to the decision store (unless CNNLAB_RECORDS=off).
    `tokens`: every route but the health probes asks for one of them (tokens.BearerAuth)."""
    from cnnlab.records.store import default_store
    from cnnlab.version import __version__

    served = Served([bundles] if isinstance(bundles, Bundle) else list(bundles),
                    limits or ServeLimits())  # fmt: skip
    app = FastAPI(
        title="cnnlab",
        version=__version__,
        description="Image classification with cnnlab model bundles.",
        lifespan=lifespan,
        exception_handlers=ERROR_HANDLERS,
    )
    app.state.served = served
    app.state.models, app.state.batchers = served.models, served.batchers
    app.state.limits = served.limits
    app.state.records = default_store() if record else None
    # the routes as the app's own: an included router is one opaque route, whose methods a
    # 405's Allow header could not name
    app.router.routes.extend(router.routes)
    app.add_middleware(RequestCap, limit=served.limits.max_requests)
    if tokens is not None:  # after the Host check: a wrong Host is refused before any token
        app.add_middleware(BearerAuth, tokens=tokens)
        app.openapi = lambda: with_bearer_scheme(app)  # type: ignore[method-assign]
    if allowed_hosts is not None:
        app.add_middleware(AllowedHosts, hosts=allowed_hosts)
    app.add_middleware(ServerTiming)  # the last added is the outermost: it times the others
    return app


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Each model's batcher runs on the server's event loop, from start-up to shutdown."""
    batchers = app.state.served.batchers.values()
    for batcher in batchers:
        batcher.start()
    yield
    for batcher in batchers:
        await batcher.stop()
        batcher.close()


def with_bearer_scheme(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI schema, saying that every operation but the health probes needs a bearer
    token (and may answer 401)."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)  # fmt: skip
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "a token from `cnnlab token add NAME --file FILE`"}
        }  # fmt: skip
        for path, operations in schema["paths"].items():
            if path.startswith(OPEN_PATHS):
                continue
            for op in operations.values():
                op["security"] = [{"bearer": []}]
                op.setdefault("responses", {})["401"] = {
                    "description": "no token, or not a valid one",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                }  # fmt: skip
        app.openapi_schema = schema
    return app.openapi_schema


# ----------------------------------------------------------------------------- error bodies


async def upload_error(request: Request, exc: UploadError) -> JSONResponse:
    return _error(exc.status, exc.code, exc.message)


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                         for e in exc.errors())  # fmt: skip
    return _error(422, "invalid_request", problems or "invalid request")


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:  # Starlette names the first route's methods, not the path's
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
    return _error(exc.status_code, code, str(exc.detail), headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this request's path."""
    any_method = {**request.scope, "method": ""}  # no route takes it: a path match is PARTIAL
    found = {m for r in request.app.routes if r.matches(any_method)[0] is not Match.NONE
             for m in getattr(r, "methods", None) or ()}  # fmt: skip
    return sorted(found)


ERROR_HANDLERS: dict[Any, Any] = {
    UploadError: upload_error,
    RequestValidationError: invalid_request,
    StarletteHTTPException: http_error,
}


class ServerTiming:
    """ASGI middleware: every answer says how long the server spent on it (`Server-Timing:
    app;dur=MS`, from the request's arrival to the answer), beside what the client measured."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed(message: dict) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - start) * 1e3
                headers = [
                    *message.get("headers", []),
                    (b"server-timing", f"app;dur={ms:.1f}".encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed)
