"""The API under hostile and careless clients: the bad-file corpus, malformed multipart, a
pixel budget per request, a time budget that includes the queue (503 at once, Retry-After),
readiness per model, HEAD probes, a cap on requests under way; and on a real uvicorn server
with cnnlab's protocol: a connection cap, a slow client that cannot hold up a shutdown past its
deadline, disconnects without tracebacks."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time

import pytest
import uvicorn
from fastapi.testclient import TestClient
from starlette.requests import Request

from cnnlab.net import free_port
from cnnlab.serve import ServeLimits, create_app
from cnnlab.serve.multipart import UploadError, read_body
from cnnlab.serve.server import guarded_protocol
from tests.corpus import good_bytes, implausible_bytes, png_claiming, texture, unreadable_bytes
from tests.serve.conftest import make_bundle, png_bytes
from tests.serve.test_api import SlowBackend, files


@pytest.fixture(scope="module")
def client(digit_bundle, binary_bundle):
    limits = ServeLimits(max_request_bytes=2_000_000, max_images=8, max_request_pixels=200_000)
    with TestClient(create_app([digit_bundle, binary_bundle], limits)) as c:
        yield c


CORPUS = {name: (data, why) for name, (data, why) in {**unreadable_bytes(),
                                                      **implausible_bytes()}.items()}  # fmt: skip


@pytest.mark.parametrize("name", list(CORPUS))
def test_every_bad_upload_is_a_422_that_says_why(client, name):
    data, why = CORPUS[name]
    r = client.post("/v1/predict", files=files(data, names=[name]))
    if name in ("big.png", "blank.png"):  # their headers alone are over the budget
        assert r.status_code == 413 and r.json()["error"] == "too_many_pixels", r.text
        return
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "bad_image" and why in r.json()["detail"]


def test_odd_but_good_uploads_are_answered(client):
    blobs = good_bytes()
    r = client.post("/v1/predict", files=files(*blobs.values(), names=list(blobs)))
    assert r.status_code == 200, r.text
    assert [p["file"] for p in r.json()["predictions"]] == list(blobs)


BOUNDARY = "multipart/form-data; boundary="
MULTIPART = {
    "boundary over 256": ({"content-type": BOUNDARY + "b" * 300}, b"--" + b"b" * 300 + b"\r\n"),
    "boundary over 70": ({"content-type": BOUNDARY + "b" * 71}, b"--" + b"b" * 71 + b"\r\n"),
    "no boundary": ({"content-type": "multipart/form-data"}, b"--x\r\n"),
    "no closing": ({"content-type": BOUNDARY + "x"},
                   b'--x\r\nContent-Disposition: form-data; name="files"; filename="a"\r\n\r\nabc'),
    "bad header": ({"content-type": BOUNDARY + "x"}, b"--x\r\nnot a header line\r\n\r\nabc\r\n--x--\r\n"),
    "garbage": ({"content-type": BOUNDARY + "x"}, bytes(range(256)) * 8),
    "no content type": ({}, b"--x\r\n"),
    "bad params": ({"content-type": 'multipart/form-data; boundary="x; =;;'}, b"--x\r\n"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MULTIPART))
def test_every_multipart_error_is_a_4xx(client, case):
    headers, body = MULTIPART[case]
    r = client.post("/v1/predict", content=body, headers=headers)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert set(r.json()) == {"error", "detail"}


def test_the_pixel_budget_counts_headers_before_decoding(client, digits):
    start = time.perf_counter()
    r = client.post("/v1/predict", files=files(*[png_claiming(7000, 7000)] * 8))
    assert r.status_code == 413 and "392 MP together, over the 0.2 MP" in r.json()["detail"]
    assert time.perf_counter() - start < 2  # refused unread
    r = client.post("/v1/predict", files=files(*[png_bytes(texture(200, 200))] * 6))
    assert r.status_code == 413  # 0.24 MP of real images
    r = client.post("/v1/predict", files=files(*[png_bytes(texture(200, 200))] * 4))
    assert r.status_code == 200, r.text


def test_health_live_ready_and_head(client):
    for path in ("/healthz", "/v1/health/live", "/v1/health/ready"):
        assert client.get(path).status_code == 200
        head = client.head(path)
        assert head.status_code == 200 and head.content == b""
    ready = client.get("/v1/health/ready").json()
    assert ready["status"] == "ready" and set(ready["models"]) == {"digits", "xray"}
    assert client.get("/v1/models/xray").json()["ready"] is True


def test_not_ready_when_invalid_or_full_and_it_says_why(tmp_path, digits):
    bundle = make_bundle(tmp_path / "xray", binary=True)
    limits = ServeLimits(max_queue=16, time_budget_s=2.0)
    with TestClient(create_app(bundle, limits)) as c:
        batcher = c.app.state.batchers["xray"]
        batcher.queued = 16  # as if 16 images were waiting
        r = c.get("/v1/health/ready")
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert c.get("/healthz").json()["ready"] is False  # alive, not ready
        assert "queue full (16 images; bound 16)" in r.json()["models"]["xray"]["problems"][0]
        assert c.head("/v1/health/ready").status_code == 503
        batcher.queued, batcher.per_image = 10, 0.5  # 5 s of work queued, budget 2 s
        problems = c.get("/v1/models/xray").json()["problems"]
        assert "about 5.0 s, over the 2 s time budget" in problems[0]
        r = c.post("/v1/predict", files=files(png_bytes(digits[0])))
        assert r.status_code == 503 and r.json()["error"] == "overloaded"
        assert int(r.headers["retry-after"]) >= 5  # when the queue will have drained
        batcher.queued, batcher.per_image = 0, None
        bundle.meta["decision"]["threshold"] = math.nan  # the bundle went bad under us
        r = c.get("/v1/health/ready")
        assert r.status_code == 503
        assert "decision.threshold" in r.json()["models"]["xray"]["problems"][0]
        assert c.get("/v1/models/xray").json()["ready"] is False
        r = c.post("/v1/predict", files=files(png_bytes(digits[0])))
        assert r.status_code == 503 and r.json()["error"] == "model_not_ready"
        assert c.get("/v1/health/live").status_code == 200  # alive all the same


def test_overload_gets_honest_503s_within_the_time_budget(tmp_path, digits):
    bundle = make_bundle(tmp_path / "digits")
    bundle.backend = SlowBackend(bundle, delay=0.25)  # per batch of at most 2 images
    budget = 2.0  # room for about 8 batches, 16 images: the other 24 requests must be refused
    limits = ServeLimits(max_batch=2, max_wait_ms=1, time_budget_s=budget)
    answers: list[tuple[int, float, str | None]] = []
    with TestClient(create_app(bundle, limits)) as c:
        c.post("/v1/predict", files=files(png_bytes(digits[0])))  # the pace is measured

        def call(i: int) -> None:
            r = c.post("/v1/predict", files=files(png_bytes(digits[i % 24])))
            server = float(r.headers["server-timing"].split("dur=")[1]) / 1e3
            answers.append((r.status_code, server, r.headers.get("retry-after")))

        threads = [threading.Thread(target=call, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    codes = [a[0] for a in answers]
    assert len(answers) == 40 and set(codes) <= {200, 503}, codes
    assert codes.count(200) >= 3 and codes.count(503) >= 10, codes
    assert all(a[2] and int(a[2]) >= 1 for a in answers if a[0] == 503)
    # the server's own time (Server-Timing): the budget, plus reading and parsing the body
    # before it starts (generous: the test machine's 2 cores are shared)
    assert max(a[1] for a in answers) < budget + 1.0, sorted(a[1] for a in answers)[-5:]


def _request(receive_messages, delay: float = 0.0):
    messages = list(receive_messages)

    async def receive():
        if delay:
            await asyncio.sleep(delay)
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "headers": [], "path": "/"}
    return Request(scope, receive)


def test_read_body_times_out_and_survives_a_disconnect():
    slow = _request([{"type": "http.request", "body": b"x", "more_body": True}] * 100, 0.05)
    with pytest.raises(UploadError) as e:
        asyncio.run(read_body(slow, 10_000, timeout=0.2))
    assert e.value.status == 408 and e.value.code == "request_timeout"
    gone = _request([{"type": "http.request", "body": b"x", "more_body": True}])
    with pytest.raises(UploadError) as e:
        asyncio.run(read_body(gone, 10_000, timeout=5))
    assert e.value.status == 400 and e.value.code == "client_disconnected"


# ----------------------------------------------------------------------------- a real server


class ServerThread:
    def __init__(self, app, **config) -> None:
        self.port = free_port()
        cfg = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", **config)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started and time.time() < deadline:
            time.sleep(0.02)
        assert self.server.started
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


def _post_head(length: int) -> bytes:
    return (f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            f"boundary=x\r\nContent-Length: {length}\r\n\r\n").encode()  # fmt: skip


def _reply(sock: socket.socket) -> bytes:
    """One whole HTTP answer (head and Content-Length body), however the segments arrive."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(4096)):
        data += chunk
    head = data.split(b"\r\n\r\n")[0].lower()
    length = (
        int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
        if b"content-length" in head
        else 0
    )
    while len(data) < len(head) + 4 + length and (chunk := sock.recv(4096)):
        data += chunk
    return data


