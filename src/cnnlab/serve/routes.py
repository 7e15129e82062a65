"""The API's routes: the probes, the models, and the predict path (read the body within its
limits, decode in a thread, queue for the micro-batcher, present each prediction as the CLI
and the app do). Each reads the server's models from `app.state.served`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import torch
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from cnnlab.bundle.check import check_meta
from cnnlab.bundle.loading import Bundle
from cnnlab.data.intake import Decoded, batch_pixels, decode_batch
from cnnlab.deploy.backends import backend_name
from cnnlab.errors import CnnlabError
from cnnlab.fileio import finite_values
from cnnlab.predict import settle, triage
from cnnlab.records.entries import put_on_record
from cnnlab.report.present import present
from cnnlab.serve.batcher import Overloaded
from cnnlab.serve.guards import HEALTHZ, LIVE, READY
from cnnlab.serve.guards import json_error as _error
from cnnlab.serve.multipart import FIELD, Upload, UploadError, parse_uploads, read_body
from cnnlab.serve.schemas import (
    ERRORS,
    Health,
    Live,
    ModelDetail,
    ModelSummary,
    PredictResponse,
    Ready,
)
from cnnlab.serve.served import Served, summary

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

router = APIRouter()


def served_models(request: Request) -> Served:
    return request.app.state.served


SERVED = Depends(served_models)


def probe(path: str, **kw: Any):
    """GET `path`, and HEAD for probes that send it (the schema lists the GET: one route for
    both would give both operations one operationId)."""

    def register(fn):
        router.head(path, include_in_schema=False, **kw)(fn)
        return router.get(path, **kw)(fn)

    return register


# ----------------------------------------------------------------------------- service


@probe(HEALTHZ, response_model=Health, tags=["service"])
async def healthz(served: Served = SERVED) -> dict[str, Any]:
    """Liveness, with batching statistics and readiness (kept for existing probes: a load
    balancer should route by /v1/health/ready)."""
    stats = {n: {"batches": b.batches, "images": b.images_done, "queued": b.queued}
             for n, b in served.batchers.items()}  # fmt: skip
    ready = all(m["ready"] for m in served.readiness().values())
    return {"status": "ok", "ready": ready, "models": list(served.models), "batching": stats}


@probe(LIVE, response_model=Live, tags=["service"])
async def live() -> dict[str, Any]:
    """Liveness: the server answers (restart it when this fails)."""
    return {"status": "live"}


@probe(READY, response_model=Ready, tags=["service"],
       responses={503: {"model": Ready, "description": "not ready"}})  # fmt: skip
async def ready(served: Served = SERVED) -> JSONResponse:
    """Readiness: every model loaded with a valid bundle, and its queue below its bounds
    (send traffic elsewhere while this is 503)."""
    per_model = served.readiness()
    ok = all(m["ready"] for m in per_model.values())
    body = {"status": "ready" if ok else "not_ready", "models": per_model}
    return JSONResponse(body, status_code=200 if ok else 503,
                        headers=None if ok else {"Retry-After": "1"})  # fmt: skip


# ----------------------------------------------------------------------------- models


@router.get("/v1/models", response_model=list[ModelSummary], tags=["models"],
            responses=ERRORS([400, 503]))  # fmt: skip
async def list_models(served: Served = SERVED) -> list[dict[str, Any]]:
    """The models this server answers for; the first is the default."""
    return [summary(b) for b in served.models.values()]


@router.get("/v1/models/{name}", response_model=ModelDetail, tags=["models"],
            responses=ERRORS([400, 404, 503]))  # fmt: skip
async def model_detail(name: str, served: Served = SERVED) -> dict[str, Any]:
    """A model's metadata (bundle.json, without the training recipe) and its card."""
    bundle = served.lookup(name)
    meta = {k: v for k, v in bundle.meta.items() if k != "recipe"}
    state = served.readiness()[bundle.name]
    return {**summary(bundle), "metadata": finite_values(meta), "card": bundle.card,
            "ready": state["ready"], "problems": state["problems"]}  # fmt: skip


# ----------------------------------------------------------------------------- predict


@router.post("/v1/predict", response_model=PredictResponse, tags=["predict"],
             response_model_exclude_unset=True,  # the row as present() made it: no patient_id
             openapi_extra=UPLOAD_SCHEMA,  # key unless asked for, as in the CLI's --json
             responses=ERRORS([400, 404, 408, 413, 415, 422, 503]))  # fmt: skip
