"""`cnnlab serve` as users run it (a subprocess on a free port) under clients that hold
connections: idle sockets past the connection cap, a request head that never arrives, a Host
header naming another site (DNS rebinding), SIGTERM with stalled clients. Both servers start
at once (each imports torch: seconds on a loaded machine), before the first test."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from cnnlab.net import free_port
from tests.serve.conftest import make_bundle, png_bytes

CAP = 8  # --max-connections of the capped server
HEAD_TIMEOUT = 3.0  # its --header-timeout-s: long enough for the cap checks to see idle sockets
DEADLINE = 2.0  # --shutdown-timeout-s of the server that is stopped


class Served:
    def __init__(self, bundle: str, *flags: str) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "cnnlab", "serve", bundle, "--port", str(self.port), *flags]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)

    def wait_up(self, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"cnnlab serve exited: {self.proc.stderr.read()[-3000:]}")
            try:
                if self.get("/v1/health/live")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("cnnlab serve did not answer")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        return self.proc.stderr.read()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, dict, bytes]:  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def get(self, path: str, **headers: str) -> tuple[int, dict, bytes]:
        return self.request("GET", path, headers=headers)

    def predict(self, image: bytes) -> tuple[int, dict, bytes]:
        body = (b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
                + image + b"\r\n--x--\r\n")  # fmt: skip
        return self.request("POST", "/v1/predict", body,
                            {"Content-Type": "multipart/form-data; boundary=x"})  # fmt: skip


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    bundle = str(make_bundle(tmp_path_factory.mktemp("bundles") / "digits").path)
    capped = Served(bundle, "--max-connections", str(CAP), "--header-timeout-s", str(HEAD_TIMEOUT))
    doomed = Served(bundle, "--shutdown-timeout-s", str(DEADLINE), "--read-timeout-s", "600")
    try:
        capped.wait_up()
        doomed.wait_up()
        yield {"capped": capped, "doomed": doomed}
    finally:
        for s in (capped, doomed):
            s.stop()


@pytest.fixture(scope="module")
def capped(servers) -> Served:
    return servers["capped"]


@pytest.fixture(scope="module")
def image(digits) -> bytes:
    return png_bytes(digits[0])


def _error_body(body: bytes) -> dict:
    out = json.loads(body)
    assert set(out) == {"error", "detail"}, out
    return out


def test_idle_connections_past_the_cap_leave_liveness_answering(capped, image):
    idle = [capped.connect() for _ in range(CAP + 4)]  # they send nothing
    try:
        time.sleep(0.3)  # the server has accepted them all
        for path in ("/v1/health/live", "/v1/health/ready", "/healthz"):
            start = time.perf_counter()
            status, _, body = capped.get(path)
            took = time.perf_counter() - start
            assert status == 200, (path, status, body)
            assert took < 1.0, (path, took)
        status, headers, body = capped.predict(image)  # a new connection, over the cap
        assert status == 503, (status, body)
        assert int(headers["retry-after"]) >= 1
        assert _error_body(body)["error"] == "too_many_connections"
        assert headers["connection"] == "close"  # the socket is given back
    finally:
        for s in idle:
            s.close()


def test_connections_idle_past_the_header_timeout_are_closed(capped, image):
    silent = capped.connect()  # sends nothing
    trickle = capped.connect()  # a head, one byte at a time (slowloris)
    kept = capped.connect()  # one answer, then keep-alive and nothing more
    kept.sendall(b"GET /v1/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert kept.recv(4096).startswith(b"HTTP/1.1 200")
    start = time.perf_counter()
    closed_after: dict[str, float] = {}
    head = b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"a" * 200
    sent = 0
    for s in (silent, trickle, kept):
        s.setblocking(False)
    while len(closed_after) < 3 and time.perf_counter() - start < HEAD_TIMEOUT + 5:
        if sent < len(head):
            try:
                trickle.send(head[sent : sent + 1])
                sent += 1
            except OSError:
                pass
        for name, s in (("silent", silent), ("trickle", trickle), ("kept", kept)):
            if name in closed_after:
                continue
            try:
                if s.recv(4096) == b"":  # an orderly close
                    closed_after[name] = time.perf_counter() - start
            except BlockingIOError:
                pass
            except OSError:
                closed_after[name] = time.perf_counter() - start
        time.sleep(0.05)
    for s in (silent, trickle, kept):
        s.close()
    assert set(closed_after) == {"silent", "trickle", "kept"}, closed_after
    assert all(HEAD_TIMEOUT - 0.5 < t < HEAD_TIMEOUT + 2.5 for t in closed_after.values()), (
        closed_after
    )
    status, _, body = capped.predict(image)  # the server answers as before
    assert status == 200, body


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.nip.io"])
def test_a_host_header_naming_another_site_is_refused(capped, host):
    status, _, body = capped.get("/v1/models", Host=host)
    assert status == 400, (status, body)
    refused = _error_body(body)
    assert refused["error"] == "host_not_allowed" and "--allowed-host" in refused["detail"]


def test_local_names_and_probes_answer(capped):
    for host in (f"localhost:{capped.port}", f"127.0.0.1:{capped.port}", "[::1]", "LOCALHOST"):
        assert capped.get("/v1/models", Host=host)[0] == 200, host
    for path in ("/v1/health/live", "/v1/health/ready", "/healthz"):  # a kubelet probes by IP
        assert capped.get(path, Host="10.1.2.3:8000")[0] == 200, path


def _post_head(length: int) -> bytes:
    return (f"POST /v1/predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; "
            f"boundary=x\r\nContent-Length: {length}\r\n\r\n").encode()  # fmt: skip


def test_sigterm_with_stalled_clients_exits_within_the_deadline(servers):
    srv = servers["doomed"]
    stalled = []
    for _ in range(8):  # a head and half a body each, then nothing (read timeout 600 s)
        s = srv.connect()
        s.sendall(_post_head(100_000) + b"--x\r\n" + b"a" * 50_000)
        stalled.append(s)
    idle = [srv.connect() for _ in range(4)]
    time.sleep(0.5)  # every body is being read
    start = time.perf_counter()
    srv.proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        srv.proc.wait(DEADLINE + 30)
    took = time.perf_counter() - start
    replies = []
    for s in stalled:
        try:
            s.settimeout(1)
            replies.append(s.recv(4096))
        except OSError:
            replies.append(b"")
        s.close()
    for s in idle:
        s.close()
    log = srv.stop()
    assert took < DEADLINE, f"exited {took:.2f} s after SIGTERM; deadline {DEADLINE} s\n{log}"
    assert took > DEADLINE / 2, took  # it waited for the clients, then gave up on them
    assert "Traceback" not in log, log
    answered = [r for r in replies if r.startswith(b"HTTP/1.1 503")]
    assert all(b'"shutting_down"' in r for r in answered), replies


HANGING_APP = """
import sys, time
from cnnlab.serve.limits import ServeLimits
from cnnlab.serve.server import serve

