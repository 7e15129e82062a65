"""ONNX Runtime with the out-of-distribution check: one engine per batch, beside two.

A bundle with the check served with `--backend onnx` used to run PyTorch for the check's
features beside ONNX Runtime for the logits; its graph now outputs the features, so one
session run answers both. Per batch of real X-rays of the shipped `pneumonia` model, median ms
of `Bundle.predict_checked` with:

    onnx (one engine)     the graph's logits and features (what cnnlab runs now)
    onnx + torch (two)    PyTorch's logits_and_features, then the graph's logits (what it ran)
    torch                 PyTorch alone (`--backend torch`)

    flock /tmp/cnnlab-cpu.lock python benchmarks/onnx_one_engine.py [--batches 1 16] [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from cnnlab.bundle import load_bundle
from cnnlab.deploy import use_backend
from cnnlab.runtime.device import cpu_capability, set_threads
from cnnlab.runtime.inference import logits_and_features

ROOT = Path(__file__).resolve().parents[1]


def xrays(bundle, n: int) -> torch.Tensor:
    folder = ROOT.parent / "shared" / "data" / "chest_xray" / "external"
    files = sorted(folder.glob("*/*.jpeg"))[::7][:n]
    if len(files) < n:
        raise SystemExit(f"needs {n} X-rays under {folder}")
    return torch.stack([bundle.preprocess.load(f) for f in files])


def median_ms(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def two_engines(bundle, images: torch.Tensor):
    """What predict_checked ran before: PyTorch for the features, the backend for the logits."""
    _, feats = logits_and_features(bundle.model, images, bundle.preprocess, bundle.runtime,
                                   bundle.ood.layers, len(images))  # fmt: skip
    logits = bundle.backend.run(images, len(images))[0]
    return bundle.decision.probabilities(logits), bundle.ood.distances(feats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default="pneumonia")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    threads = set_threads(0)
    bundle = load_bundle(args.bundle)
    assert bundle.ood is not None, "the bundle needs an out-of-distribution check"
    images = xrays(bundle, max(args.batches))
    started = time.perf_counter()
    use_backend(bundle, "onnx")  # BUNDLE/model.onnx if there is one, else exported in memory
    print(f"ONNX backend ready in {time.perf_counter() - started:.1f} s")
    print(f"{args.bundle}: CPU {cpu_capability()}, {threads} threads, fp32, median of "
          f"{args.runs} runs per batch")  # fmt: skip
    print(f"{'batch':>6}{'onnx (one engine)':>20}{'onnx + torch (two)':>20}{'torch':>10}")
    for n in args.batches:
        x = images[:n]
        one = median_ms(lambda x=x: bundle.predict_checked(x, len(x)), args.runs)
        two = median_ms(lambda x=x: two_engines(bundle, x), args.runs)
        backend, bundle.backend = bundle.backend, None
        alone = median_ms(lambda x=x: bundle.predict_checked(x, len(x)), args.runs)
        bundle.backend = backend
        print(f"{n:>6}{one:>17.1f} ms{two:>17.1f} ms{alone:>7.1f} ms")


if __name__ == "__main__":
    main()
