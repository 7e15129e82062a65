"""`--by FIELD`: figures per subgroup from DICOM tags or a metadata CSV, each group's figures
those of its own images, and a plain warning where a group is too small to judge."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from cnnlab.bundle import load_bundle
from cnnlab.cli import main
from cnnlab.evaluate.medical import binary_metrics
from cnnlab.evaluate.subgroups import age_band, dicom_age_years
from cnnlab.predict import predict_sources
from tests.app.conftest import make_app_bundle
from tests.conftest import dicom_bytes, write_image_folder

CLASSES = ["NORMAL", "PNEUMONIA"]


def _dicom(arr: np.ndarray, sex: str | None, age: str) -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(arr)))
    if sex is not None:
        ds.PatientSex = sex
    ds.PatientAge = age
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def dicom_site(tmp_path_factory) -> tuple[Path, Path]:
    """40 DICOM radiographs per class: women and men alternate (one image has no PatientSex),
    ages 30 and 70; and a bundle whose threshold splits its probabilities in half."""
    base = tmp_path_factory.mktemp("subgroups")
    rng = np.random.default_rng(0)
    folder = base / "site"
    for k, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True)
        for i in range(40):
            arr = rng.integers(0, 80, (64, 64)).astype(np.uint8) + np.uint8(60 * k + i)
            sex = None if (k, i) == (0, 0) else "FM"[i % 2]
            (folder / name / f"{i}.dcm").write_bytes(_dicom(arr, sex, "030Y" if i < 25 else "070Y"))
    bundle = make_app_bundle(base / "xray")
    return bundle, folder


def _truth(bundle: Path, folder: Path):
    files = sorted(str(p) for p in folder.rglob("*.dcm"))
    loaded = load_bundle(bundle)
    p = np.array([r.positive_probability for r in predict_sources(loaded, files)])
    y = np.array([CLASSES.index(Path(f).parent.name) for f in files])
    return files, p, y, loaded.threshold


def test_by_a_dicom_tag_gives_each_groups_own_figures(dicom_site, capsys) -> None:
    bundle, folder = dicom_site
    assert (
        main(["evaluate", str(bundle), "--data", str(folder), "--by", "PatientSex", "--json"]) == 0
    )
    sub = json.loads(capsys.readouterr().out)["subgroups"]
    assert sub["field"] == "PatientSex"
    rows = {r["group"]: r for r in sub["groups"]}
    assert set(rows) == {"F", "M", "unknown"}
    files, p, y, thr = _truth(bundle, folder)
    sex = {f: ("unknown" if f.endswith("NORMAL/0.dcm") else "FM"[int(Path(f).stem) % 2])
           for f in files}  # fmt: skip
    for name, row in rows.items():
        m = np.array([sex[f] == name for f in files])
        assert (row["n"], row["positives"]) == (int(m.sum()), int(y[m].sum()))
        want = binary_metrics(p[m], y[m], thr)
        for key in ("sensitivity", "specificity"):  # undefined (null) without that class
            assert row[key] == (None if np.isnan(want[key]) else pytest.approx(want[key], abs=1e-6))
        if name != "unknown":
            assert row["auc"] == pytest.approx(want["auc"], abs=1e-4)
            assert row["auc_ci"][0] <= row["auc"] <= row["auc_ci"][1]
        assert "fewer than 30" in row["warning"]  # 20 positives: too few to judge
    assert main(["evaluate", str(bundle), "--data", str(folder), "--by", "age_band"]) == 0
    text = capsys.readouterr().out
    assert "by age_band:" in text and "18-39" in text and "65+" in text
    assert "warning: 65+: only 15 positives and 15 negatives (fewer than 30)" in text
    assert "warning: 18-39: only 25 positives and 25 negatives" in text


def test_by_a_metadata_csv_and_in_compare(tmp_path, capsys) -> None:
    folder = write_image_folder(tmp_path / "site", CLASSES, 12, size=64, mode="L")
    meta = tmp_path / "meta.csv"
    lines = ["file,scanner"] + [f"{c}/img_{i}.png,{'A' if i < 8 else 'B'}"
                                for c in CLASSES for i in range(12)]  # fmt: skip
    meta.write_text("\n".join(lines) + "\n")
    a = make_app_bundle(tmp_path / "a", seed=0)
    b = make_app_bundle(tmp_path / "b", seed=1)
    args = ["--data", str(folder), "--by", "scanner", "--meta", str(meta), "--json"]
    assert main(["evaluate", str(a), *args]) == 0
    rows = json.loads(capsys.readouterr().out)["subgroups"]["groups"]
    assert [(r["group"], r["n"], r["positives"]) for r in rows] == [("A", 16, 8), ("B", 8, 4)]
    assert main(["compare", str(a), str(b), *args, "--bootstrap", "100"]) == 0
    sub = json.loads(capsys.readouterr().out)["subgroups"]
    assert [len(m) for m in sub["models"]] == [2, 2]
    errors = {
        ("--by", "PatientSex"): "is not a DICOM file",
        ("--by", "NoSuchTag"): "not a DICOM keyword",
        ("--by", "site", "--meta", str(meta)): "no column site",
        ("--meta", str(meta)): "add --by",
    }
    for extra, words in errors.items():
        assert main(["evaluate", str(a), "--data", str(folder), *extra]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err


def test_age_bands_from_dicom_ages() -> None:
    assert dicom_age_years("045Y") == 45 and dicom_age_years("006M") == 0.5
    assert dicom_age_years("") is None and dicom_age_years("abc") is None
    assert [age_band(a) for a in (0.5, 17.9, 18, 64, 65, None)] == [
        "0-17", "0-17", "18-39", "40-64", "65+", "unknown"]  # fmt: skip
