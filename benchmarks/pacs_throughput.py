"""Studies screened per minute over DICOMweb, beside `cnnlab predict` on the same images.

A throwaway Orthanc (Debian's, with its DICOMweb plugin: `make orthanc`) on free ports and a
temporary folder gets N one-image CR studies made from the real external chest X-rays. Then,
each on the same images, after one warm-up study:

    predict         `predict_sources` on the DICOM files' bytes (what `cnnlab predict` runs)
    screen, no SR   `cnnlab screen --no-store-back`: QIDO + WADO per instance + predict +
                    the decision recorded (the claim, the audit row)
    screen          `cnnlab screen`: the above + an SR and a Secondary Capture with Grad-CAM
                    per study, stored back by STOW-RS

    flock /tmp/cnnlab-cpu.lock python benchmarks/pacs_throughput.py [--studies 12]
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnlab.bundle import load_bundle
from cnnlab.pacs.screening import screen_pass
from cnnlab.predict import predict_sources
from cnnlab.records.store import DecisionStore
from cnnlab.runtime.device import cpu_capability, set_threads

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' Orthanc and DICOM studies, made the same way here
from tests.pacs.orthanc import running_orthanc  # noqa: E402
from tests.pacs.studies import chest_dicom, dicom_file_bytes, new_study  # noqa: E402


def study_bytes(path: Path, day: str) -> bytes:
    """One CR PA chest study (one instance, 8-bit MONOCHROME2) from an X-ray JPEG."""
    img = Image.open(path).convert("L")
    img.thumbnail((1024, 1024))
    ds = chest_dicom(np.asarray(img), new_study(path.stem[:16], "BENCH"))
    ds.StudyDate = day
    return dicom_file_bytes(ds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default="pneumonia")
    ap.add_argument("--studies", type=int, default=12)
    args = ap.parse_args()
    threads = set_threads(0)
    folder = ROOT.parent / "shared" / "data" / "chest_xray" / "external"
    files = sorted(folder.glob("*/*.jpeg"))[
        :: max(1, len(list(folder.glob("*/*.jpeg"))) // (args.studies + 1))
    ]
    bundle = load_bundle(args.bundle)
    load = functools.cache(lambda: bundle)
    with tempfile.TemporaryDirectory() as tmp, running_orthanc(Path(tmp), "BENCH") as pacs:
        days = {"warm": "20000101", "plain": "20000102", "full": "20000103"}
        blobs = {k: [study_bytes(f, d) for f in files[: 1 if k == "warm" else args.studies]]
                 for k, d in days.items()}  # fmt: skip
        for group in blobs.values():
            for b in group:
                pacs.upload(b)
        web = pacs.dicomweb
        store = DecisionStore(Path(tmp) / "decisions.db")
        screen_pass(web, load, store, days["warm"], ["CR"])  # warm-up: Grad-CAM layer, caches
        predict_sources(bundle, blobs["warm"])
        timings = {}
        start = time.perf_counter()
        preds = predict_sources(bundle, blobs["plain"])
        timings["predict_sources on the same DICOM bytes (images)"] = time.perf_counter() - start
        start = time.perf_counter()
        plain = screen_pass(web, load, store, days["plain"], ["CR"], store_back=False)
        timings["cnnlab screen --no-store-back (QIDO, WADO, predict, record)"] = (
            time.perf_counter() - start
        )
        start = time.perf_counter()
        full = screen_pass(web, load, store, days["full"], ["CR"])
        timings["cnnlab screen (+ SR and Grad-CAM SC, STOW-RS)"] = time.perf_counter() - start
    assert all(p.screened for p in preds) and all(o.error is None for o in plain + full)
    assert len(plain) == len(full) == args.studies
    print(f"{bundle.name}: {bundle.meta['model']['name']}, CPU {cpu_capability()}, {threads} threads, "
          f"{bundle.runtime.describe().split(' / ')[1]}, torch {torch.__version__}; {args.studies} one-image "
          "CR studies from chest_xray/external (at most 1024 px), Orthanc on this machine")  # fmt: skip
    print(f"{'path':<66}{'s':>7}{'per min':>9}")
    for name, seconds in timings.items():
        print(f"{name:<66}{seconds:>7.2f}{args.studies / seconds * 60:>9.1f}")


if __name__ == "__main__":
    main()
