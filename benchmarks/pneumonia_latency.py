"""Prediction latency of the shipped `pneumonia` model on one 224x224 image: p50 and p95.

cnnlab: `predict_sources` on the file's bytes (decode, resize, normalise, forward with the
bundle's runtime: channels-last, inference mode, calibrated probability, threshold) - what
the CLI, the app and the API run per upload. Baseline beside it, the common plain-PyTorch
path: PIL + torchvision transforms, the same weights in the default memory layout under
`torch.no_grad()`. Both run one image at a time, after a warm-up.

    flock /tmp/cnnlab-cpu.lock python benchmarks/pneumonia_latency.py [--bundle pneumonia] [--runs 200]
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from cnnlab.bundle import load_bundle
from cnnlab.predict import predict_sources
from cnnlab.runtime.device import cpu_capability, set_threads

ROOT = Path(__file__).resolve().parents[1]


def an_xray() -> bytes:
    """A real 224x224 X-ray from ../shared/data when present, else a synthetic gray image."""
    folder = ROOT.parent / "shared" / "data" / "chest_xray" / "train" / "PNEUMONIA"
    if folder.is_dir():
        return next(iter(sorted(folder.iterdir()))).read_bytes()
    arr = (np.random.default_rng(0).random((224, 224)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def timed(fn, runs: int, warmup: int = 10) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default="pneumonia")
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    threads = set_threads(0)
    data = an_xray()
    bundle = load_bundle(args.bundle)
    pre = bundle.preprocess
    ours = timed(lambda: predict_sources(bundle, [data]), args.runs)

    plain = load_bundle(args.bundle).model.to(memory_format=torch.contiguous_format).eval()
    tf = transforms.Compose([
        transforms.Grayscale() if pre.channels == 1 else transforms.Lambda(lambda im: im.convert("RGB")),
        transforms.Resize(pre.size), transforms.ToTensor(), transforms.Normalize(pre.mean, pre.std),
    ])  # fmt: skip

    def baseline() -> float:
        with torch.no_grad():
            x = tf(Image.open(io.BytesIO(data)))[None]
            return float(torch.sigmoid(plain(x)[0, 0] / bundle.temperature))

    base = timed(baseline, args.runs)
    pred = predict_sources(bundle, [data])[0]
    print(f"{bundle.name}: {bundle.meta['model']['name']}, {pre.channels}x{pre.size[0]}x{pre.size[1]}, "
          f"CPU {cpu_capability()}, {threads} threads, {bundle.runtime.describe().split(' / ')[1]}, "
          f"torch {torch.__version__}; one image, {args.runs} runs")  # fmt: skip
    print(f"{'path':<58}{'p50 ms':>8}{'p95 ms':>8}")
    for name, t in (("baseline: PIL + torchvision transforms, no_grad, NCHW", base),
                    ("cnnlab predict_sources (bytes -> label, calibrated)", ours)):  # fmt: skip
        print(f"{name:<58}{np.percentile(t, 50):>8.1f}{np.percentile(t, 95):>8.1f}")
    print(
        f"prediction on the sample: {pred.label} p={pred.probability:.3f} (threshold {pred.threshold})"
    )


if __name__ == "__main__":
    main()
