"""The app's decisions on record (Classify writes them, with its session), and the Worklist
page that shows the latest by risk."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

from cnnlab.records import Decision, DecisionStore
from tests.app.conftest import encode, xray_like


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_app_classify_records_once_per_upload_with_its_session(app_env, app_bundle):
    at = app_env(app_bundle).run()
    data = encode(xray_like(0))
    at.file_uploader(key="classify_files").set_value([("a.png", data, "image/png")]).run()
    at.toggle(key="gradcam").set_value(False).run()  # a rerun shows it again: no new row
    assert not at.exception
    kept = DecisionStore().query()
    assert len(kept) == 1
    d = kept[0]
    assert (d.surface, d.source, d.input_sha256, d.bundle) == ("app", "a.png", sha(data), "xray")
    assert d.client and len(d.client) > 8  # the Streamlit session's id


def test_classify_says_so_when_the_store_fails(app_env, app_bundle, tmp_path, monkeypatch):
    (tmp_path / "store").mkdir()
    monkeypatch.setenv("CNNLAB_RECORDS", str(tmp_path / "store"))
    at = app_env(app_bundle).run()
    at.file_uploader(key="classify_files").set_value(
        [("a.png", encode(xray_like(0)), "image/png")]
    ).run()
    assert not at.exception and len(at.dataframe) == 0  # no answer shown without its record
    assert any("decision store" in e.value and "CNNLAB_RECORDS=off" in e.value for e in at.error)


def seed(now: datetime) -> None:
    DecisionStore().record([
        Decision(time=now - timedelta(minutes=9), surface="api", client="ward-7", bundle="xray",
                 label="NORMAL", probability=0.12, threshold=0.37, accession="ACC-LOW"),
        Decision(time=now - timedelta(minutes=8), surface="pacs", bundle="xray", label="PNEUMONIA",
                 probability=0.97, threshold=0.37, accession="ACC-HIGH"),
        Decision(time=now - timedelta(minutes=7), surface="cli", bundle="xray", label="PNEUMONIA",
                 probability=0.55, threshold=0.37, source="mid.png"),
        Decision(time=now - timedelta(minutes=6), surface="pacs", bundle="xray", screened=False,
                 reason="not screened: lateral view (ViewPosition LL)", accession="ACC-LAT"),
        Decision(time=now - timedelta(minutes=5), surface="app", client="s1", bundle="xray",
                 label="NORMAL", probability=0.05, threshold=0.37, out_of_distribution=True,
                 source="odd.png"),
        Decision(time=now - timedelta(days=20), surface="cli", bundle="digits", label="7",
                 probability=0.6, source="old-seven.png"),
    ])  # fmt: skip


def test_worklist_sorts_by_risk_and_filters(app_env, app_bundle):
    seed(datetime.now(UTC))
    at = app_env(app_bundle).run()
    at.switch_page("views/worklist_page.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["Study / input"]) == ["odd.png", "ACC-LAT", "ACC-HIGH", "mid.png", "ACC-LOW"]
    assert list(table["Read unaided"])[:3] == ["unlike the training images", "not screened", ""]
    assert table["Finding"][1] == "not screened: lateral view (ViewPosition LL)"
    assert table["From"][4] == "api (ward-7)"
    assert table["Threshold"].isna()[1]  # the not-screened row has none, and the grid shows a
    grid = at.dataframe[0].proto  # blank for it, not its default grey "None"
    assert grid.HasField("placeholder") and grid.placeholder == ""
    assert list(table.columns[:4]) == ["Study / input", "Read unaided", "Probability", "Threshold"]
    assert json.loads(grid.columns)["Study / input"]["pinned"]  # in view while it scrolls
    assert "5** decisions" in at.markdown[0].value and "**2** to read" in at.markdown[0].value
    at.selectbox(key="worklist_window").set_value("all time").run()
    assert len(at.dataframe[0].value) == 6
    at.multiselect(key="worklist_models").set_value(["digits"]).run()
    assert list(at.dataframe[0].value["Study / input"]) == ["old-seven.png"]


def test_worklist_without_decisions_says_how_to_make_some(app_env, app_bundle):
    at = app_env(app_bundle).run()
    at.switch_page("views/worklist_page.py").run()
    assert not at.exception and "No decisions on record yet" in at.info[0].value