async def app(scope, receive, send):  # its shutdown never ends (a stuck thread, say)
    assert scope["type"] == "lifespan"
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
            print("up", flush=True)
        else:
            time.sleep(60)

serve(app, "127.0.0.1", int(sys.argv[1]), ServeLimits(shutdown_timeout_s=float(sys.argv[2])))
"""


def test_the_deadline_holds_when_the_apps_own_shutdown_hangs():
    cmd = [sys.executable, "-c", HANGING_APP, str(free_port()), str(DEADLINE)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "up\n", proc.stderr.read()
        start = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(DEADLINE + 30)
        took = time.perf_counter() - start
    finally:
        if proc.poll() is None:
            proc.kill()
    log = proc.stderr.read()
    assert DEADLINE - 0.5 < took < DEADLINE, (took, log)
    assert proc.returncode == 1 and f"shutdown deadline of {DEADLINE:g} s reached" in log, log


@pytest.mark.parametrize("flags", [["--allowed-host", "api*.example"], ["--allowed-host", ""],
                                   ["--header-timeout-s", "0"], ["--max-requests", "0"],
                                   ["--max-connections", "0"], ["--shutdown-timeout-s", "nan"]])  # fmt: skip
def test_bad_connection_limits_are_refused_in_one_line(flags, capsys):
    from cnnlab.cli import main

    assert main(["serve", "no-such-bundle", *flags]) == 2  # refused before any bundle is read
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flags[0] in err, err