def test_a_real_server_caps_connections_and_shuts_down_on_time(tmp_path, digits, capfd):
    bundle = make_bundle(tmp_path / "digits")
    bundle.backend = SlowBackend(bundle, delay=0.5)  # the request in flight takes a while
    # only the shutdown deadline may end the slow client
    limits = ServeLimits(read_timeout_s=60, max_connections=3)
    app = create_app(bundle, limits)
    config = {"http": guarded_protocol(limits), "timeout_graceful_shutdown": 1}
    with ServerThread(app, **config) as srv:  # uvicorn.Server: DeadlineServer would end pytest
        batcher = app.state.batchers["digits"]

        def wait_for(arriving: int) -> None:
            deadline = time.time() + 10
            while batcher.arriving != arriving and time.time() < deadline:
                time.sleep(0.01)
            assert batcher.arriving == arriving

        slow = srv.connect()
        slow.sendall(_post_head(100_000) + b"--x\r\n")  # half a body, then nothing
        wait_for(1)
        gone = srv.connect()
        gone.sendall(_post_head(100_000) + b"--x\r\n")
        wait_for(2)
        gone.close()  # a client that leaves mid-body
        wait_for(1)
        extra = [srv.connect() for _ in range(3)]
        for s in extra:
            s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        replies = [_reply(s) for s in extra]
        over = [r for r in replies if r.startswith(b"HTTP/1.1 503")]  # over the cap
        assert over and all(b"too_many_connections" in r and b"retry-after: 1" in r
                            for r in over), replies  # fmt: skip
        for s in extra:
            s.close()
        body = (b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
                + png_bytes(digits[0]) + b"\r\n--x--\r\n")  # fmt: skip
        inflight = srv.connect()
        inflight.sendall(_post_head(len(body)) + body)
        deadline = time.time() + 10
        while not batcher.queued and time.time() < deadline:
            time.sleep(0.01)
        assert batcher.queued == 1  # in the model when the shutdown begins
        started = time.perf_counter()
        srv.server.should_exit = True  # what SIGTERM does
        answer = inflight.recv(4096)
        srv.thread.join(10)
        took = time.perf_counter() - started
        slow.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]  # in flight: answered
    assert not srv.thread.is_alive() and 0.9 < took < 1 + 1.5, took  # the deadline, not the client
    logged = capfd.readouterr().err  # uvicorn's log
    assert "Traceback" not in logged and "Exception in ASGI application" not in logged, logged


