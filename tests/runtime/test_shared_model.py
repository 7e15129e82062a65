"""One loaded bundle, many callers at once: the app's sessions and the API's threads share one
model, so every call that reads inside it (the out-of-distribution check, Grad-CAM, feature
maps, a unit's input gradient, the summary, the plain-layer trace) must give exactly the answer
it gives alone, and leave the model as it found it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import shared_path

from cnnlab.anatomy.summary import summarize
from cnnlab.bundle import load_bundle, save_bundle
from cnnlab.data.preprocess import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.explain.feature_maps import feature_maps
from cnnlab.explain.gradcam import default_layer, gradcam
from cnnlab.learn.fields import effective_field, spatial_rows, unit_field
from cnnlab.learn.plain_layers import plain_layers
from cnnlab.models import create_model

THREADS, ROUNDS = 8, 3


# eight Python threads on two cores: one intra-op thread each, not eight pools of two
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def as_arrays(value) -> list[np.ndarray]:
    """A result as plain arrays, for an exact comparison."""
    if isinstance(value, torch.Tensor):
        return [value.detach().cpu().numpy().copy()]
    if isinstance(value, np.ndarray):
        return [value.copy()]
    if isinstance(value, list | tuple):
        return [a for v in value for a in as_arrays(v)]
    return [np.asarray(repr(value))]


def run_together(jobs: list[Callable[[], object]]) -> list[str]:
    """Each job alone first, then THREADS threads running all of them ROUNDS times from one
    barrier, each thread in its own order: the differences from the lone answers and errors."""
    expected = [as_arrays(job()) for job in jobs]
    barrier = threading.Barrier(THREADS)
    problems: list[str] = []

    def worker(k: int) -> None:
        order = list(range(len(jobs)))
        order = order[k % len(order) :] + order[: k % len(order)]
        if k % 2:
            order.reverse()
        barrier.wait()
        for _ in range(ROUNDS):
            for j in order:
                try:
                    got = as_arrays(jobs[j]())
                except Exception as e:  # noqa: BLE001 - every failure is a finding
                    problems.append(f"job {j}: {type(e).__name__}: {e}")
                    continue
                same = len(got) == len(expected[j]) and all(
                    a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
                    for a, b in zip(got, expected[j], strict=False)
                )
                if not same:
                    problems.append(f"job {j}: a different answer than alone")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return problems


def model_state(model: torch.nn.Module) -> list:
    return [(n, m.training) for n, m in model.named_modules()] + [
        (n, p.requires_grad) for n, p in model.named_parameters()
    ]


@pytest.mark.slow
def test_eight_threads_on_the_shipped_xray_bundle_get_the_lone_answers():
    xrays = sorted(shared_path("chest_xray", "external").glob("*/*.jpeg"))[::9][:32]
    bundle = load_bundle("pneumonia")
    model, pre = bundle.model, bundle.preprocess
    assert bundle.ood is not None
    images = torch.stack([pre.load(p) for p in xrays])
    inputs = [pre.normalize(images[i : i + 1]) for i in range(0, len(images), 8)]
    shape = (pre.channels, *pre.size)
    before = model_state(model)
    summary = summarize(model, shape, bundle.name)
    spatial = [r.name for r in spatial_rows(summary)]
    layers = [spatial[len(spatial) // 4], spatial[len(spatial) // 2]]
    cam_layer = default_layer(model, inputs[0])
    jobs: list[Callable[[], object]] = [
        *(lambda c=c: bundle.predict_checked(c) for c in images.split(8)),
        *(lambda x=x: gradcam(model, x, cam_layer).heatmap for x in inputs[:2]),
        *(lambda x=x: feature_maps(model, x, layers) for x in inputs[:2]),
        lambda: effective_field(model, inputs[0], unit_field(summary, layers[0])).gradient,
        lambda: [r.to_dict() for r in summarize(model, shape, bundle.name).rows],
        lambda: default_layer(model, inputs[1]),
    ]
    problems = run_together(jobs)
    assert not problems, f"{len(problems)} of {THREADS * ROUNDS * len(jobs)} calls: {problems[:5]}"
    assert model_state(model) == before


def small_cnn_bundle(folder: Path) -> Path:
    """The brief's Keras MNIST CNN: conv-ReLU-pool runs pool-first unless a layer is watched,
    and its Dropout would act if anything put it in training mode."""
    torch.manual_seed(0)
    model = create_model("keras_mnist_cnn")
    pre = Preprocess(1, [28, 28], [0.1307], [0.3081])
    return save_bundle(folder, model, "keras_mnist_cnn", {}, pre, list("0123456789"))


def test_eight_threads_on_a_small_cnn_get_the_lone_answers(tmp_path):
    bundle = load_bundle(small_cnn_bundle(tmp_path / "mnist"))
    model, pre = bundle.model, bundle.preprocess
    images = torch.from_numpy(
        np.random.default_rng(0).integers(0, 256, (64, 1, 28, 28), dtype=np.uint8)
    )
    inputs = [pre.normalize(images[i : i + 1]) for i in range(4)]
    summary = summarize(model, (1, 28, 28), bundle.name)
    before = model_state(model)

    def trace() -> str:
        try:
            return repr(
                [(layer.kind, layer.out_shape) for layer in plain_layers(model, (1, 28, 28)).layers]
            )
        except CnnlabError as e:
            return str(e)

    jobs: list[Callable[[], object]] = [
        *(lambda c=c: bundle.predict_proba(c) for c in images.split(16)),
        *(lambda x=x: feature_maps(model, x, ["features.relu1", "features.pool2"]) for x in inputs),
        *(lambda x=x: gradcam(model, x, "features.conv2").heatmap for x in inputs[:2]),
        *(
            lambda x=x: effective_field(model, x, unit_field(summary, "features.conv2")).gradient
            for x in inputs[:2]
        ),  # fmt: skip
        trace,
    ]
    problems = run_together(jobs)
    assert not problems, f"{len(problems)} of {THREADS * ROUNDS * len(jobs)} calls: {problems[:5]}"
    assert model_state(model) == before
