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
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from cnnlab.bundle import Bundle
from cnnlab.bundle_check import check_meta
from cnnlab.data.decode import available_cpus
from cnnlab.data.intake import batch_pixels, decode_batch
from cnnlab.deploy.backends import backend_name
from cnnlab.errors import CnnlabError
from cnnlab.fileio import finite_values
from cnnlab.predict import label_probabilities
from cnnlab.report.rows import prediction_rows
from cnnlab.serve.batcher import MicroBatcher, Overloaded
from cnnlab.serve.guards import HEALTHZ, LIVE, READY, AllowedHosts, RequestCap
from cnnlab.serve.guards import json_error as _error
from cnnlab.serve.limits import ServeLimits
from cnnlab.serve.multipart import FIELD, UploadError, parse_uploads, read_body
from cnnlab.serve.schemas import (
    ERRORS,
    Health,
    Live,
    ModelDetail,
    ModelSummary,
    PredictResponse,
    Ready,
)

UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {
                        FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                            "description": "one or more images (JPEG, PNG, DICOM, ...)",
                        }
                    },
                }
            }
        },
    }
}


def summary(bundle: Bundle) -> dict[str, Any]:
    pre = bundle.preprocess
    try:
        threshold, temperature = bundle.threshold, bundle.temperature
    except CnnlabError:  # the bundle's decision went bad: not ready, and readiness says why
        threshold = temperature = None
    return {
        "name": bundle.name,
        "architecture": bundle.meta["model"]["name"],
        "classes": bundle.classes,
        "class_mode": "binary" if bundle.binary else "categorical",
        "threshold": threshold,
        "temperature": temperature,
        "ood_threshold": bundle.ood.threshold if bundle.ood is not None else None,
        "input": {"channels": pre.channels, "size": list(pre.size), "resize": pre.resize},
        "backend": backend_name(bundle),
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


def model_problems(bundle: Bundle, batcher: MicroBatcher, limits: ServeLimits) -> list[str]:
    """Why a model cannot take requests now (none: it is ready): its bundle's values no longer
    valid, its batcher stopped, its queue full or slower than the time budget allows."""
    problems = []
    try:
        check_meta(bundle.meta, bundle.path or Path(bundle.name))
    except CnnlabError as e:
        problems.append(f"invalid bundle: {e}")
    if batcher.batches and not batcher.running:
        problems.append("the inference worker has stopped")
    if batcher.queued >= limits.max_queue:
        problems.append(f"queue full ({batcher.queued} images; bound {limits.max_queue})")
    wait = batcher.expected_wait()
    if wait > limits.time_budget_s:
        problems.append(f"the queue would take about {wait:.1f} s, over the "
                        f"{limits.time_budget_s:g} s time budget")  # fmt: skip
    return problems


def create_app(
    bundles: Bundle | Sequence[Bundle],
    limits: ServeLimits | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> FastAPI:
    """An app serving `bundles` (the first is the default model); one micro-batcher per model.
    `allowed_hosts`: the Host names it answers (guards.AllowedHosts); None answers any."""
    from cnnlab import __version__

    bundles = [bundles] if isinstance(bundles, Bundle) else list(bundles)
    if not bundles:
        raise CnnlabError("serve needs at least one bundle")
    models: dict[str, Bundle] = {}
    for b in bundles:
        if b.name in models:
            raise CnnlabError(f"two bundles are both named {b.name!r}; serve them separately")
        models[b.name] = b
    limits = limits or ServeLimits()
    default = bundles[0].name
    batchers = {
        name: MicroBatcher(
            lambda x, b=b: checked_rows(b, x, limits.max_batch),
            limits.max_batch,
            limits.max_wait_ms,
            limits.max_queue,
        )
        for name, b in models.items()
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        for batcher in batchers.values():
            batcher.start()
        yield
        for batcher in batchers.values():
            await batcher.stop()
            batcher.close()

    app = FastAPI(
        title="cnnlab",
        version=__version__,
        description="Image classification with cnnlab model bundles.",
        lifespan=lifespan,
    )
    app.state.models, app.state.batchers, app.state.limits = models, batchers, limits
    app.add_middleware(RequestCap, limit=limits.max_requests)
    if allowed_hosts is not None:
        app.add_middleware(AllowedHosts, hosts=allowed_hosts)
    app.add_middleware(ServerTiming)  # the last added is the outermost: it times the others
    # decoding runs in threads: at most one per core at a time, or 32 large images per request
    # times many requests would all be in memory at once
    decoding = asyncio.Semaphore(available_cpus())

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return _error(422, "invalid_request", problems or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # Starlette names the first route's methods, not the path's
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request.scope))}
        return _error(exc.status_code, code, str(exc.detail), headers)

    def allowed_methods(scope: dict) -> list[str]:
        """Every method some route answers on this path."""
        any_method = {**scope, "method": ""}  # no route takes it: a path match is PARTIAL
        found = {m for r in app.routes if r.matches(any_method)[0] is not Match.NONE
                 for m in getattr(r, "methods", None) or ()}  # fmt: skip
        return sorted(found)

    def lookup(name: str | None) -> Bundle:
        bundle = models.get(name or default)
        if bundle is None:
            raise UploadError(
                404, "unknown_model", f"no model named {name!r} (served: {', '.join(models)})"
            )
        return bundle

    def probe(path: str, **kw: Any):
        """GET `path`, and HEAD for probes that send it (the schema lists the GET: one route
        for both would give both operations one operationId)."""

        def register(fn):
            app.head(path, include_in_schema=False, **kw)(fn)
            return app.get(path, **kw)(fn)

        return register

    @probe(HEALTHZ, response_model=Health, tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness, with batching statistics and readiness (kept for existing probes: a load
        balancer should route by /v1/health/ready)."""
        stats = {
            n: {"batches": b.batches, "images": b.images_done, "queued": b.queued}
            for n, b in batchers.items()
        }
        ready = all(m["ready"] for m in readiness().values())
        return {"status": "ok", "ready": ready, "models": list(models), "batching": stats}

    @probe(LIVE, response_model=Live, tags=["service"])
    async def live() -> dict[str, Any]:
        """Liveness: the server answers (restart it when this fails)."""
        return {"status": "live"}

    def readiness() -> dict[str, dict[str, Any]]:
        out = {}
        for name, bundle in models.items():
            problems = model_problems(bundle, batchers[name], limits)
            out[name] = {"ready": not problems, "problems": problems,
                         "queued": batchers[name].queued,
                         "expected_wait_s": round(batchers[name].expected_wait(), 3)}  # fmt: skip
        return out

    @probe(READY, response_model=Ready, tags=["service"],
           responses={503: {"model": Ready, "description": "not ready"}})  # fmt: skip
    async def ready() -> JSONResponse:
        """Readiness: every model loaded with a valid bundle, and its queue below its bounds
        (send traffic elsewhere while this is 503)."""
        per_model = readiness()
        ok = all(m["ready"] for m in per_model.values())
        body = {"status": "ready" if ok else "not_ready", "models": per_model}
        return JSONResponse(body, status_code=200 if ok else 503,
                            headers=None if ok else {"Retry-After": "1"})  # fmt: skip

    @app.get("/v1/models", response_model=list[ModelSummary], tags=["models"],
             responses=ERRORS([400, 503]))  # fmt: skip
    async def list_models() -> list[dict[str, Any]]:
        """The models this server answers for; the first is the default."""
        return [summary(b) for b in models.values()]

    @app.get(
        "/v1/models/{name}",
        response_model=ModelDetail,
        tags=["models"],
        responses=ERRORS([400, 404, 503]),
    )
    async def model_detail(name: str) -> dict[str, Any]:
        """A model's metadata (bundle.json, without the training recipe) and its card."""
        bundle = lookup(name)
        meta = {k: v for k, v in bundle.meta.items() if k != "recipe"}
        state = readiness()[bundle.name]
        return {**summary(bundle), "metadata": finite_values(meta), "card": bundle.card,
                "ready": state["ready"], "problems": state["problems"]}  # fmt: skip

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        tags=["predict"],
        openapi_extra=UPLOAD_SCHEMA,
        responses=ERRORS([400, 404, 408, 413, 415, 422, 503]),
    )
    async def predict(
        request: Request,
        model: str | None = Query(None, description="model name (default: the first served)"),
        top_k: int = Query(3, ge=1, le=1000, description="how many classes to list per image"),
    ) -> dict[str, Any]:
        """Classify one or more images sent as multipart form field `files`."""
        bundle = lookup(model)
        try:
            check_meta(bundle.meta, bundle.path or Path(bundle.name))
        except CnnlabError as e:
            return _error(503, "model_not_ready", f"{bundle.name} cannot answer: {e}")
        try:
            return await answer(request, bundle, top_k)
        except asyncio.CancelledError:  # the shutdown deadline passed (uvicorn cancels): say so,
            # rather than log a traceback for a client that was too slow
            return _error(503, "shutting_down", "the server is shutting down; retry elsewhere",
                          {"Connection": "close", "Retry-After": "1"})  # fmt: skip

    async def answer(request: Request, bundle: Bundle, top_k: int) -> Any:
        batcher = batchers[bundle.name]
        loop = asyncio.get_running_loop()
        with batcher.arriving_request():
            body = await read_body(request, limits.max_request_bytes, limits.read_timeout_s)
            deadline = loop.time() + limits.time_budget_s  # the budget starts with a whole body
            uploads = parse_uploads(
                body, request.headers.get("content-type", ""), limits.max_images
            )
            pixels = batch_pixels([u.data for u in uploads])
            if pixels > limits.max_request_pixels:
                raise UploadError(413, "too_many_pixels", f"the images hold {pixels / 1e6:.0f} MP "
                                  f"together, over the {limits.max_request_pixels / 1e6:g} MP "
                                  "per request")  # fmt: skip
            try:
                async with asyncio.timeout_at(deadline):  # waiting for a decoding slot counts
                    async with decoding:
                        images = await run_in_threadpool(_decode, bundle, uploads)
            except TimeoutError:
                return _busy(Overloaded("the time budget ran out before decoding"))
        try:
            probs = await batcher.submit(images, deadline)
        except Overloaded as e:
            return _busy(e)
        probs, distances = probs[:, :-1], probs[:, -1]  # checked_rows: the distance comes last
        preds = label_probabilities(
            bundle, probs, top_k, distances if bundle.ood is not None else None
        )
        for u, p in zip(uploads, preds, strict=True):
            p.source = u.filename
        for i, (u, p) in enumerate(zip(uploads, preds, strict=True)):
            if p.error:  # the model gave NaN for it: never a label made from that
                raise UploadError(422, "bad_image", f"{FIELD}[{i}] ({u.filename}): {p.error}")
        rows = prediction_rows(preds, bundle.classes, bundle.binary)
        return {"model": bundle.name, "backend": backend_name(bundle), "predictions": rows}

    return app


def _busy(e: Overloaded) -> JSONResponse:
    return _error(503, "overloaded", f"server busy: {e}; retry after {e.retry_after} s",
                  {"Retry-After": str(e.retry_after)})  # fmt: skip


def checked_rows(bundle: Bundle, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """One row per image for the micro-batcher: the calibrated probabilities, then the
    out-of-distribution distance (NaN without a check), so a batch splits back by rows."""
    probs, distances = bundle.predict_checked(images, batch_size)
    if distances is None:
        distances = torch.full((len(probs),), float("nan"))
    return torch.cat([probs, distances[:, None].to(probs.dtype)], 1)


def _decode(bundle: Bundle, uploads: list) -> torch.Tensor:
    """All images of a request with the bundle's preprocessing, or a 422 naming the bad file."""
    decoded = decode_batch([up.data for up in uploads], bundle.preprocess)
    for i, (up, d) in enumerate(zip(uploads, decoded, strict=True)):
        if d.error is not None:
            raise UploadError(422, "bad_image", f"{FIELD}[{i}] ({up.filename}): {d.error}")
    return torch.stack([d.pixels for d in decoded])