async def predict(
    request: Request,
    model: str | None = Query(None, description="model name (default: the first served)"),
    top_k: int = Query(3, ge=1, le=1000, description="how many classes to list per image"),
    with_patient_id: bool = Query(
        False, description="DICOM inputs: add their PatientID to each row (left out otherwise)"
    ),  # fmt: skip
    served: Served = SERVED,
) -> dict[str, Any]:
    """Classify one or more images sent as multipart form field `files`."""
    request.state.arrived = time.perf_counter()
    bundle = served.lookup(model)
    try:
        check_meta(bundle.meta, bundle.path or Path(bundle.name))
    except CnnlabError as e:
        return _error(503, "model_not_ready", f"{bundle.name} cannot answer: {e}")
    try:
        return await answer(request, served, bundle, top_k, with_patient_id)
    except asyncio.CancelledError:  # the shutdown deadline passed (uvicorn cancels): say so,
        # rather than log a traceback for a client that was too slow
        return _error(503, "shutting_down", "the server is shutting down; retry elsewhere",
                      {"Connection": "close", "Retry-After": "1"})  # fmt: skip


async def answer(
    request: Request, served: Served, bundle: Bundle, top_k: int, with_patient_id: bool = False
) -> Any:
    """Body -> images (decoded within the time budget) -> the batcher, which runs
    `predict_images` on the batch -> each prediction presented as the CLI and the app do."""
    batcher, limits = served.batchers[bundle.name], served.limits
    with batcher.arriving_request():
        body = await read_body(request, limits.max_request_bytes, limits.read_timeout_s)
        deadline = asyncio.get_running_loop().time() + limits.time_budget_s  # from a whole body
        uploads = parse_uploads(body, request.headers.get("content-type", ""), limits.max_images)
        pixels = batch_pixels([u.data for u in uploads])
        if pixels > limits.max_request_pixels:
            raise UploadError(413, "too_many_pixels", f"the images hold {pixels / 1e6:.0f} MP "
                              f"together, over the {limits.max_request_pixels / 1e6:g} MP "
                              "per request")  # fmt: skip
        try:
            async with asyncio.timeout_at(deadline):  # waiting for a decoding slot counts
                async with served.decoding:
                    decoded = await run_in_threadpool(_decode, bundle, uploads)
        except TimeoutError:
            return _busy(Overloaded("the time budget ran out before decoding"))
    names = [u.filename for u in uploads]
    preds, ready = triage(bundle, names, decoded)  # refused by the bundle's `accepts`: no run
    if ready:
        try:
            images = torch.stack([preds[i].pixels for i in ready])
            found = await batcher.submit(images, [names[i] for i in ready], deadline)
        except Overloaded as e:
            return _busy(e)
        settle(preds, ready, found)
    for i, (u, p) in enumerate(zip(uploads, preds, strict=True)):
        if p.error:  # the model gave NaN for it: never a label made from that
            raise UploadError(422, "bad_image", f"{FIELD}[{i}] ({u.filename}): {p.error}")
        p.top_k = p.top_k[:top_k]  # the batch listed every class
    shown = [present(p, bundle, with_patient_id) for p in preds]
    store = request.app.state.records
    if store is not None:  # on record before it is answered; off the event loop (it syncs)
        latency_ms = (time.perf_counter() - request.state.arrived) * 1e3
        try:
            await run_in_threadpool(put_on_record, shown, bundle, "api", client_of(request),
                                    latency_ms, [u.data for u in uploads], store)  # fmt: skip
        except CnnlabError as e:
            return _error(503, "not_recorded", f"the decisions could not be put on record, so "
                          f"none is answered: {e}")  # fmt: skip
    rows = [s.row for s in shown]
    return {"model": bundle.name, "backend": backend_name(bundle), "predictions": rows}


def client_of(request: Request) -> str | None:
    """Who asked: the name of the token the request carried (None on a server without tokens)."""
    return getattr(request.state, "client", None)


def _busy(e: Overloaded) -> JSONResponse:
    return _error(503, "overloaded", f"server busy: {e}; retry after {e.retry_after} s",
                  {"Retry-After": str(e.retry_after)})  # fmt: skip


def _decode(bundle: Bundle, uploads: list[Upload]) -> list[Decoded]:
    """All images of a request with the bundle's preprocessing, or a 422 naming the bad file."""
    decoded = decode_batch([up.data for up in uploads], bundle.preprocess)
    for i, (up, d) in enumerate(zip(uploads, decoded, strict=True)):
        if d.error is not None:
            raise UploadError(422, "bad_image", f"{FIELD}[{i}] ({up.filename}): {d.error}")
    return decoded
