"""A PACS that misbehaves on cue: an HTTP proxy in front of the real Orthanc that answers
chosen requests with an error status (a 500 on one study's series, a refused STOW) and
forwards the rest unchanged."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


class Flaky:
    """`fail` maps (method, a substring of the path) to the status to answer with."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.fail: dict[tuple[str, str], int] = {}
        self.url = ""


def _handler(flaky: Flaky) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _forward(self, method: str) -> None:
            for (m, part), status in list(flaky.fail.items()):
                if m == method and part in self.path:
                    body = b'{"error": "induced"}'
                    self.send_response(status)
                    self.send_header("Connection", "close")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else None
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
            }
            r = requests.request(
                method, flaky.target + self.path, data=data, headers=headers, timeout=60
            )
            self.send_response(r.status_code)
            for k, v in r.headers.items():
                if k.lower() not in ("transfer-encoding", "content-length", "connection", "content-encoding",
                                     "keep-alive"):  # fmt: skip
                    self.send_header(k, v)
            self.send_header("Connection", "close")  # one request per connection: never reused
            self.send_header("Content-Length", str(len(r.content)))
            self.end_headers()
            self.wfile.write(r.content)

        def do_GET(self) -> None:  # noqa: N802 - http.server's names
            self._forward("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._forward("POST")

    return Handler


@contextmanager
def flaky_pacs(target_http: str) -> Iterator[Flaky]:
    """A proxy to `target_http` (Orthanc's root); `.url` is its DICOMweb root."""
    flaky = Flaky(target_http)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(flaky))
    flaky.url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield flaky
    finally:
        server.shutdown()
        server.server_close()
