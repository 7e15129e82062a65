"""The decision store: what goes in comes out, filters, no committed row lost to kill -9, a
study claimed once across processes (SQLite and PostgreSQL), rotation."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.records import Decision, DecisionStore, decisions_from

T0 = datetime(2026, 12, 5, 9, 0, 0, 123456, tzinfo=UTC)


def decision(i: int = 0, **kw) -> Decision:
    base = dict(time=T0 + timedelta(minutes=i), surface="api", client="ward-7",
                input_sha256=f"{i:064x}", study_uid=f"1.2.3.{i}", series_uid="1.2.3.9",
                sop_uid=f"1.2.3.9.{i}", accession=f"A{i}", bundle="pneumonia",
                weights_sha256="ab" * 32, threshold=0.37, temperature=1.5,
                probability=0.25 + i / 100, label="PNEUMONIA", ood_distance=0.4, ood_cutoff=1.0,
                out_of_distribution=False, latency_ms=12.5, source=f"x{i}.dcm")  # fmt: skip
    return Decision(**{**base, **kw})


def test_round_trip_keeps_every_field(tmp_path):
    store = DecisionStore(tmp_path / "d.db")
    made = [decision(0), decision(1, screened=False, reason="not screened: lateral view",
                                  label=None, probability=None, out_of_distribution=None,
                                  client=None, patient_id="P1")]  # fmt: skip
    assert store.record(made) == 2
    assert (
        DecisionStore(tmp_path / "d.db").query() == made[::-1]
    )  # newest first, a new process's view


def test_default_store_is_the_environment_s(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_RECORDS", str(tmp_path / "env.db"))
    DecisionStore().record([decision()])
    assert (tmp_path / "env.db").exists()
    monkeypatch.setenv("CNNLAB_RECORDS", "")
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "data"))
    assert DecisionStore().where == str(tmp_path / "data" / "decisions.db")
    monkeypatch.setenv("CNNLAB_RECORDS", "off")
    with pytest.raises(CnnlabError, match="turned off"):
        DecisionStore()


def test_query_filters(tmp_path):
    store = DecisionStore(tmp_path / "d.db")
    store.record([decision(i, bundle="pneumonia" if i % 2 else "mnist") for i in range(6)])
    times = lambda ds: [d.time for d in ds]  # noqa: E731
    got = store.query(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4))
    assert times(got) == [T0 + timedelta(minutes=3), T0 + timedelta(minutes=2)]
    assert [d.study_uid for d in store.query(study="1.2.3.4")] == ["1.2.3.4"]
    assert {d.bundle for d in store.query(model="mnist")} == {"mnist"}
    assert len(store.query(model="mnist")) == 3
    assert times(store.query(limit=2)) == [T0 + timedelta(minutes=5), T0 + timedelta(minutes=4)]
    assert sorted(store.models()) == ["mnist", "pneumonia"]
    # a time in another zone is the same instant
    cet = T0.astimezone(datetime.now().astimezone().tzinfo).astimezone(
        __import__("datetime").timezone(timedelta(hours=1))
    )
    assert len(store.query(since=cet)) == 6
    with pytest.raises(CnnlabError, match="zone"):
        store.query(since=datetime(2026, 1, 1))


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(CnnlabError, match="cannot open the decision store"):
        DecisionStore("nosuchdb://x/y")
    with pytest.raises(CnnlabError, match="unknown surface"):
        DecisionStore(tmp_path / "d.db").record([decision(surface="email")])
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(CnnlabError, match="decision store"):
        DecisionStore(tmp_path / "dir.db").query()


WRITER = """
import sys
from datetime import UTC, datetime
from cnnlab.records import Decision, DecisionStore
store = DecisionStore(sys.argv[1])
for i in range(100000):
    store.record([Decision(surface="cli", bundle="b", source=str(i), time=datetime.now(UTC))])
    print(i + 1, flush=True)
