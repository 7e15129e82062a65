"""The Model page's "Evaluate on your data": a folder path or an uploaded zip, judged as
`cnnlab evaluate --out` judges it, its figures beside the validation ones; nothing kept."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import write_image_folder

CLASSES = ["NORMAL", "PNEUMONIA"]
CAPTIONS = ["ROC curve", "confusion matrix", "calibration (reliability diagram)"]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "hospital" / "site", CLASSES, 12, size=64, mode="L")


@pytest.fixture
def own_tmp(tmp_path, monkeypatch) -> Path:
    """The app's temporary folders land here, so the test can see that none is left."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    return where


def zipped(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(folder.rglob("*.png")):
            zf.write(f, f.relative_to(folder.parent).as_posix())
    return buf.getvalue()


def captions(at) -> list[str]:
    return [i.proto.imgs[0].caption for i in at.image]


def test_evaluate_on_a_folder_draws_its_figures_beside_validation(
    app_env, app_bundle, site, own_tmp
):
    at = app_env(app_bundle).run()
    at.switch_page("views/model_page.py").run()
    assert not at.exception and captions(at) == CAPTIONS  # nothing of it before it is asked
    assert at.button(key="your_data_go").disabled
    at.text_input(key="your_data_folder").set_value(str(site)).run()
    at.button(key="your_data_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = captions(at)
    for c in CAPTIONS:  # each figure twice: validation on the left, the site's on the right
        assert f"validation: {c}" in shown and f"hospital/site (24 images): {c}" in shown
    assert any("surest of" in c for c in shown)  # the mistakes gallery
    table = at.dataframe[1].value
    assert list(table.columns) == ["metric", "validation (120)", "your data: hospital/site (24)"]
    assert table.loc[table["metric"] == "Accuracy"].iloc[0, 2] != ""
    mistakes = at.dataframe[2].value
    assert set(mistakes["true"]) <= set(CLASSES) and not any(
        str(f).startswith("/") for f in mistakes["file"]
    )  # named inside the data, not by a temporary path
    assert not list(own_tmp.iterdir())  # nothing kept


def test_evaluate_on_an_uploaded_zip_and_a_hostile_one(app_env, app_bundle, site, own_tmp):
    at = app_env(app_bundle).run()
    at.switch_page("views/model_page.py").run()
    at.file_uploader(key="your_data_zip").set_value(
        [("site.zip", zipped(site), "application/zip")]
    ).run()
    at.button(key="your_data_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "site.zip (24 images): ROC curve" in captions(at)
    assert not list(own_tmp.iterdir())

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../outside/NORMAL/a.png", b"x")
    at.file_uploader(key="your_data_zip").set_value(
        [("bad.zip", buf.getvalue(), "application/zip")]
    ).run()
    at.button(key="your_data_go").click().run()
    assert not at.exception
    assert any("Cannot evaluate on this data" in e.value and "outside" in e.value for e in at.error)
    assert not (own_tmp.parent / "outside").exists() and not list(own_tmp.iterdir())
    assert "site.zip (24 images): ROC curve" not in captions(at)  # the old result is gone


def test_the_cli_draws_the_same_figures_from_a_zip(app_bundle, site, own_tmp, tmp_path, capsys):
    from cnnlab.app.your_data import FIGURES
    from cnnlab.cli import main

    archive = tmp_path / "site.zip"
    archive.write_bytes(zipped(site))
    out = tmp_path / "figures"
    assert main(["evaluate", str(app_bundle), "--data", str(archive), "--out", str(out)]) == 0
    drawn = {p.name for p in out.iterdir()}
    assert {file for _, file, _ in FIGURES} | {"mistakes.png", "mistakes.json"} <= drawn
    assert "24 images" in capsys.readouterr().out