def test_a_slow_pace_never_refuses_a_request_to_an_empty_queue(tmp_path, digits):
    bundle = make_bundle(tmp_path / "digits")
    with TestClient(create_app(bundle, ServeLimits(time_budget_s=1.0))) as c:
        c.app.state.batchers["digits"].per_image = 5.0  # one very slow batch was measured
        r = c.post("/v1/predict", files=files(png_bytes(digits[0])))
        assert r.status_code == 200, r.text  # it runs, and the pace is measured again
        assert c.app.state.batchers["digits"].per_image < 5.0
        assert "app;dur=" in r.headers["server-timing"]


def test_requests_past_the_cap_get_json_503_while_probes_answer(tmp_path, digits):
    """--max-requests bounds the requests being read or answered at once (each may hold
    --max-request-mb): past it a JSON 503 with Retry-After at once; probes are never refused."""
    bundle = make_bundle(tmp_path / "digits")
    bundle.backend = SlowBackend(bundle, delay=0.5)
    answers: list = []
    with TestClient(create_app(bundle, ServeLimits(max_requests=2, max_batch=1))) as c:

        def call(i: int) -> None:
            answers.append(c.post("/v1/predict", files=files(png_bytes(digits[i]))))

        threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        deadline = time.time() + 10
        while len(answers) < 4 and time.time() < deadline:  # 4 refused at once, 2 running
            time.sleep(0.01)
        for path in ("/v1/health/live", "/v1/health/ready", "/healthz"):
            assert c.get(path).status_code == 200, path  # while 2 requests are under way
        for t in threads:
            t.join(30)
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 200, 503, 503, 503, 503], codes
    for r in answers:
        if r.status_code == 503:
            assert r.json()["error"] == "at_capacity" and int(r.headers["retry-after"]) >= 1
