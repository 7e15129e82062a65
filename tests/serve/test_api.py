"""The HTTP API through FastAPI's TestClient: every endpoint, every refusal, batching."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from fastapi.testclient import TestClient

from cnnlab.predict import predict_sources
from cnnlab.serve import ServeLimits, create_app
from tests.conftest import dicom_bytes
from tests.serve.conftest import jpeg_bytes, png_bytes


@pytest.fixture(scope="module")
def client(digit_bundle, binary_bundle):
    limits = ServeLimits(max_request_bytes=200_000, max_images=4, max_batch=8)
    with TestClient(create_app([digit_bundle, binary_bundle], limits)) as c:
        yield c


def files(*blobs: bytes, names: list[str] | None = None) -> list:
    names = names or [f"img{i}.bin" for i in range(len(blobs))]
    return [
        ("files", (n, b, "application/octet-stream")) for n, b in zip(names, blobs, strict=True)
    ]


def test_health_models_and_openapi(client, digit_bundle, binary_bundle):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.json()["models"] == ["digits", "xray"]
    listed = client.get("/v1/models").json()
    assert [m["name"] for m in listed] == ["digits", "xray"]
    assert listed[1]["class_mode"] == "binary" and listed[1]["threshold"] == 0.3
    assert listed[1]["temperature"] == 2.0 and listed[0]["threshold"] is None
    assert listed[0]["input"] == {"channels": 1, "size": [28, 28], "resize": "stretch"}
    detail = client.get("/v1/models/xray").json()
    assert detail["card"] == binary_bundle.card and detail["card"].startswith("# xray")
    assert detail["metadata"]["classes"] == ["NORMAL", "PNEUMONIA"]
    assert "recipe" not in detail["metadata"]
    r = client.get("/v1/models/nope")
    assert r.status_code == 404 and r.json()["error"] == "unknown_model"
    assert "digits, xray" in r.json()["detail"]
    schema = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/models", "/v1/models/{name}", "/healthz"} <= set(schema["paths"])
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert "files" in body["multipart/form-data"]["schema"]["properties"]


def test_predict_matches_the_library_for_every_format(client, digit_bundle, digits):
    blobs = [png_bytes(digits[0]), jpeg_bytes(digits[1], size=56), dicom_bytes(digits[2])]
    r = client.post("/v1/predict?top_k=2", files=files(*blobs, names=["a.png", "b.jpg", "c.dcm"]))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == "digits" and out["backend"] == "torch"
    expected = predict_sources(digit_bundle, blobs, top_k=2)
    for got, want, name in zip(
        out["predictions"], expected, ["a.png", "b.jpg", "c.dcm"], strict=True
    ):
        assert got["file"] == name and got["label"] == want.label
        assert got["probability"] == pytest.approx(want.probability, abs=1e-6)
        assert [t["label"] for t in got["top_k"]] == [t["label"] for t in want.top_k]
        assert len(got["top_k"]) == 2 and got["threshold"] is None


def test_binary_model_reports_threshold_and_calibrated_probability(client, binary_bundle, digits):
    r = client.post("/v1/predict?model=xray", files=files(png_bytes(digits[3])))
    assert r.status_code == 200, r.text
    pred = r.json()["predictions"][0]
    probs = binary_bundle.predict_proba(binary_bundle.preprocess.load(png_bytes(digits[3]))[None])
    assert pred["threshold"] == 0.3
    assert pred["positive_probability"] == pytest.approx(float(probs[0, 1]), abs=1e-6)
    assert pred["label"] == ("PNEUMONIA" if probs[0, 1] >= 0.3 else "NORMAL")
    shown = 1 if pred["label"] == "PNEUMONIA" else 0
    assert pred["probability"] == pytest.approx(float(probs[0, shown]), abs=1e-6)


@pytest.mark.parametrize(
    "make, status, code, words",
    [
        (lambda d: {"files": files(b"hello, I am text")}, 422, "bad_image", "not a recognised image"),
        (lambda d: {"files": files(png_bytes(d[0]), jpeg_bytes(d[1])[:300], names=["ok.png", "cut.jpg"])},
         422, "bad_image", "files[1] (cut.jpg)"),
        (lambda d: {"files": files(b"")}, 422, "bad_image", "empty file"),
        (lambda d: {"files": files(*[png_bytes(d[0])] * 5)}, 413, "too_many_images", "more than 4"),
        (lambda d: {"files": files(b"\0" * 250_000)}, 413, "request_too_large", "MiB limit"),
        (lambda d: {"files": [("file", ("x.png", png_bytes(d[0]), "image/png"))]},
         400, "no_files", "got field: file"),
        (lambda d: {"content": b"", "headers": {"content-type": "multipart/form-data; boundary=x"}},
         400, "no_files", "empty request"),
        (lambda d: {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}},
         400, None, None),
        (lambda d: {"content": png_bytes(d[0]), "headers": {"content-type": "image/png"}},
         415, "unsupported_media_type", "multipart/form-data"),
        (lambda d: {"content": b"{}", "headers": {"content-type": "application/json"}},
         415, "unsupported_media_type", None),
    ],
    ids=["text", "corrupt-jpeg", "empty-file", "too-many", "too-large", "wrong-field",
         "empty-body", "broken-multipart", "raw-png", "json"],
)  # fmt: skip
def test_bad_inputs_get_a_4xx_that_says_why(client, digits, make, status, code, words):
    r = client.post("/v1/predict", **make(digits))
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and body["detail"]
    if code:
        assert body["error"] == code
    if words:
        assert words in body["detail"]


def test_bad_query_and_unknown_model(client, digits):
    one = files(png_bytes(digits[0]))
    r = client.post("/v1/predict?model=nope", files=one)
    assert r.status_code == 404 and r.json()["error"] == "unknown_model"
    r = client.post("/v1/predict?top_k=0", files=one)
    assert r.status_code == 422 and "top_k" in r.json()["detail"]
    r = client.get("/v1/predict")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_oversized_image_pixels_are_refused(client, monkeypatch, digits):
    import cnnlab.data.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 28 * 28 - 1)
    for blob in (png_bytes(digits[0]), dicom_bytes(digits[0])):  # DICOM: checked before decoding
        r = client.post("/v1/predict", files=files(blob))
        assert r.status_code == 422 and "over the" in r.json()["detail"], r.text


class SlowBackend:
    """The PyTorch forward pass plus a fixed delay, so concurrent requests must queue up."""

    name = "slow-torch"

    def __init__(self, bundle, delay: float = 0.05) -> None:
        self.bundle, self.calls, self.delay = bundle, [], delay

    def run(self, images: torch.Tensor, batch_size: int = 256):
        from cnnlab.runtime.inference import logits_and_features

        self.calls.append(len(images))
        time.sleep(self.delay)
        b = self.bundle
        return logits_and_features(b.model, images, b.preprocess, b.runtime, (), batch_size)


def test_concurrent_requests_are_batched_and_answered_correctly(tmp_path, digits):
    from tests.serve.conftest import make_bundle

    bundle = make_bundle(tmp_path / "digits")
    expected = predict_sources(bundle, [png_bytes(d) for d in digits[:16]])
    bundle.backend = SlowBackend(bundle)
    limits = ServeLimits(max_batch=8, max_wait_ms=20)
    results: dict[int, dict] = {}
    with TestClient(create_app(bundle, limits)) as c:

        def call(i: int) -> None:
            r = c.post("/v1/predict", files=files(png_bytes(digits[i])))
            results[i] = r.json() if r.status_code == 200 else {"status": r.status_code}

        threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        stats = c.get("/healthz").json()["batching"]["digits"]
    assert len(results) == 16
    for i, out in results.items():
        pred = out["predictions"][0]
        assert pred["label"] == expected[i].label
        assert pred["probability"] == pytest.approx(expected[i].probability, abs=1e-6)
    calls = bundle.backend.calls
    assert sum(calls) == 16 and stats["images"] == 16
    assert len(calls) < 16 and max(calls) > 1 and max(calls) <= 8  # grouped, within the bound
