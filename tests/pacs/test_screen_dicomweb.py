"""`cnnlab screen --dicomweb` against a real Orthanc: studies made from the real external chest
X-rays (CR and DX, MONOCHROME1 and 2, 8- and 16-bit), a lateral view, a CT slice, a knee and a
corrupt instance; the SR and Secondary Capture read back over DICOMweb and checked value by
value against `cnnlab predict` on the same files; a second run screens nothing again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from cnnlab.bundle.catalog import resolve_bundle
from cnnlab.cli import main
from cnnlab.pacs.screening import connect
from cnnlab.pacs.structured import read_report
from cnnlab.records.store import DecisionStore
from cnnlab.report.verdict import nice_label
from tests.conftest import shared_path
from tests.pacs.studies import chest_dicom, dicom_file_bytes, new_study

REFUSALS = {
    "lateral": "a left lateral view (ViewPosition LL); this model reads PA/AP views only",
    "ct": "a CT image (Modality CT); this model reads CR/DX/DR images only",
    "knee": "an image of the knee (BodyPartExamined KNEE); this model reads CHEST images only",
}


def xray(kind: str, index: int, side: int = 640) -> np.ndarray:
    """A real external chest X-ray as uint8 (H, W), made smaller (few pixels: a fast suite)."""
    files = sorted(shared_path("chest_xray", "external", kind).glob("*.jpeg"))
    img = Image.open(files[index]).convert("L")
    img.thumbnail((side, side))
    return np.asarray(img)


@pytest.fixture(scope="module")
def hospital(orthanc, tmp_path_factory):
    """Studies uploaded to Orthanc, and the same instances as files (for `cnnlab predict`)."""
    folder = tmp_path_factory.mktemp("studies")
    normal, pneumonia = xray("NORMAL", 0), xray("PNEUMONIA", 0)
    a, b, c, d = new_study("ACC-A"), new_study("ACC-B"), new_study("ACC-C"), new_study("ACC-D")
    made = {
        "pa": chest_dicom(normal, a),  # CR, MONOCHROME2, 8-bit, PA
        "lateral": chest_dicom(normal, a, view="LL"),
        "ap": chest_dicom(
            pneumonia, b, modality="DX", view="AP", photometric="MONOCHROME1", bits=16
        ),  # fmt: skip
        "ct": chest_dicom(normal, c, modality="CT", view=None, bits=16),
        "knee": chest_dicom(pneumonia, d, body_part="KNEE", view="AP"),
        "corrupt": chest_dicom(normal, d, series_uid=None),
    }
    made["corrupt"].PixelData = made["corrupt"].PixelData[: len(made["corrupt"].PixelData) // 3]
    files = {}
    for name, ds in made.items():
        data = dicom_file_bytes(ds)
        files[name] = folder / f"{name}.dcm"
        files[name].write_bytes(data)
        orthanc.upload(data)
    return made, files, {"a": a, "b": b, "c": c, "d": d}


def stored(orthanc, study_uid: str, modality: str) -> list[pydicom.Dataset]:
    client = connect(orthanc.dicomweb)
    found = []
    for s in client.search_for_series(study_uid, search_filters={"Modality": modality}):
        series = s["0020000E"]["Value"][0]
        found.extend(client.retrieve_series(study_uid, series))
    return found


def test_screen_stores_sr_and_sc_that_agree_with_predict(orthanc, hospital, tmp_path, capsys):
    made, files, studies = hospital
    records = str(tmp_path / "decisions.db")
    args = ["screen", "--dicomweb", orthanc.dicomweb, "--since", "2026-01-01",
            "--modality", "CR,DX,CT", "--records", records]  # fmt: skip
    assert main(args) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert out.count("study ") == 4, out  # one line per study
    # the same files through `cnnlab predict`: the SR says what predict says, value by value
    assert main(["predict", "pneumonia", *map(str, files.values()), "--json"]) == 2  # corrupt
    rows = {Path(r["file"]).stem: r for r in json.loads(capsys.readouterr().out)["predictions"]}
    manifest = json.loads((resolve_bundle("pneumonia") / "manifest.json").read_text())
    weights = manifest["files"]["model.safetensors"]["sha256"]
    reports = {}
    for study in studies.values():
        for ds in stored(orthanc, study.study_uid, "SR"):
            report = read_report(ds)
            assert report.study_uid == study.study_uid
            reports[report.referenced_sop_uid] = report
    assert len(reports) == len(made)  # one SR per image read, refused ones included
    for name, ds in made.items():
        row, report = rows[name], reports[ds.SOPInstanceUID]
        assert row["sop_uid"] == ds.SOPInstanceUID and row["accession"] == ds.AccessionNumber
        assert report.comment == row["result"]
        assert report.algorithm == "cnnlab pneumonia"
        assert f"weights sha256 {weights}" in report.parameters
        if name in REFUSALS or name == "corrupt":
            assert row["screened"] is False and report.finding == "Not screened"
            assert report.probability is None and report.threshold is None
            if name in REFUSALS:
                assert (
                    row["reason"] == REFUSALS[name] == report.comment.removeprefix("Not screened: ")
                )
            else:
                assert row["reason"].startswith("cannot decode DICOM pixel data")
                assert row["error"] == row["reason"] and report.comment.startswith("Not classified")
            continue
        assert row["screened"] is True
        assert report.finding == nice_label(row["label"])
        assert report.probability == row["positive_probability"]
        assert report.threshold == row["threshold"]
        assert report.ood_distance == row["ood_distance"]
        assert report.out_of_distribution == row["out_of_distribution"]
    # a Secondary Capture per image screened, in its study, NOT FOR DIAGNOSIS burned in
    for key, name in (("a", "pa"), ("b", "ap")):
        (sc,) = stored(orthanc, studies[key].study_uid, "OT")
        assert sc.BurnedInAnnotation == "YES" and sc.ImageComments.startswith("NOT FOR DIAGNOSIS")
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == made[name].SOPInstanceUID
        assert sc.SeriesInstanceUID != made[name].SeriesInstanceUID and sc.Rows > 500
        assert rows[name]["result"] in sc.ImageComments
    for key in ("c", "d"):  # nothing screened there: no capture
        assert stored(orthanc, studies[key].study_uid, "OT") == []
    # every decision on record, surface "pacs"
    kept = DecisionStore(records).query()
    assert {d.sop_uid for d in kept} == {ds.SOPInstanceUID for ds in made.values()}
    assert all(d.surface == "pacs" and d.weights_sha256 == weights for d in kept)
    # a second run (a restart) screens nothing twice
    assert main(args) == 0
    assert "study " not in capsys.readouterr().out
    assert len(stored(orthanc, studies["a"].study_uid, "SR")) == 2
    assert len(DecisionStore(records).query()) == len(kept)
