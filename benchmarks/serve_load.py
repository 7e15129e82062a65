"""Load test of `cnnlab serve`: requests/s and latency at several concurrencies, per backend.

Starts `cnnlab serve MODEL` on 127.0.0.1 (PyTorch, then ONNX Runtime), sends a bounded load
(N requests, one image each, at each concurrency; each level stops by itself), and prints
requests/s, p50/p95/p99 latency and errors beside a baseline measured in the same run: a
one-image-at-a-time loop in this process (read the image, predict it, next), what a
server without batching would at best do.

    python benchmarks/serve_load.py                       # the shipped pneumonia model
    python benchmarks/serve_load.py --model runs/xray     # any bundle
    python benchmarks/serve_load.py --standin             # an EfficientNet-Lite0 stand-in

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


def serve(model: str, backend: str, onnx_file: str | None, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cnnlab", "-q", "serve", model, "--port", str(port),
           "--backend", backend]  # fmt: skip
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pneumonia", help="bundle folder or shipped name")
    ap.add_argument("--standin", action="store_true", help="time an EfficientNet-Lite0 stand-in")
    ap.add_argument("--images", nargs="+", help="image files/folders to send")
    ap.add_argument("--requests", type=int, default=2000, help="requests per concurrency level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx"])
    ap.add_argument("--loop", type=int, default=300, help="images in the baseline loop")
    args = ap.parse_args()

    from cnnlab.bundle import load_bundle
    from cnnlab.deploy.onnx import export_onnx

    tmp = Path(tempfile.mkdtemp(prefix="cnnlab-serve-load-"))
    model = str(make_standin(tmp / "standin")) if args.standin else args.model
    images = load_images(args.images)
    bundle = load_bundle(model)
    kind = "stand-in (untrained head)" if args.standin else "bundle"
    print(f"model: {bundle.name} ({bundle.meta['model']['name']}, {kind}); {len(images)} images "
          f"sent in turn, {sum(len(b) for _, b in images) / len(images) / 1e3:.1f} kB each")  # fmt: skip
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