"""


def test_kill_9_loses_no_committed_row(tmp_path):
    path = tmp_path / "d.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    committed = 0
    for line in writer.stdout:
        committed = int(line)
        if committed >= 40:
            break
    os.kill(writer.pid, signal.SIGKILL)  # mid-stream: it is writing the next rows
    writer.wait(10)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    kept = DecisionStore(path).query()
    assert len(kept) >= committed
    assert {d.source for d in kept} >= {str(i) for i in range(committed)}
    DecisionStore(path).record([decision()])  # and it takes new rows


CLAIMER = """
import sys
from cnnlab.records import DecisionStore
store = DecisionStore(sys.argv[1])
for i in range(60):
    if store.claim_study(f"1.2.{i}", sys.argv[2]):
        print(i, flush=True)
"""


def test_a_study_is_claimed_once_across_processes(tmp_path):
    url = str(tmp_path / "d.db")
    DecisionStore(url).query()  # tables made, so both workers race on the claims only
    workers = [subprocess.Popen([sys.executable, "-c", CLAIMER, url, name],
                                stdout=subprocess.PIPE, text=True) for name in ("w1", "w2")]  # fmt: skip
    claimed = [set(map(int, w.communicate(timeout=120)[0].split())) for w in workers]
    assert not claimed[0] & claimed[1]
    assert claimed[0] | claimed[1] == set(range(60))


def check_claims(store: DecisionStore) -> None:
    """Claimed once; a failure is retried with its count; done is never claimed again."""
    assert store.claim_study("9.1", "a")
    assert not store.claim_study("9.1", "b")
    store.finish_study("9.1", ok=False, error="PACS answered 500")
    failed = store.study("9.1")
    assert (failed.state, failed.attempts, failed.error) == ("failed", 1, "PACS answered 500")
    assert store.claim_study("9.1", "b")
    assert not store.claim_study("9.1", "a")
    store.finish_study("9.1", ok=True)
    done = store.study("9.1")
    assert (done.state, done.worker, done.attempts, done.error) == ("done", "b", 2, None)
    assert not store.claim_study("9.1", "c")
    # a worker that died holding a claim: its study is claimed again once the lease is over
    assert store.claim_study("9.2", "dead")
    assert not store.claim_study("9.2", "c", lease=timedelta(hours=1))
    assert store.claim_study("9.2", "c", lease=timedelta(0))
    # a study that keeps failing is left for a person
    assert store.claim_study("9.3", "a", max_attempts=2)
    store.finish_study("9.3", ok=False, error="corrupt")
    assert store.claim_study("9.3", "a", max_attempts=2)
    store.finish_study("9.3", ok=False, error="corrupt")
    assert not store.claim_study("9.3", "a", max_attempts=2)
    with pytest.raises(CnnlabError, match="never claimed"):
        store.finish_study("9.4", ok=True)


def test_claims_on_sqlite(tmp_path):
    check_claims(DecisionStore(tmp_path / "d.db"))


def test_rotation_moves_the_rows_aside(tmp_path):
    store = DecisionStore(tmp_path / "d.db")
    store.record([decision(i) for i in range(3)])
    assert store.claim_study("7.7", "w")
    archive, moved = store.rotate()
    assert moved == 3 and archive.parent == tmp_path and archive.name.startswith("d-")
    assert [d.source for d in DecisionStore(archive).query()] == ["x2.dcm", "x1.dcm", "x0.dcm"]
    assert store.query() == []
    assert not store.claim_study("7.7", "w")  # claims stay with the live store
    store.record([decision(5)])
    assert [d.source for d in store.query()] == ["x5.dcm"]
    with pytest.raises(CnnlabError, match="exists already"):
        store.rotate(archive)


def test_decisions_from_present_rows():
    bundle = SimpleNamespace(name="pneumonia", sealed={"model.safetensors": {"sha256": "cd" * 32}},
                             ood=SimpleNamespace(threshold=1.0), temperature=1.4)  # fmt: skip
    rows = [
        {"file": "a.png", "label": "NORMAL", "probability": 0.8, "positive_probability": 0.2,
         "threshold": 0.4, "out_of_distribution": True, "ood_distance": 1.7, "error": None,
         "study_uid": "1.2", "series_uid": "1.2.1", "sop_uid": "1.2.1.1", "accession": "A"},
        {"file": "b.png", "label": None, "probability": None, "positive_probability": None,
         "threshold": 0.4, "out_of_distribution": None, "ood_distance": None,
         "error": "not an image"},
        {"file": "c.dcm", "label": None, "probability": None, "screened": False,
         "reason": "not screened: lateral view (ViewPosition LL)", "error": None},
    ]  # fmt: skip
    made = decisions_from(rows, bundle, "app", "session-1", 20.0, ["11" * 32, None, None])
    a, b, c = made
    assert (a.probability, a.label, a.screened, a.out_of_distribution, a.ood_cutoff) == (
        0.2, "NORMAL", True, True, 1.0)  # fmt: skip
    assert (a.study_uid, a.sop_uid, a.accession, a.input_sha256) == (
        "1.2",
        "1.2.1.1",
        "A",
        "11" * 32,
    )
    assert (a.weights_sha256, a.temperature, a.client, a.latency_ms) == (
        "cd" * 32,
        1.4,
        "session-1",
        20.0,
    )
    assert (b.screened, b.reason, b.label) == (False, "not an image", None)
    assert (c.screened, c.reason) == (False, "not screened: lateral view (ViewPosition LL)")
    with pytest.raises(ValueError, match="hashes"):
        decisions_from(rows, bundle, "app", None, 1.0, [])


# ----------------------------------------------------------------------------- PostgreSQL


def test_claims_on_postgresql(postgres_url):
    store = DecisionStore(postgres_url)
    check_claims(store)
    store.record([decision(0), decision(1)])
    assert [d.study_uid for d in store.query(study="1.2.3.1")] == ["1.2.3.1"]
    assert store.query(limit=1)[0] == decision(1)
    with pytest.raises(CnnlabError, match="pg_dump"):
        store.rotate()


def test_postgresql_claims_skip_a_locked_study(postgres_url):
    """Two workers at once: a study being claimed by one is skipped by the other at once (FOR
    UPDATE SKIP LOCKED), never waited on; and of many studies each is claimed exactly once."""
    from sqlalchemy import text

    store = DecisionStore(postgres_url)
    assert store.claim_study("8.1", "a")
    store.finish_study("8.1", ok=False, error="timeout")
    other = DecisionStore(postgres_url + "?options=-c%20lock_timeout%3D2000")  # no waiting
    with store.engine.connect() as holder, holder.begin():
        holder.execute(text("SELECT * FROM studies WHERE study_uid = '8.1' FOR UPDATE"))
        assert not other.claim_study("8.1", "b")  # skipped, not waited on (nor timed out)
    assert other.claim_study("8.1", "b")  # the lock is gone: the retry is b's

    won: dict[str, list[str]] = {"w1": [], "w2": []}

    def work(name: str) -> None:
        mine = DecisionStore(postgres_url)
        for i in range(40):
            if mine.claim_study(f"8.9.{i}", name):
                won[name].append(f"8.9.{i}")
                mine.finish_study(f"8.9.{i}", ok=True)

    threads = [threading.Thread(target=work, args=(n,)) for n in won]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not set(won["w1"]) & set(won["w2"])
    assert sorted(won["w1"] + won["w2"]) == sorted(f"8.9.{i}" for i in range(40))


def test_default_store_is_shared_per_place_and_old_ones_let_go(tmp_path, monkeypatch):
    from cnnlab.records.store import default_store

    monkeypatch.setenv("CNNLAB_RECORDS", str(tmp_path / "a.db"))
    first = default_store()
    assert default_store() is first
    for i in range(6):  # a long test session moves between many
        monkeypatch.setenv("CNNLAB_RECORDS", str(tmp_path / f"{i}.db"))
        default_store().record([decision(i)])
    monkeypatch.setenv("CNNLAB_RECORDS", str(tmp_path / "a.db"))
    first.record([decision(9)])  # a store let go still works: its pool opens again
    assert [d.source for d in default_store().query()] == ["x9.dcm"]
    monkeypatch.setenv("CNNLAB_RECORDS", "off")
    assert default_store() is None


def test_a_store_from_a_newer_cnnlab_is_refused_not_misread(tmp_path):
    DecisionStore(tmp_path / "d.db").record([decision()])
    with sqlite3.connect(tmp_path / "d.db") as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        db.execute("INSERT INTO schema_version VALUES (2)")
    with pytest.raises(CnnlabError, match="schema version 2, newer than this cnnlab's 1"):
        DecisionStore(tmp_path / "d.db").query()
