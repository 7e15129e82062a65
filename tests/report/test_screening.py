"""DICOM-aware screening: a DICOM input's identifiers in every row (CLI, API), and what a bundle
accepts (bundle.json `accepts`): a lateral view, a CT slice or a knee gets "not screened" and
the reason, never a label, on every surface."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cnnlab.bundle.check import check_fields
from cnnlab.bundle.loading import check_bundle, load_bundle
from cnnlab.bundle.save import update_bundle_meta
from cnnlab.errors import CnnlabError
from cnnlab.predict import predict_sources
from cnnlab.report.present import present
from cnnlab.report.rows import FIELDS, rows_csv
from cnnlab.serve import create_app
from tests.pacs.studies import chest_dicom, dicom_file_bytes, new_study, synthetic_chest
from tests.serve.conftest import make_bundle, png_bytes

ACCEPTS = {"modality": ["CR", "DX", "DR"], "body_part": ["CHEST"], "view": ["PA", "AP"]}


@pytest.fixture(scope="module")
def chest_bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundles") / "chest"
    make_bundle(path, binary=True, seed=2, decision={"threshold": 0.4, "temperature": 1.5})
    update_bundle_meta(path, accepts=ACCEPTS)
    return load_bundle(path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A PA chest CR (8-bit), an AP DX (16-bit MONOCHROME1), a lateral, a CT slice, a knee, a PNG."""
    out = tmp_path_factory.mktemp("dicom")
    study = new_study("ACC-42", "PAT-7")
    made = {
        "pa.dcm": chest_dicom(synthetic_chest(0), study),
        "ap.dcm": chest_dicom(
            synthetic_chest(1), study, modality="DX", view="AP", photometric="MONOCHROME1", bits=16
        ),  # fmt: skip
        "lateral.dcm": chest_dicom(synthetic_chest(2), study, view="LL"),
        "ct.dcm": chest_dicom(synthetic_chest(3), study, modality="CT", view=None, bits=16),
        "knee.dcm": chest_dicom(synthetic_chest(4), study, body_part="KNEE", view="AP"),
    }
    paths = {}
    for name, ds in made.items():
        paths[name] = out / name
        paths[name].write_bytes(dicom_file_bytes(ds))
    paths["plain.png"] = out / "plain.png"
    paths["plain.png"].write_bytes(png_bytes(synthetic_chest(5)))
    return paths


REFUSED = {
    "lateral.dcm": "a left lateral view (ViewPosition LL); this model reads PA/AP views only",
    "ct.dcm": "a CT image (Modality CT); this model reads CR/DX/DR images only",
    "knee.dcm": "an image of the knee (BodyPartExamined KNEE); this model reads CHEST images only",
}


def test_rows_keep_dicom_identifiers_and_refuse_what_the_bundle_does_not_accept(
    chest_bundle, inputs
):
    preds = predict_sources(chest_bundle, list(inputs.values()), list(inputs))
    rows = {p.source: present(p, chest_bundle).row for p in preds}
    for name, row in rows.items():
        assert tuple(row) == FIELDS  # no PatientID unless asked for
        if name == "plain.png":
            assert row["study_uid"] is None and row["sop_uid"] is None and row["screened"]
            continue
        ds = __import__("pydicom").dcmread(inputs[name])
        assert row["study_uid"] == ds.StudyInstanceUID and row["series_uid"] == ds.SeriesInstanceUID
        assert row["sop_uid"] == ds.SOPInstanceUID and row["accession"] == "ACC-42"
        if name in REFUSED:
            assert row["screened"] is False and row["reason"] == REFUSED[name]
            assert row["label"] is None and row["probability"] is None and row["top_k"] == []
            assert row["result"] == f"Not screened: {REFUSED[name]}"
            assert row["uncertain"] is None and row["error"] is None
        else:
            assert row["screened"] is True and row["reason"] is None
            assert row["label"] in ("NORMAL", "PNEUMONIA")
    with_id = present(preds[0], chest_bundle, with_patient_id=True).row
    assert with_id["patient_id"] == "PAT-7" and tuple(with_id)[: len(FIELDS)] == FIELDS
    table = list(csv.DictReader(io.StringIO(rows_csv([with_id, rows["plain.png"]]))))
    assert table[0]["patient_id"] == "PAT-7" and table[1]["patient_id"] == ""
    # the same images through a bundle that declares nothing: every one gets a label
    path = Path(chest_bundle.path)
    plain = load_bundle(path)
    plain.meta = {k: v for k, v in plain.meta.items() if k != "accepts"}
    assert all(p.screened for p in predict_sources(plain, list(inputs.values())))


