"""A real Orthanc (Debian's, with its DICOMweb plugin) for the session: free ports, a temporary
storage folder, stopped by its process id. Missing Orthanc fails under CI=true (`make test`
installs it: `make orthanc`), and skips elsewhere."""

from __future__ import annotations

import os

import pytest

from tests.pacs.orthanc import ORTHANC, PLUGIN, running_orthanc


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
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as pacs:
        yield pacs
