"""A real Orthanc (Debian's, with its DICOMweb plugin) on free ports with a storage folder of
the caller's: the tests' session fixture and benchmarks/pacs_throughput.py start it so."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from cnnlab.net import free_port
from tests.app.running import stop

ORTHANC = Path("/usr/sbin/Orthanc")
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@dataclass(frozen=True)
class Pacs:
    http: str  # http://127.0.0.1:PORT
    dicom_port: int
    aet: str = "TESTPACS"

    @property
    def dicomweb(self) -> str:
        return f"{self.http}/dicom-web"

    def upload(self, data: bytes) -> str:
        """POST /instances (Orthanc's REST API); returns Orthanc's instance id."""
        r = requests.post(f"{self.http}/instances", data=data, timeout=30)
        r.raise_for_status()
        return r.json()["ID"]


@contextmanager
def running_orthanc(root: Path, aet: str = "TESTPACS") -> Iterator[Pacs]:
    """Orthanc storing under `root`, ready when its DICOMweb answers (about a second)."""
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": aet, "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": aet,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "HttpBindAddress": "127.0.0.1",
        "Plugins": [str(PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "DicomModalities": {"cnnlab": ["CNNLAB", "127.0.0.1", 11112]},
    }  # fmt: skip
    (root / "orthanc.json").write_text(json.dumps(config))
    log = (root / "orthanc.log").open("w")
    proc = subprocess.Popen([str(ORTHANC), str(root / "orthanc.json")], stdout=log, stderr=log)
    pacs = Pacs(f"http://127.0.0.1:{http_port}", dicom_port, aet)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if requests.get(f"{pacs.dicomweb}/studies", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"Orthanc did not start: {(root / 'orthanc.log').read_text()[-2000:]}"
                )
            time.sleep(0.05)
        yield pacs
    finally:
        stop(proc)
        log.close()
