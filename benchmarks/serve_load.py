"""Load test of `cnnlab serve`: requests/s and latency at several concurrencies, per backend.

Starts `cnnlab serve MODEL` on 127.0.0.1 (PyTorch, then ONNX Runtime), sends a bounded load
(N requests, one image each, at each concurrency; each level stops by itself), and prints
requests/s, p50/p95/p99 latency and errors beside a baseline measured in the same run: a
one-image-at-a-time loop in this process (read the image, predict it, next), what a
server without batching would at best do.

    python benchmarks/serve_load.py                       # the shipped pneumonia model
    python benchmarks/serve_load.py --model runs/xray     # any bundle
    python benchmarks/serve_load.py --standin             # an EfficientNet-Lite0 stand-in
    python benchmarks/serve_load.py --checks trust        # SIGTERM, overload, memory only

The trust checks, each printed beside its bound: idle connections (100, then 200 against
--max-connections 150): liveness within 1 s, a prediction answered under the cap and a JSON
503 with Retry-After past it, every idle socket closed by the header timeout; SIGTERM with 8
requests in flight, 8 clients stalled mid-body and idle connections (the in-flight ones
answered, exit within --shutdown-deadline); an overload (--overload-requests x 4 images at
--overload-concurrency, --time-budget): only 200s and JSON 503s with Retry-After, counted by
code, none past the budget; resident memory before and after --memory-requests requests.

Images: real chest X-rays from ../shared/data/chest_xray (or --images PATH). Only loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from cnnlab.deploy import BACKENDS
from cnnlab.net import free_port

ROOT = Path(__file__).resolve().parents[1]
XRAYS = ROOT.parent / "shared" / "data" / "chest_xray" / "train"


def load_images(paths: list[str] | None, n: int = 64) -> list[tuple[str, bytes]]:
    from cnnlab.predict import expand_inputs

    files = expand_inputs(paths, recursive=True) if paths else sorted(XRAYS.rglob("*.jpeg"))
    if not files:
        sys.exit(f"no images: pass --images PATH (looked in {XRAYS})")
    step = max(1, len(files) // n)
    return [(f.name, f.read_bytes()) for f in files[::step][:n]]


def make_standin(out: Path) -> Path:
    """A binary EfficientNet-Lite0 bundle at 224x224 RGB (ImageNet backbone, untrained head):
    the architecture and input of the pneumonia model, for timing only."""
    import torch

    from cnnlab.bundle import save_bundle
    from cnnlab.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
    from cnnlab.models import create_model

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0")
    pre = Preprocess(3, [224, 224], IMAGENET_MEAN, IMAGENET_STD, "stretch")
    save_bundle(out, model, "efficientnet_lite0", {}, pre, ["NORMAL", "PNEUMONIA"],
                class_mode="binary")  # fmt: skip
    return out


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))] if s else float("nan")


def row(label: str, n: int, errors: int, seconds: float, latencies: list[float]) -> dict:
    return {"label": label, "n": n, "errors": errors, "rps": n / seconds,
            "p50": percentile(latencies, 50) * 1e3, "p95": percentile(latencies, 95) * 1e3,
            "p99": percentile(latencies, 99) * 1e3}  # fmt: skip


def loop_baseline(model: str, backend: str, onnx_file: str | None, images, n: int) -> dict:
    """One image at a time, in process: decode, predict, next (no HTTP, no batching)."""
    from cnnlab.bundle import load_bundle
    from cnnlab.deploy import use_backend
    from cnnlab.predict import predict_sources
    from cnnlab.runtime.device import set_threads

    set_threads()
    bundle = use_backend(load_bundle(model), backend, onnx_file)
    predict_sources(bundle, [images[0][1]])  # warm up
    latencies, errors = [], 0
    started = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        errors += predict_sources(bundle, [images[i % len(images)][1]])[0].error is not None
        latencies.append(time.perf_counter() - t)
    return row("loop, 1 image at a time", n, errors, time.perf_counter() - started, latencies)


async def load(url: str, images, requests: int, concurrency: int) -> dict:
    latencies: list[float] = []
    errors = 0
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker() -> None:
            nonlocal next_index, errors
            while next_index < requests:
                i = next_index
                next_index += 1
                name, data = images[i % len(images)]
                t = time.perf_counter()
                try:
                    r = await client.post("/v1/predict", files=[("files", (name, data))])
                    ok = r.status_code == 200 and len(r.json()["predictions"]) == 1
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return row(f"HTTP, concurrency {concurrency}", requests, errors, seconds, latencies)


def serve(
    model: str, backend: str, onnx_file: str | None, port: int, extra: list[str] | None = None
) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cnnlab", "-q", "serve", model, "--port", str(port),
           "--backend", backend, *(extra or [])]  # fmt: skip
    if onnx_file:
        cmd += ["--onnx", onnx_file]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"cnnlab serve exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.terminate()
    sys.exit("cnnlab serve did not come up in 300 s")


# ----------------------------------------------------------------------------- trust checks


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def multipart(images, n: int, start: int = 0) -> tuple[bytes, str]:
    """A multipart body of `n` images, and its Content-Type."""
    parts = []
    for i in range(n):
        name, data = images[(start + i) % len(images)]
        parts.append(b"--cnnlabbench\r\nContent-Disposition: form-data; name=\"files\"; "
                     b"filename=\"" + name.encode() + b"\"\r\n\r\n" + data + b"\r\n")  # fmt: skip
    return b"".join(parts) + b"--cnnlabbench--\r\n", "multipart/form-data; boundary=cnnlabbench"


def shutdown_check(model: str, images, deadline_s: float, inflight: int, stalled: int = 8,
                   idle: int = 50) -> dict:  # fmt: skip
    """SIGTERM with `inflight` requests under way (8 images each, all received and in the
    model's queue), `stalled` clients that sent half a body and wait, and `idle` connections
    that sent nothing: the requests under way are answered, and the server exits within the
    deadline."""
    import signal
    import socket

    port = free_port()
    proc = serve(model, "torch", None, port, ["--shutdown-timeout-s", str(deadline_s),
                                              "--read-timeout-s", "600"])  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def send(body: bytes, ctype: str, cut: int | None = None) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port))
        head = (f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
        sock.sendall(head + body[:cut])
        return sock

    body, ctype = multipart(images, 8)
    slow = [send(body, ctype, len(body) // 2) for _ in range(stalled)]  # half, then nothing
    quiet = [socket.create_connection(("127.0.0.1", port)) for _ in range(idle)]
    socks = [send(*multipart(images, 8, 8 * i)) for i in range(inflight)]
    deadline = time.time() + 60
    while time.time() < deadline:  # until every request is decoded (queued or answered)
        stats = httpx.get(f"{url}/healthz", timeout=10).json()["batching"]
        seen = sum(b["queued"] + b["images"] for b in stats.values())
        if seen >= 8 * inflight:
            break
        time.sleep(0.02)
    queued = sum(b["queued"] for b in stats.values())
    started = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    codes = []
    for sock in socks:
        sock.settimeout(deadline_s + 30)
        try:
            reply = sock.recv(64)
            codes.append(int(reply.split()[1]) if reply.startswith(b"HTTP/1.1") else 0)
        except (OSError, ValueError, IndexError):
            codes.append(0)
        sock.close()
    try:
        proc.wait(deadline_s + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
    exited = time.perf_counter() - started
    stalled_codes = []
    for sock in slow:
        sock.settimeout(1)
        try:
            reply = sock.recv(4096)
            stalled_codes.append("503 shutting_down" if b'"shutting_down"' in reply
                                 else reply[:12].decode(errors="replace") or "closed")  # fmt: skip
        except OSError:
            stalled_codes.append("reset")
        sock.close()
    for sock in quiet:
        sock.close()
    stderr = proc.stderr.read() if proc.stderr else ""
    return {"deadline_s": deadline_s, "exit_s": exited, "inflight": inflight, "queued": queued,
            "answered_200": codes.count(200), "codes": sorted(set(codes)), "stalled": stalled,
            "idle": idle, "stalled_answers": sorted(set(stalled_codes)),
            "returncode": proc.returncode, "traceback": "Traceback" in stderr}  # fmt: skip


async def _overload(url: str, images, requests: int, concurrency: int, per_request: int) -> dict:
    answers: list[tuple[int, float, float]] = []
    reasons: dict[str, int] = {}  # "200", "503 overloaded", "503 at_capacity", "0 ReadError"...
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker() -> None:
            nonlocal next_index
            while next_index < requests:
                i = next_index
                next_index += 1
                body, ctype = multipart(images, per_request, i)
                t = time.perf_counter()
                server = float("nan")
                why = ""
                try:
                    r = await client.post("/v1/predict", content=body,
                                          headers={"content-type": ctype})  # fmt: skip
                    code = r.status_code
                    if code == 503:
                        why = _json_error(r)
                        if "retry-after" not in r.headers:
                            why = "no Retry-After"  # not what the API promises
                    timing = r.headers.get("server-timing", "")
                    if "dur=" in timing:
                        server = float(timing.split("dur=")[1]) / 1e3
                except httpx.HTTPError as e:
                    code, why = 0, type(e).__name__
                answers.append((code, time.perf_counter() - t, server))
                reasons[f"{code} {why}".strip()] = reasons.get(f"{code} {why}".strip(), 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    ok = [t for c, t, _ in answers if c == 200]
    refused = [t for c, t, _ in answers if c == 503]
    server = [s for _, _, s in answers if s == s]
    return {"requests": requests, "images_each": per_request, "concurrency": concurrency,
            "seconds": seconds, "200": len(ok), "503": len(refused),
            "other": sorted({c for c, _, _ in answers if c not in (200, 503)}),
            "max_s": max(t for _, t, _ in answers), "max_200_s": max(ok, default=0.0),
            "max_503_s": max(refused, default=0.0), "max_server_s": max(server, default=0.0),
            "p95_200_ms": percentile(ok, 95) * 1e3, "p50_200_ms": percentile(ok, 50) * 1e3,
            "reasons": dict(sorted(reasons.items()))}  # fmt: skip


def _json_error(r: httpx.Response) -> str:
    """The API's error code of a refusal, or what was wrong with its body."""
    try:
        body = r.json()
    except ValueError:
        return "not JSON"
    return body.get("error", "no error code") if isinstance(body, dict) else "not an object"


def overload_check(model: str, images, budget_s: float, requests: int, concurrency: int,
                   per_request: int) -> dict:  # fmt: skip
    """More work than the server can do within its time budget, and more clients than its
    cap on requests under way: every answer is a 200 or an honest JSON 503 with Retry-After,
    none waits past the budget (plus the upload and decoding)."""
    port = free_port()
    proc = serve(model, "torch", None, port, ["--time-budget-s", str(budget_s)])  # default caps
    try:
        httpx.post(f"http://127.0.0.1:{port}/v1/predict", files=[("files", images[0])], timeout=60)
        out = asyncio.run(_overload(f"http://127.0.0.1:{port}", images, requests, concurrency,
                                    per_request))  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(30)
    out["budget_s"] = budget_s
    return out


def idle_check(model: str, images, cap: int, header_timeout_s: float, under: int = 100,
               past: int = 200, probes: int = 10) -> dict:  # fmt: skip
    """Connections that send nothing: `under` of them (under the cap `cap`), then `past` in all.
    Liveness and readiness must answer within 1 s whatever their number, a prediction is
    answered under the cap and gets a JSON 503 with Retry-After past it, and the server
    closes every one of them after the header timeout."""
    import select
    import socket

    port = free_port()
    proc = serve(model, "torch", None, port, ["--max-connections", str(cap),
                                              "--header-timeout-s", str(header_timeout_s)])  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def fresh(method: str, path: str, **kw) -> tuple[httpx.Response, float]:
        t = time.perf_counter()
        r = httpx.request(method, url + path, timeout=30, **kw)  # a new connection each time
        return r, time.perf_counter() - t

    def probe_round() -> dict:
        times, codes = [], []
        for i in range(probes):
            r, took = fresh("GET", "/v1/health/live" if i % 2 == 0 else "/v1/health/ready")
            times.append(took)
            codes.append(r.status_code)
        r, took = fresh("POST", "/v1/predict", files=[("files", images[0])])
        why = _json_error(r) if r.status_code != 200 else ""
        return {"probe_codes": sorted(set(codes)), "probe_max_s": max(times),
                "predict": f"{r.status_code} {why}".strip(), "predict_s": took,
                "retry_after": r.headers.get("retry-after")}  # fmt: skip

    try:
        fresh("POST", "/v1/predict", files=[("files", images[0])])  # warm-up
        opened: dict[socket.socket, float] = {}  # each idle socket: when it was opened

        def open_idle(n: int) -> None:
            for _ in range(n):
                opened[socket.create_connection(("127.0.0.1", port))] = time.perf_counter()

        open_idle(under)
        time.sleep(0.2)
        first = probe_round()
        open_idle(past - under)
        time.sleep(0.2)
        second = probe_round()
        idle, open_socks, closed_at = list(opened), set(opened), []
        while open_socks and time.perf_counter() - max(opened.values()) < header_timeout_s + 30:
            readable, _, _ = select.select(list(open_socks), [], [], 0.05)
            for sock in readable:
                try:
                    gone = sock.recv(1) == b""
                except OSError:
                    gone = True
                if gone:
                    closed_at.append(time.perf_counter() - opened[sock])
                    open_socks.discard(sock)
        for sock in idle:
            sock.close()
        after = probe_round()
    finally:
        proc.terminate()
        proc.wait(30)
    return {"cap": cap, "under": under, "past": past, "header_timeout_s": header_timeout_s,
            "first": first, "second": second, "after": after, "closed": len(closed_at),
            "first_closed_s": min(closed_at, default=float("nan")),
            "last_closed_s": max(closed_at, default=float("nan"))}  # fmt: skip


def memory_check(model: str, images, requests: int, concurrency: int) -> dict:
    """Resident memory of the server after a warm-up and after `requests` more: a leak grows."""
    port = free_port()
    proc = serve(model, "torch", None, port)
    try:
        url = f"http://127.0.0.1:{port}"
        asyncio.run(load(url, images, 100, concurrency))  # warm-up: allocator pools fill
        before = rss_mb(proc.pid)
        first = asyncio.run(load(url, images, requests // 2, concurrency))
        half = rss_mb(proc.pid)  # a leak keeps growing; a pool that filled up does not
        second = asyncio.run(load(url, images, requests - requests // 2, concurrency))
        after = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    return {"requests": requests, "errors": first["errors"] + second["errors"],
            "before_mb": before, "half_mb": half, "after_mb": after}  # fmt: skip


def shutdown_line(s: dict) -> None:
    print(f"SIGTERM with {s['inflight']} requests of 8 images in flight ({s['queued']} images "
          f"still queued), {s['stalled']} clients stalled mid-body and {s['idle']} idle "
          f"connections: {s['answered_200']}/{s['inflight']} answered 200 (codes {s['codes']}); "
          f"stalled clients got {s['stalled_answers']}; exited in {s['exit_s']:.2f} s (bound: "
          f"deadline {s['deadline_s']:g} s; status {s['returncode']}); traceback in the log: "
          f"{'yes' if s['traceback'] else 'no'}")  # fmt: skip


def trust_checks(model: str, images, args) -> None:
    i = idle_check(model, images, 150, args.header_timeout)
    print()
    for label, r in ((f"{i['under']} idle connections (cap {i['cap']})", i["first"]),
                     (f"{i['past']} idle connections ({i['past'] - i['cap']} past the cap)",
                      i["second"])):  # fmt: skip
        print(f"{label}: liveness/readiness {r['probe_codes']}, slowest "
              f"{r['probe_max_s'] * 1e3:.0f} ms (bound 1000 ms); a prediction: {r['predict']} "
              f"in {r['predict_s'] * 1e3:.0f} ms (Retry-After {r['retry_after']})")  # fmt: skip
    print(f"the {i['past']} idle connections: {i['closed']} closed by the server "
          f"{i['first_closed_s']:.2f}-{i['last_closed_s']:.2f} s after opening (bound: "
          f"--header-timeout-s {i['header_timeout_s']:g}); then a prediction: "
          f"{i['after']['predict']}, liveness {i['after']['probe_codes']}")  # fmt: skip
    for deadline in args.shutdown_deadline:
        shutdown_line(shutdown_check(model, images, deadline, 8))
    o = overload_check(model, images, args.time_budget, args.overload_requests,
                       args.overload_concurrency, 4)  # fmt: skip
    counted = ", ".join(f"{n} x {k}" for k, n in o["reasons"].items())
    print(f"overload: {o['requests']} requests x {o['images_each']} images at concurrency "
          f"{o['concurrency']}, time budget {o['budget_s']:g} s, default caps: {counted} (bound: "
          f"only 200 and JSON 503 with Retry-After); slowest 200 {o['max_200_s']:.2f} s, "
          f"slowest 503 {o['max_503_s']:.2f} s at the client, {o['max_server_s']:.2f} s in the "
          f"server (Server-Timing; bound: the {o['budget_s']:g} s budget plus reading and "
          f"decoding); 200s p50 {o['p50_200_ms']:.0f} ms, p95 {o['p95_200_ms']:.0f} ms; "
          f"{o['seconds']:.1f} s in all")  # fmt: skip
    if not args.memory_requests:
        return
    m = memory_check(model, images, args.memory_requests, 8)
    print(f"memory: RSS {m['before_mb']:.0f} MB after warm-up, {m['half_mb']:.0f} MB after "
          f"{m['requests'] // 2} more requests, {m['after_mb']:.0f} MB after {m['requests']} "
          f"({m['after_mb'] - m['before_mb']:+.0f} MB; {m['errors']} errors)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pneumonia", help="bundle folder or shipped name")
    ap.add_argument("--standin", action="store_true", help="time an EfficientNet-Lite0 stand-in")
    ap.add_argument("--images", nargs="+", help="image files/folders to send")
    ap.add_argument("--requests", type=int, default=2000, help="requests per concurrency level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    ap.add_argument("--loop", type=int, default=300, help="images in the baseline loop")
    ap.add_argument("--checks", choices=["all", "throughput", "trust"], default="all",
                    help="throughput levels, the trust checks (idle connections, SIGTERM with "
                    "stalled clients, overload, memory over many requests), or both")  # fmt: skip
    ap.add_argument("--shutdown-deadline", type=float, nargs="+", default=[5.0, 10.0])
    ap.add_argument("--time-budget", type=float, default=2.0)
    ap.add_argument("--header-timeout", type=float, default=5.0)
    ap.add_argument("--overload-requests", type=int, default=640)
    ap.add_argument("--overload-concurrency", type=int, default=320)
    ap.add_argument("--memory-requests", type=int, default=2000, help="0: no memory check")
    args = ap.parse_args()
    from cnnlab.runtime.device import machine_line

    print(machine_line(), flush=True)  # what the times below depend on

    from cnnlab.bundle import load_bundle
    from cnnlab.deploy.onnx import export_onnx

    tmp = Path(tempfile.mkdtemp(prefix="cnnlab-serve-load-"))
    model = str(make_standin(tmp / "standin")) if args.standin else args.model
    images = load_images(args.images)
    bundle = load_bundle(model)
    kind = "stand-in (untrained head)" if args.standin else "bundle"
    print(f"model: {bundle.name} ({bundle.meta['model']['name']}, {kind}); {len(images)} images "
          f"sent in turn, {sum(len(b) for _, b in images) / len(images) / 1e3:.1f} kB each")  # fmt: skip
    if args.checks in ("all", "trust"):
        trust_checks(model, images, args)
    if args.checks == "trust":
        return
    # the PyTorch loop runs before the export: PyTorch inference in a process that has run
    # torch.onnx.export (dynamo) was measured ~20x slower, which would flatter the server
    loops = (
        {"torch": loop_baseline(model, "torch", None, images, args.loop)}
        if "torch" in args.backends
        else {}
    )
    onnx_file = None
    if "onnx" in args.backends:
        onnx_file = str(tmp / "model.onnx")
        import torch

        real = torch.stack([bundle.preprocess.load(data) for _, data in images])
        _, res = export_onnx(bundle, onnx_file, real, f"{len(images)} of the images sent")
        print(f"ONNX export: {res.parity.describe()}")
    results: dict[str, list[dict]] = {}
    for backend in args.backends:
        b_onnx = onnx_file if backend == "onnx" else None
        rows = [loops.get(backend) or loop_baseline(model, backend, b_onnx, images, args.loop)]
        port = free_port()
        proc = serve(model, backend, b_onnx, port)
        try:
            for c in args.concurrency:
                rows.append(asyncio.run(load(f"http://127.0.0.1:{port}", images, args.requests, c)))
        finally:
            proc.terminate()
            proc.wait(30)
        results[backend] = rows

    print(f"\n{'backend':<8}{'mode':<26}{'requests':>9}{'errors':>8}{'req/s':>9}"
          f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'x loop':>8}")  # fmt: skip
    torch_loop = results.get("torch", [None])[0]
    for backend, rows in results.items():
        for r in rows:
            print(f"{backend:<8}{r['label']:<26}{r['n']:>9}{r['errors']:>8}{r['rps']:>9.1f}"
                  f"{r['p50']:>9.1f}{r['p95']:>9.1f}{r['p99']:>9.1f}{r['rps'] / rows[0]['rps']:>8.2f}")  # fmt: skip
    if torch_loop:
        best = {b: max(rows[1:], key=lambda r: r["rps"]) for b, rows in results.items()}
        for b, r in best.items():
            print(
                f"{b}: best HTTP {r['rps']:.1f} req/s ({r['label']}) = "
                f"{r['rps'] / torch_loop['rps']:.2f}x the PyTorch one-image loop"
            )
    stats = statistics.mean(r["errors"] for rows in results.values() for r in rows)
    print(f"mean errors per level: {stats:.2f}")


if __name__ == "__main__":
    main()
