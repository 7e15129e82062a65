"""Every decision on record from the CLI and the API (the app: tests/app/test_worklist.py): one row per decision, with the
input's hash and the surface's client; off when asked; a store that fails answers nothing."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest
from fastapi.testclient import TestClient

from cnnlab.cli import main
from cnnlab.records import DecisionStore
from cnnlab.serve import create_app
from tests.conftest import digit_images
from tests.serve.conftest import make_bundle, png_bytes


@pytest.fixture(scope="module")
def xray(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundles") / "xray", binary=True, seed=1,
                       decision={"threshold": 0.3, "temperature": 2.0, "policy": "test"})  # fmt: skip


@pytest.fixture(scope="module")
def images():
    return [png_bytes(d) for d in digit_images(16, seed=4)[0]]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_cli_predict_puts_each_decision_on_record(xray, images, tmp_path, capsys, monkeypatch):
    files = []
    for i, data in enumerate(images[:3]):
        files.append(tmp_path / f"img{i}.png")
        files[-1].write_bytes(data)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert (
        main(["predict", str(xray.path), *map(str, files), str(tmp_path / "bad.png"), "--json"])
        == 2
    )
    shown = {p["file"]: p for p in json.loads(capsys.readouterr().out)["predictions"]}
    kept = DecisionStore().query()
    assert (
        len(kept) == 4
        and {d.surface for d in kept} == {"cli"}
        and {d.client for d in kept} == {None}
    )
    by_file = {d.source: d for d in kept}
    for f, data in zip(files, images, strict=False):
        d, row = by_file[str(f)], shown[str(f)]
        assert (d.input_sha256, d.label, d.probability, d.threshold, d.bundle) == (
            sha(data),
            row["label"],
            row["positive_probability"],
            row["threshold"],
            xray.name,
        )
        assert (
            d.weights_sha256 == xray.sealed["model.safetensors"]["sha256"] and d.temperature == 2.0
        )
        assert d.screened and d.latency_ms > 0
    bad = by_file[str(tmp_path / "bad.png")]
    assert not bad.screened and bad.label is None and bad.reason
    capsys.readouterr()

    assert main(["predict", str(xray.path), str(files[0]), "--no-record"]) == 0
    store = DecisionStore()
    monkeypatch.setenv("CNNLAB_RECORDS", "off")
    assert main(["predict", str(xray.path), str(files[0])]) == 0
    assert len(store.query()) == 4


def test_cli_predict_answers_nothing_when_the_store_fails(
    xray, images, tmp_path, capsys, monkeypatch
):
    (tmp_path / "a.png").write_bytes(images[0])
    (tmp_path / "store").mkdir()  # a folder where the database file should be
    monkeypatch.setenv("CNNLAB_RECORDS", str(tmp_path / "store"))
    assert main(["predict", str(xray.path), str(tmp_path / "a.png")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "decision store" in err and "--no-record" in err


def test_api_records_concurrent_requests_each_in_its_own_rows(xray, images):
    """16 requests at once (two images each): 32 rows, each row's input hash, probability and
    label those its own request was answered with."""
    answered: dict[int, dict] = {}
    with TestClient(create_app(xray)) as c:

        def call(i: int) -> None:
            pair = [("files", (f"r{i}-{k}.png", images[(i + k) % 16], "image/png")) for k in (0, 1)]
            answered[i] = c.post("/v1/predict", files=pair).json()

        threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    kept = {d.source: d for d in DecisionStore().query()}
    assert len(kept) == 32
    for i, out in answered.items():
        for k, row in enumerate(out["predictions"]):
            d = kept[f"r{i}-{k}.png"]
            assert (d.surface, d.client, d.input_sha256) == ("api", None, sha(images[(i + k) % 16]))
            assert (d.label, d.probability) == (row["label"], row["positive_probability"])


def test_api_answers_nothing_when_the_store_fails(xray, images, tmp_path, monkeypatch):
    (tmp_path / "store").mkdir()
    monkeypatch.setenv("CNNLAB_RECORDS", str(tmp_path / "store"))
    with TestClient(create_app(xray)) as c:
        r = c.post("/v1/predict", files=[("files", ("a.png", images[0], "image/png"))])
    assert r.status_code == 503 and r.json()["error"] == "not_recorded"
    monkeypatch.setenv("CNNLAB_RECORDS", str(tmp_path / "ok.db"))
    with TestClient(create_app(xray, record=False)) as c:
        assert (
            c.post("/v1/predict", files=[("files", ("a.png", images[0], "image/png"))]).status_code
            == 200
        )
    assert not (tmp_path / "ok.db").exists()


def test_app_no_record_starts_the_app_with_recording_off(monkeypatch):
    started = {}

    def execve(path, argv, env):
        started.update(env)
        raise SystemExit(0)

    monkeypatch.setattr("os.execve", execve)
    with pytest.raises(SystemExit):
        main(["app", "pneumonia", "--no-record"])
    assert started["CNNLAB_RECORDS"] == "off"
