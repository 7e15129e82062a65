"""`cnnlab decisions`: list, filter, export and rotate the decisions on record; bad times and
stores are one clear line, exit 2."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.records import Decision, DecisionStore

NOW = datetime.now(UTC)


@pytest.fixture
def on_record():
    store = DecisionStore()
    store.record([
        Decision(time=NOW - timedelta(days=3), surface="cli", bundle="mnist", label="7",
                 probability=0.99, source="seven.png"),
        Decision(time=NOW - timedelta(hours=2), surface="api", client="ward-7", bundle="pneumonia",
                 label="PNEUMONIA", probability=0.91, study_uid="1.2.840.1", source="a.dcm",
                 out_of_distribution=True, latency_ms=41.0),
        Decision(time=NOW - timedelta(minutes=5), surface="pacs", bundle="pneumonia",
                 screened=False, reason="not screened: lateral view", study_uid="1.2.840.2"),
    ])  # fmt: skip
    return store


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["decisions", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_lists_newest_first_with_filters(on_record, capsys):
    code, out, err = run(capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("time (UTC)") and len(lines) == 4
    assert "pacs" in lines[1] and "not screened" in lines[1]
    assert (
        "ward-7" in lines[2]
        and "PNEUMONIA" in lines[2]
        and "OOD" in lines[2]
        and "0.910" in lines[2]
    )
    assert "mnist" in lines[3] and "3 decisions in" in err
    assert len(run(capsys, "--model", "pneumonia")[1].splitlines()) == 3
    assert len(run(capsys, "--since", "1d")[1].splitlines()) == 3
    assert len(run(capsys, "--since", "30m")[1].splitlines()) == 2
    day = (NOW - timedelta(days=1)).date().isoformat()
    assert (
        "mnist" in run(capsys, "--until", day)[1]
        and len(run(capsys, "--until", day)[1].splitlines()) == 2
    )
    assert "ward-7" in run(capsys, "--study", "1.2.840.1")[1]
    assert len(run(capsys, "--limit", "1")[1].splitlines()) == 2


def test_exports_every_field(on_record, capsys):
    code, out, _ = run(capsys, "--csv", "--model", "pneumonia")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["study_uid"] for r in rows] == ["1.2.840.2", "1.2.840.1"]
    assert list(rows[0])[:3] == ["time", "surface", "client"]
    assert rows[0]["reason"] == "not screened: lateral view" and rows[0]["label"] == ""
    assert rows[1]["client"] == "ward-7" and float(rows[1]["latency_ms"]) == 41.0
    code, out, _ = run(capsys, "--json", "--limit", "2")
    found = json.loads(out)["decisions"]
    assert [d["surface"] for d in found] == ["pacs", "api"]
    assert datetime.fromisoformat(found[1]["time"]) == on_record.query(limit=2)[1].time


def test_rotate_moves_the_file_aside(on_record, capsys):
    code, out, _ = run(capsys, "--rotate")
    assert code == 0 and out.startswith("moved 3 decisions to ")
    archive = out.split(" to ")[1].split(";")[0]
    assert len(DecisionStore(archive).query()) == 3 and on_record.query() == []
    code, out, _ = run(capsys, "--store", archive, "--csv")
    assert len(list(csv.DictReader(io.StringIO(out)))) == 3
    code, out, err = run(capsys, "--rotate")  # an empty store: no empty archive
    assert code == 0 and out == "" and "nothing to rotate" in err
    assert [p.name for p in Path(archive).parent.glob("decisions-*.db")] == [Path(archive).name]


@pytest.mark.parametrize("args, words", [
    (["--since", "yesterday"], "--since 'yesterday': not a date or time"),
    (["--until", "2026-13-45"], "--until '2026-13-45': not a date or time"),
    (["--store", "nosuch://db"], "cannot open the decision store nosuch://db"),
    (["--store", "missing.db"], "--store missing.db: no such file"),
    (["--rotate", "--model", "x"], "--rotate moves every decision"),
    (["--limit", "0"], "--limit must be at least 1"),
])  # fmt: skip
def test_bad_input_is_one_line(capsys, args, words):
    code, out, err = run(capsys, *args)
    assert code == 2 and out == "" and words in err and len(err.strip().splitlines()) == 1
