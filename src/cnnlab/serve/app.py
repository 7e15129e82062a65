"""The HTTP prediction API: FastAPI over the same bundle, preprocessing and decision rule as the CLI.

    POST /v1/predict        multipart field `files` (one or more JPEG/PNG/DICOM images)
    GET  /v1/models         the models served
    GET  /v1/models/{name}  one model's metadata and card
    GET  /healthz           liveness, with batching statistics

Every refusal is a 4xx JSON body {"error": code, "detail": message}. Uploads stay in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from cnnlab.bundle import Bundle
from cnnlab.data.intake import decode_batch
from cnnlab.deploy.backends import backend_name
from cnnlab.errors import CnnlabError
from cnnlab.predict import label_probabilities
from cnnlab.report.rows import prediction_rows
from cnnlab.serve.batcher import MicroBatcher, Overloaded
from cnnlab.serve.multipart import FIELD, UploadError, parse_uploads, read_body
from cnnlab.serve.schemas import (
    ERRORS,
    Health,
    ModelDetail,
    ModelSummary,
    PredictResponse,
)


@dataclass
class ServeLimits:
    """What one request may hold, and how requests are batched."""

    max_request_bytes: int = 32 * 2**20
    max_images: int = 32  # per request
    max_batch: int = 32  # images per forward pass
    max_wait_ms: float = 5.0  # how long a batch waits for more requests on their way
    max_queue: int = 512  # images waiting before new requests get 503


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
                            "description": "one or more images (JPEG, PNG, DICOM, ...)",
                        }
                    },
                }
            }
        },
    }
}


def _error(status: int, code: str, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def summary(bundle: Bundle) -> dict[str, Any]:
    pre = bundle.preprocess
    return {
        "name": bundle.name,
        "architecture": bundle.meta["model"]["name"],
        "classes": bundle.classes,
        "class_mode": "binary" if bundle.binary else "categorical",
        "threshold": bundle.threshold,
        "temperature": bundle.temperature,
        "ood_threshold": bundle.ood.threshold if bundle.ood is not None else None,
        "input": {"channels": pre.channels, "size": list(pre.size), "resize": pre.resize},
        "backend": backend_name(bundle),
    }


def create_app(bundles: Bundle | Sequence[Bundle], limits: ServeLimits | None = None) -> FastAPI:
    """An app serving `bundles` (the first is the default model); one micro-batcher per model."""
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
        return _error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    def lookup(name: str | None) -> Bundle:
        bundle = models.get(name or default)
        if bundle is None:
            raise UploadError(
                404, "unknown_model", f"no model named {name!r} (served: {', '.join(models)})"
            )
        return bundle

    @app.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the models are loaded and the batchers run."""
        stats = {
            n: {"batches": b.batches, "images": b.images_done, "queued": b.queued}
            for n, b in batchers.items()
        }
        return {"status": "ok", "models": list(models), "batching": stats}

    @app.get("/v1/models", response_model=list[ModelSummary], tags=["models"])
    async def list_models() -> list[dict[str, Any]]:
        """The models this server answers for; the first is the default."""
        return [summary(b) for b in models.values()]

    @app.get(
        "/v1/models/{name}", response_model=ModelDetail, tags=["models"], responses=ERRORS([404])
    )
    async def model_detail(name: str) -> dict[str, Any]:
        """A model's metadata (bundle.json, without the training recipe) and its card."""
        bundle = lookup(name)
        meta = {k: v for k, v in bundle.meta.items() if k != "recipe"}
        return {**summary(bundle), "metadata": meta, "card": bundle.card}

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        tags=["predict"],
        openapi_extra=UPLOAD_SCHEMA,
        responses=ERRORS([400, 404, 413, 415, 422, 503]),
    )
    async def predict(
        request: Request,
        model: str | None = Query(None, description="model name (default: the first served)"),
        top_k: int = Query(3, ge=1, le=1000, description="how many classes to list per image"),
    ) -> dict[str, Any]:
        """Classify one or more images sent as multipart form field `files`."""
        bundle = lookup(model)
        batcher = batchers[bundle.name]
        with batcher.arriving_request():
            body = await read_body(request, limits.max_request_bytes)
            uploads = parse_uploads(
                body, request.headers.get("content-type", ""), limits.max_images
            )
            images = await run_in_threadpool(_decode, bundle, uploads)
        try:
            probs = await batcher.submit(images)
        except Overloaded as e:
            return _error(
                503, "overloaded", f"server busy: {e}; retry shortly", {"Retry-After": "1"}
            )
        probs, distances = probs[:, :-1], probs[:, -1]  # checked_rows: the distance comes last
        preds = label_probabilities(
            bundle, probs, top_k, distances if bundle.ood is not None else None
        )
        for u, p in zip(uploads, preds, strict=True):
            p.source = u.filename
        rows = prediction_rows(preds, bundle.classes, bundle.binary)
        return {"model": bundle.name, "backend": backend_name(bundle), "predictions": rows}

    return app


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
