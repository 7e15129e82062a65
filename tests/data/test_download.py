"""Datasets by name: torchvision's download code, checksums and cache, against a local fake mirror."""

import functools
import hashlib
import http.server
import io
import tarfile
import threading

import pytest

from cnnlab.data import download, load_source
from cnnlab.errors import CnnlabError
from tests.conftest import digit_images, write_idx
from tests.data.test_sources import write_cifar


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no access log in the suite's output
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that hangs up mid-file (a refused download) is expected, not a traceback
        printed from the server's thread into the suite's output (issue 29)."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # BrokenPipe, reset
            super().handle_error(request, client_address)


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP server over tmp_path/'mirror' (no network involved)."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "REMOTES", {})
    download.remote("mnist")  # fill the table from torchvision, then tests swap entries
    return tmp_path / "cache"


def test_torchvision_table_has_checksums(cache):
    spec = download.remote("mnist")
    assert len(spec.files) == 4 and all(len(m) == 32 for _, m in spec.files)
    assert any("t10k-images" in f for f, _ in spec.files)
    assert download.remote("cifar10").files[0][0] == "cifar-10-python.tar.gz"


def test_mnist_by_name_downloads_verifies_and_caches(mirror, cache):
    root, url = mirror
    files = []
    for split, n in (("train", 40), ("t10k", 20)):
        x, y = digit_images(n)
        files.append(write_idx(root / f"{split}-images-idx3-ubyte.gz", x))
        files.append(write_idx(root / f"{split}-labels-idx1-ubyte.gz", y))
    download.REMOTES["mnist"] = download.Remote(
        [url], [(f.name, md5(f)) for f in files], ".", "a folder"
    )
    loaded = load_source("mnist")
    assert len(loaded.splits["train"]) == 40 and len(loaded.splits["test"]) == 20
    assert (cache / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    # second time: served from the cache, no server needed
    download.REMOTES["mnist"].mirrors = ["http://127.0.0.1:9/"]
    assert len(load_source("mnist", "test").splits["test"]) == 20


def test_checksum_mismatch_is_an_error_and_leaves_nothing(mirror, cache):
    root, url = mirror
    x, _ = digit_images(5)
    f = write_idx(root / "train-images-idx3-ubyte.gz", x)
    download.REMOTES["mnist"] = download.Remote([url], [(f.name, "0" * 32)], ".", "a folder")
    with pytest.raises(
        CnnlabError, match="downloading mnist file train-images-idx3-ubyte.gz failed"
    ):
        download.fetch("mnist")
    assert not (cache / "mnist" / f.name).exists()


def test_cifar_archive_is_extracted(mirror, cache):
    root, url = mirror
    batches = write_cifar(root / "build" / "cifar-10-batches-py")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    (root / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    spec = download.remote("cifar10")
    spec.mirrors = [url]
    spec.files = [("cifar-10-python.tar.gz", md5(root / "cifar-10-python.tar.gz"))]
    loaded = load_source("cifar10")
    assert loaded.format == "cifar10-python" and len(loaded.splits["train"]) == 40


def test_offline_fails_at_once_with_a_hint(cache):
    download.REMOTES["mnist"].mirrors = ["http://127.0.0.1:9/"]  # discard port: refused at once
    with pytest.raises(CnnlabError, match="no network connection.*point --data at"):
        load_source("mnist")
