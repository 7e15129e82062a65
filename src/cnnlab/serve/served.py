"""The models one API server answers for: each bundle with its micro-batcher, the limits, and
what readiness reports of them. Routes read it from `app.state.served`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnlab.bundle.check import check_meta
from cnnlab.bundle.loading import Bundle
from cnnlab.data.decode import available_cpus
from cnnlab.deploy.backends import backend_name
from cnnlab.errors import CnnlabError
from cnnlab.predict import predict_images
from cnnlab.serve.batcher import MicroBatcher
from cnnlab.serve.limits import ServeLimits
from cnnlab.serve.multipart import UploadError


class Served:
    """Bundles by name (the first is the default), one micro-batcher each. A batch is handed to
    `predict_images`, the CLI's and the app's own path, with every class's probability: each
    request keeps its own top_k of them."""

    def __init__(self, bundles: Sequence[Bundle], limits: ServeLimits) -> None:
        if not bundles:
            raise CnnlabError("serve needs at least one bundle")
        self.models: dict[str, Bundle] = {}
        for b in bundles:
            if b.name in self.models:
                raise CnnlabError(f"two bundles are both named {b.name!r}; serve them separately")
            self.models[b.name] = b
        self.default, self.limits = bundles[0].name, limits
        self.batchers = {
            name: MicroBatcher(
                lambda x, names, b=b: predict_images(b, x, names, len(b.classes), limits.max_batch),
                limits.max_batch,
                limits.max_wait_ms,
                limits.max_queue,
            )
            for name, b in self.models.items()
        }
        # decoding runs in threads: at most one per core at a time, or 32 large images per
        # request times many requests would all be in memory at once
        self.decoding = asyncio.Semaphore(available_cpus())

    def lookup(self, name: str | None) -> Bundle:
        bundle = self.models.get(name or self.default)
        if bundle is None:
            raise UploadError(404, "unknown_model",
                              f"no model named {name!r} (served: {', '.join(self.models)})")  # fmt: skip
        return bundle

    def readiness(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, bundle in self.models.items():
            batcher = self.batchers[name]
            problems = model_problems(bundle, batcher, self.limits)
            out[name] = {"ready": not problems, "problems": problems, "queued": batcher.queued,
                         "expected_wait_s": round(batcher.expected_wait(), 3)}  # fmt: skip
        return out


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
