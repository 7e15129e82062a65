"""The out-of-distribution check of the pneumonia model, measured: held-out X-rays flagged
(should be <= 2%) beside clearly foreign inputs flagged (should be >= 95%).

1. The shipped bundle is copied to runs/ (src/cnnlab/shipped/ is never written) and gets its
   check from `cnnlab ood-fit` (cnnlab.evaluate.ood_fit.add_ood) on chest_xray/train: the bundle's
   own patient-grouped split repeated, fitted on the training part, cut off at the 99th
   percentile of the validation part.
2. In distribution, held out: that validation split (the cut-off's own images: ~1% by
   construction) and chest_xray/external (half the official test set, never trained on).
3. Foreign: MNIST digits, CIFAR-10 images, and the external X-rays inverted (255 - x), each
   read through the same door as an upload (`decode_batch`: resized to 224x224, gray). At
   their own 28x28 and 32x32 the intake refuses digits and photos as too small to judge
   (counted first); enlarged to 224x224 they pass it, and the check is what must flag them.

    python benchmarks/ood.py [--images 1000] [--out runs/pneumonia-ood]

Writes the figures to OUT/ood_benchmark.json and prints them. Takes minutes on 2 cores: the
features of 5,216 training X-rays dominate (once; a second run reuses the bundle's check).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def mnist_pngs(n: int, seed: int = 0) -> list[bytes]:
    """`n` MNIST digits (drawn at random from the training IDX file) as PNG bytes."""
    with gzip.open(DATA / "mnist" / "train-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    pick = np.random.default_rng(seed).choice(len(raw), n, replace=False)
    return [_png(raw[i]) for i in pick]


def cifar_jpegs(n: int, seed: int = 0) -> list[bytes]:
    """`n` CIFAR-10 JPEGs drawn at random from the tarball (read from it, not extracted)."""
    with tarfile.open(DATA / "cifar10-train.tar.gz") as tf:
        members = [m for m in tf.getmembers() if m.isfile() and m.name.endswith(".jpg")]
        pick = np.random.default_rng(seed).choice(len(members), n, replace=False)
        wanted = {members[i].name for i in pick}
        out = []
        for m in members:  # one pass through the gzip stream, in archive order
            if m.name in wanted:
                out.append(tf.extractfile(m).read())
        return out


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def decode(bundle, sources: list, allow_refused: bool = False) -> tuple[torch.Tensor | None, int]:
    """The inputs as an upload would reach the model, and how many the intake refused (an image
    far smaller than the model's input is refused as not usable before the model sees it)."""
    from cnnlab.data.intake import decode_batch

    decoded = decode_batch(sources, bundle.preprocess)
    bad = [d.error for d in decoded if d.pixels is None]
    if bad and not allow_refused:
        raise SystemExit(f"{len(bad)} inputs unreadable, e.g. {bad[0]}")
    kept = [d.pixels for d in decoded if d.pixels is not None]
    return (torch.stack(kept) if kept else None), len(bad)


def enlarged(sources: list[bytes], size: int = 224) -> list[bytes]:
    """Each image scaled up (bicubic) to size x size: a small image as it would arrive after
    a user enlarged it, which the intake accepts, so the check itself is what judges it."""
    out = []
    for data in sources:
        with Image.open(io.BytesIO(data)) as im:
            out.append(_png(np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC))))
    return out


def flagged(bundle, images: torch.Tensor) -> tuple[float, np.ndarray]:
    _, distances = bundle.predict_checked(images, 32)
    d = distances.numpy()
    return float((d > bundle.ood.threshold).mean()), d


def main() -> None:
    from cnnlab.bundle import load_bundle, resolve_bundle
    from cnnlab.evaluate.ood_fit import add_ood
    from cnnlab.evaluate.scores import load_split_for
    from cnnlab.runtime.device import set_threads

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--bundle", default="pneumonia", help="bundle to copy (default: the shipped one)"
    )
    ap.add_argument("--train", default=str(DATA / "chest_xray" / "train"))
    ap.add_argument("--external", default=str(DATA / "chest_xray" / "external"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "pneumonia-ood"))
    ap.add_argument("--images", type=int, default=1000, help="MNIST and CIFAR-10 images each")
    ap.add_argument("--percentile", type=float, default=99.0)
    args = ap.parse_args()
    from cnnlab.runtime.device import machine_line

    print(machine_line(), flush=True)  # what the times below depend on
    set_threads()
    out = Path(args.out)
    started = time.perf_counter()
    meta = json.loads((out / "bundle.json").read_text()) if out.is_dir() else {}
    ood = meta.get("ood") or {}
    if ood.get("percentile") != args.percentile or "parts" not in ood:
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        add_ood(resolve_bundle(args.bundle), args.train, out, args.percentile)
    fit_seconds = time.perf_counter() - started
    bundle = load_bundle(out)
    views = ", ".join(
        f"{p['layer']} {p['take']} ({p['features']} wide)" for p in bundle.ood.record["parts"]
    )
    print(f"check: {views}; cut-off {bundle.ood.threshold:.3f} ({fit_seconds:.0f} s to fit or "
          "load)", flush=True)  # fmt: skip

    val = load_split_for(bundle, args.train, "val").images
    external = load_split_for(bundle, args.external, "test").images
    digits, photos = mnist_pngs(args.images), cifar_jpegs(args.images)
    for name, raw in (("MNIST digits (28x28)", digits), ("CIFAR-10 images (32x32)", photos)):
        _, refused = decode(bundle, raw, allow_refused=True)
        print(f"{name:<52} {len(raw):>5} images  refused at intake {refused / len(raw):7.2%} "
              "(too small to judge)", flush=True)  # fmt: skip
    sets = {
        "validation split (held out; sets the cut-off)": val,
        "chest_xray/external (held out, official test half)": external,
        "MNIST digits (enlarged to 224x224)": decode(bundle, enlarged(digits))[0],
        "CIFAR-10 images (enlarged to 224x224)": decode(bundle, enlarged(photos))[0],
        "inverted X-rays (external, 255 - x)": 255 - external,
    }
    results, distances = {}, {}
    for name, images in sets.items():
        share, d = flagged(bundle, images)
        distances[name] = d
        results[name] = {"n": len(images), "flagged": round(share, 4),
                         "median_distance": round(float(np.median(d)), 2)}  # fmt: skip
        print(f"{name:<52} {len(images):>5} images  flagged {share:7.2%}  (median distance "
              f"{np.median(d):.1f})", flush=True)  # fmt: skip
    val_d = next(iter(distances.values()))
    print("other cut-offs (percentiles of the validation distances):")
    for q in (99.5, 99.9, 100.0):
        cut = float(np.percentile(val_d, q))
        shares = {n: float((d > cut).mean()) for n, d in distances.items()}
        print(f"  {q:g}th ({cut:.2f}): " + ", ".join(f"{n.split(' (')[0]} {v:.2%}"
                                                   for n, v in shares.items()))  # fmt: skip
    np.savez(out / "ood_distances.npz", **{n.split(" (")[0]: d for n, d in distances.items()})
    report = {"bundle": str(out), "parts": bundle.ood.record["parts"],
              "threshold": bundle.ood.threshold, "percentile": args.percentile,
              "results": results, "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    (out / "ood_benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out / 'ood_benchmark.json'}")


if __name__ == "__main__":
    main()
