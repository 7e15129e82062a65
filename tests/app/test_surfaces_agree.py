"""The CLI's text and JSON, the API's JSON and the app's sentences and table, for the same
images, are what `present` makes of what `predict_images` decides: the same label,
probability, kind of answer and out-of-distribution flag everywhere, for a confident, an
uncertain and an out-of-distribution image alike."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from fastapi.testclient import TestClient

from cnnlab.bundle import load_bundle
from cnnlab.cli import main
from cnnlab.predict import predict_sources
from cnnlab.report.present import present
from cnnlab.serve import create_app
from tests.app.conftest import encode
from tests.bundle_edit import edit_meta, setter
from tests.conftest import digit_images

MIN_CONFIDENCE = 0.65  # cnnlab.report.verdict's bar for a headlined label


def kind_of_row(row: dict) -> str:
    if row["out_of_distribution"]:
        return "out_of_distribution"
    return "uncertain" if row["uncertain"] else "likely"


def kind_of_text(line: str) -> str:
    if "DOES NOT LOOK LIKE THE TRAINING IMAGES" in line:
        return "out_of_distribution"
    return "uncertain" if "Uncertain" in line else "likely"


@pytest.fixture
def mixed(tiny_runs, tmp_path):
    """A copy of a trained digits bundle (with its out-of-distribution check) whose temperature
    leaves about half of the digits under the confidence bar, and image files: digits, and an
    inverted one."""
    bundle = tmp_path / "mixed"
    shutil.copytree(tiny_runs[0], bundle)
    x, _ = digit_images(12, seed=9)
    images = [*x, 255 - x[0]]
    logits = load_bundle(bundle).predict_checked(torch.from_numpy(x)[:, None])[0].log()
    temperature = next(t / 10 for t in range(10, 200)  # the first with half of them unsure
                       if ((logits * 10 / t).softmax(1).amax(1) < MIN_CONFIDENCE).float().mean() >= 0.5)  # fmt: skip
    edit_meta(bundle, setter("decision.temperature", temperature))
    files = []
    for i, arr in enumerate(images):
        files.append(tmp_path / f"img{i:02d}.png")
        files[-1].write_bytes(encode(arr))
    return bundle, files


def test_cli_api_and_app_say_what_present_says(mixed, app_env, capsys):
    folder, files = mixed
    bundle = load_bundle(folder)
    names = [f.name for f in files]
    expected = [present(p, bundle) for p in predict_sources(bundle, files, names)]
    kinds = [s.verdict.kind for s in expected]
    assert {"likely", "uncertain", "out_of_distribution"} <= set(kinds), kinds

    assert main(["predict", str(folder), *map(str, files)]) == 0  # the CLI's text
    by_path = [present(p, bundle) for p in predict_sources(bundle, files, list(map(str, files)))]
    lines = capsys.readouterr().out.splitlines()
    assert lines == [s.text for s in by_path]
    assert main(["predict", str(folder), *map(str, files), "--json"]) == 0
    cli_rows = json.loads(capsys.readouterr().out)["predictions"]
    assert cli_rows == [s.row for s in by_path]

    with TestClient(create_app(bundle)) as client:  # the API, in one request
        upload = [("files", (f.name, f.read_bytes(), "image/png")) for f in files]
        api_rows = client.post("/v1/predict", files=upload).json()["predictions"]
    assert api_rows == [s.row for s in expected]

    at = app_env(folder).run()  # the app's Classify page
    at.file_uploader(key="classify_files").set_value(
        [(f.name, f.read_bytes(), "image/png") for f in files]
    ).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    shown = {"out_of_distribution": [b.value for b in at.info],
             "uncertain": [b.value for b in at.warning], "likely": [b.value for b in at.success]}  # fmt: skip
    for kind, boxes in shown.items():
        assert [b for b in boxes if "Not for diagnosis" not in b] == [
            s.verdict.sentence for s in expected if s.verdict.kind == kind
        ], kind

    for i, s in enumerate(expected):  # and so every surface agrees on every image
        row = s.row
        for other in (cli_rows[i], api_rows[i]):
            assert (other["label"], other["probability"], kind_of_row(other)) == (
                row["label"], row["probability"], s.verdict.kind)  # fmt: skip
            assert other["out_of_distribution"] == row["out_of_distribution"]
        assert kind_of_text(lines[i]) == s.verdict.kind
        assert lines[i].startswith(f"{files[i]}: {row['label']} {row['probability']:.2%}")
        assert table["file"][i] == names[i] and table["label"][i] == row["label"]
        assert table["probability"][i] == row["probability"]
        assert bool(table["uncertain"][i]) == row["uncertain"]
        assert bool(table["out_of_distribution"][i]) == row["out_of_distribution"]
        assert table["result"][i] == s.verdict.sentence
