"""A real Orthanc (Debian's, with its DICOMweb plugin) for the session: free ports, a temporary
storage folder, stopped by its process id. Missing Orthanc fails under CI=true (`make test`
installs it: `make orthanc`), and skips elsewhere."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ORTHANC = Path("/usr/sbin/Orthanc")
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def require_orthanc() -> None:
    if ORTHANC.is_file() and PLUGIN.exists():
        return
    message = (
        f"Orthanc with its DICOMweb plugin is not installed ({ORTHANC}, {PLUGIN}): make orthanc"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    require_orthanc()
    root = tmp_path_factory.mktemp("orthanc")
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "TESTPACS", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": "TESTPACS",
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "HttpBindAddress": "127.0.0.1",
        "Plugins": [str(PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "DicomModalities": {"cnnlab": ["CNNLAB", "127.0.0.1", 11112]},
    }  # fmt: skip
    (root / "orthanc.json").write_text(json.dumps(config))
    log = (root / "orthanc.log").open("w")
    proc = subprocess.Popen([str(ORTHANC), str(root / "orthanc.json")], stdout=log, stderr=log)
    pacs = Pacs(f"http://127.0.0.1:{http_port}", dicom_port)
    deadline = time.monotonic() + 30
    try:
        while True:  # ready when it answers (about a second)
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
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