def test_cli_json_csv_and_text_say_not_screened(chest_bundle, inputs, capsys):
    from cnnlab.cli import main

    files = [str(p) for p in inputs.values()]
    # a refusal is an answer, not a failure: exit 0
    assert main(["predict", str(chest_bundle.path), *files, "--json", "--with-patient-id"]) == 0
    rows = {
        Path(row["file"]).name: row for row in json.loads(capsys.readouterr().out)["predictions"]
    }
    for name, reason in REFUSED.items():
        assert rows[name]["screened"] is False and rows[name]["reason"] == reason
        assert rows[name]["label"] is None and rows[name]["patient_id"] == "PAT-7"
    assert rows["pa.dcm"]["screened"] and rows["pa.dcm"]["accession"] == "ACC-42"
    assert main(["predict", str(chest_bundle.path), *files]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"{inputs['ct.dcm']}: not screened: {REFUSED['ct.dcm']}" in out
    assert main(["predict", str(chest_bundle.path), *files, "--csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert "patient_id" not in table[0] and {t["screened"] for t in table} == {"True", "False"}


def test_api_rows_carry_identifiers_and_refusals(chest_bundle, inputs):
    with TestClient(create_app([chest_bundle])) as client:
        names = ["pa.dcm", "lateral.dcm", "plain.png"]
        files = [("files", (n, inputs[n].read_bytes(), "application/octet-stream")) for n in names]
        r = client.post("/v1/predict", files=files)
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    assert [row["file"] for row in rows] == names
    assert rows[0]["screened"] and rows[0]["label"] and rows[0]["accession"] == "ACC-42"
    assert rows[1] == {**rows[1], "screened": False, "label": None,
                       "reason": REFUSED["lateral.dcm"]}  # fmt: skip
    assert rows[2]["screened"] and rows[2]["study_uid"] is None
    assert all("patient_id" not in row for row in rows)  # only where asked for, as in the CLI
    with TestClient(create_app([chest_bundle])) as client:
        r = client.post("/v1/predict?with_patient_id=true", files=files[:1])
    assert r.json()["predictions"][0]["patient_id"] == "PAT-7"


@pytest.mark.parametrize(
    ("accepts", "words"),
    [
        ({"modality": "CR"}, "accepts.modality must be a non-empty list"),
        ({"organ": ["CHEST"]}, "accepts.organ is not a tag a bundle can accept"),
        ([], "accepts must be a mapping"),
        ({"view": []}, "accepts.view must be a non-empty list"),
    ],
)
def test_a_malformed_accepts_is_refused_naming_the_field(chest_bundle, accepts, words):
    with pytest.raises(CnnlabError, match=words):
        check_fields({**chest_bundle.meta, "accepts": accepts}, Path("bundle.json"))


def test_the_shipped_pneumonia_bundle_declares_what_it_accepts():
    checks, bundle = check_bundle("pneumonia")
    assert bundle is not None, [c for c in checks if not c.ok]
    assert bundle.meta["accepts"] == ACCEPTS
    fields = next(c.detail for c in checks if c.name == "fields")
    assert "accepts DICOM modality CR/DX/DR, body part CHEST, view PA/AP" in fields
