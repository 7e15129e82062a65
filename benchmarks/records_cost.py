"""What putting a decision on record costs a prediction: the shipped `pneumonia` model on one
224x224 X-ray, predicted and presented as the CLI, the app and the API do, without and with
`put_on_record` (hash the input, one transaction to SQLite in WAL mode, synchronous=NORMAL:
the store's), interleaved in the same run; and the write alone with synchronous=FULL beside
it (an fsync per transaction: what durability through a power cut would cost).

    flock /tmp/cnnlab-cpu.lock python benchmarks/records_cost.py [--runs 200] [--batch 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cnnlab.bundle import load_bundle
from cnnlab.predict import predict_sources
from cnnlab.records.entries import put_on_record
from cnnlab.records.store import DecisionStore
from cnnlab.report.present import present
from cnnlab.runtime.device import cpu_capability, set_threads

ROOT = Path(__file__).resolve().parents[1]


def an_xray() -> bytes:
    """An external X-ray from ../shared/data when present, else the shipped sample."""
    folder = ROOT.parent / "shared" / "data" / "chest_xray" / "external" / "PNEUMONIA"
    if folder.is_dir():
        return next(iter(sorted(folder.iterdir()))).read_bytes()
    return (ROOT / "src" / "cnnlab" / "samples" / "xray_pneumonia.jpeg").read_bytes()


def ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1, help="images per request (one transaction)")
    args = ap.parse_args()
    threads = set_threads(0)
    bundle = load_bundle("pneumonia")
    images = [an_xray()] * args.batch
    folder = Path(tempfile.mkdtemp(prefix="records-cost-"))
    store = DecisionStore(folder / "normal.db")
    full = DecisionStore(folder / "full.db")
    from sqlalchemy import event

    event.listen(full.engine, "connect", lambda c, _: c.execute("PRAGMA synchronous=FULL"))

    plain, recorded, write_normal, write_full = [], [], [], []
    for i in range(args.runs + 10):  # the first 10: warm-up
        start = time.perf_counter()
        shown = [present(p, bundle) for p in predict_sources(bundle, images)]
        t_plain = ms(start)
        start = time.perf_counter()
        shown = [present(p, bundle) for p in predict_sources(bundle, images)]
        t_pred = ms(start)
        put_on_record(shown, bundle, "cli", None, t_pred, images, store)
        t_rec = ms(start)
        start = time.perf_counter()
        put_on_record(shown, bundle, "cli", None, t_pred, images, full)
        t_full = ms(start)
        if i >= 10:
            plain.append(t_plain)
            recorded.append(t_rec)
            write_normal.append(t_rec - t_pred)
            write_full.append(t_full)
    print(f"{bundle.name}: CPU {cpu_capability()}, {threads} torch threads, fp32, torch "
          f"{torch.__version__}, SQLite in {folder} ({args.batch} image(s) per request, "
          f"{args.runs} runs)")  # fmt: skip
    print(f"{'path':<60}{'p50 ms':>9}{'p95 ms':>9}")
    for name, values in (
        ("predict + present, not recorded", plain),
        ("predict + present + put_on_record (the store: NORMAL)", recorded),
        ("  of which the record (hash + one transaction)", write_normal),
        ("  the record with synchronous=FULL (not used)", write_full),
    ):
        v = np.array(values)
        print(f"{name:<60}{np.percentile(v, 50):>9.2f}{np.percentile(v, 95):>9.2f}")
    per = np.array(write_normal) / args.batch
    print(f"record cost per decision: median {np.median(per):.2f} ms, p95 "
          f"{np.percentile(per, 95):.2f} ms; prediction median {np.median(plain):.1f} ms")  # fmt: skip
    assert len(store.query()) == (args.runs + 10) * args.batch


if __name__ == "__main__":
    main()
