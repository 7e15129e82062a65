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
import io
import json
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import requests
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

from cnnlab.bundle import load_bundle
from cnnlab.pacs.screening import screen_pass
from cnnlab.predict import predict_sources
from cnnlab.records.store import DecisionStore
from cnnlab.runtime.device import cpu_capability, set_threads

ROOT = Path(__file__).resolve().parents[1]
ORTHANC, PLUGIN = "/usr/sbin/Orthanc", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_orthanc(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = {"Name": "BENCH", "StorageDirectory": str(folder), "IndexDirectory": str(folder),
              "HttpPort": port, "DicomPort": free_port(), "RemoteAccessAllowed": False,
              "AuthenticationEnabled": False, "Plugins": [PLUGIN],
              "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}  # fmt: skip
    (folder / "orthanc.json").write_text(json.dumps(config))
    proc = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(f"{url}/system", timeout=1).ok:
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit("Orthanc did not start (make orthanc)")


def study_bytes(path: Path, day: str) -> bytes:
    """One CR PA chest study (one instance, 8-bit MONOCHROME2) from an X-ray JPEG."""
    img = Image.open(path).convert("L")
    img.thumbnail((1024, 1024))
    px = np.asarray(img)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = (
        ComputedRadiographyImageStorage,
        generate_uid(),
    )
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.AccessionNumber, ds.StudyDate = (
        "BENCH",
        "BENCH^X",
        path.stem[:16],
        day,
    )
    ds.Modality, ds.ViewPosition, ds.BodyPartExamined = "CR", "PA", "CHEST"
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = px.tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


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
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_orthanc(Path(tmp))
        try:
            days = {"warm": "20000101", "plain": "20000102", "full": "20000103"}
            blobs = {k: [study_bytes(f, d) for f in files[: 1 if k == "warm" else args.studies]]
                     for k, d in days.items()}  # fmt: skip
            for group in blobs.values():
                for b in group:
                    requests.post(f"{url}/instances", data=b, timeout=60).raise_for_status()
            web = f"{url}/dicom-web"
            store = DecisionStore(Path(tmp) / "decisions.db")
            screen_pass(web, load, store, days["warm"], ["CR"])  # warm-up: Grad-CAM layer, caches
            predict_sources(bundle, blobs["warm"])
            timings = {}
            start = time.perf_counter()
            preds = predict_sources(bundle, blobs["plain"])
            timings["predict_sources on the same DICOM bytes (images)"] = (
                time.perf_counter() - start
            )
            start = time.perf_counter()
            plain = screen_pass(web, load, store, days["plain"], ["CR"], store_back=False)
            timings["cnnlab screen --no-store-back (QIDO, WADO, predict, record)"] = (
                time.perf_counter() - start
            )
            start = time.perf_counter()
            full = screen_pass(web, load, store, days["full"], ["CR"])
            timings["cnnlab screen (+ SR and Grad-CAM SC, STOW-RS)"] = time.perf_counter() - start
        finally:
            proc.terminate()
            proc.wait(timeout=30)
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
