"""Every decision on record: one row per decision a bundle made (CLI, API, app, PACS), and the
studies the PACS screener claimed, in one database that several processes share.

SQLite by default (`$CNNLAB_RECORDS`, else `decisions.db` in cnnlab's data folder), any
SQLAlchemy URL otherwise (`postgresql://...` for several replicas). A row is committed before
the answer it records is shown, in WAL mode with `synchronous=NORMAL`: a `kill -9` loses no
committed row, and readers never block the writer (see `_sqlite_pragmas` for why not FULL).

Studies are claimed so that none is screened twice, across restarts and replicas: the claim
methods are claims.py's (`StudyClaims`), on the same tables and transactions.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.records.claims import StudyClaims, _utc

ENV = "CNNLAB_RECORDS"  # a path or SQLAlchemy URL; "off" turns recording off
OFF = {"off", "none", "0", "false", "no"}
SCHEMA_VERSION = 1
SURFACES = ("cli", "api", "app", "pacs")


@dataclass(frozen=True, kw_only=True)
class Decision:
    """One decision as it is kept: who asked (surface, client), about what (input hash, DICOM
    identifiers), which model (name, weights hash, threshold, temperature) and what it said."""

    time: datetime = field(default_factory=lambda: datetime.now(UTC))  # UTC
    surface: str  # "cli" | "api" | "app" | "pacs"
    client: str | None = None  # the API token's name, the app's session id, None on the CLI
    input_sha256: str | None = None  # of the input file's bytes, as it arrived
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    accession: str | None = None
    patient_id: str | None = None  # only where the user asked for it
    bundle: str  # the bundle's name
    weights_sha256: str | None = None
    threshold: float | None = None
    temperature: float | None = None
    probability: float | None = None  # calibrated; binary bundles: p(positive class)
    label: str | None = None
    screened: bool = True  # False: not classified (`reason` says why)
    reason: str | None = None
    ood_distance: float | None = None
    ood_cutoff: float | None = None
    out_of_distribution: bool | None = None
    latency_ms: float | None = None  # the request's time to its answer, on this surface
    source: str | None = None  # the input's name as given (file, upload, SOP instance)

    def to_dict(self) -> dict[str, Any]:
        """JSON values: the time as ISO 8601 UTC."""
        out = asdict(self)
        out["time"] = self.time.isoformat()
        return out


COLUMNS = tuple(f.name for f in fields(Decision))
# what a person reads first in a list of decisions: (heading, field)
FIELDS_SHOWN = (("time (UTC)", "time"), ("surface", "surface"), ("client", "client"),
                ("model", "bundle"), ("label", "label"), ("probability", "probability"),
                ("ood", "out_of_distribution"), ("ms", "latency_ms"), ("study", "study_uid"),
                ("input", "source"))  # fmt: skip


def default_url() -> str | None:
    """$CNNLAB_RECORDS (a path or a URL), else decisions.db in cnnlab's data folder; None when
    recording is turned off (CNNLAB_RECORDS=off)."""
    from cnnlab.data.download import cache_dir

    value = os.environ.get(ENV, "").strip()
    if value.lower() in OFF:
        return None
    return to_url(value or cache_dir() / "decisions.db")


def _text(value):
    """A value as the database can store it: a file name that is not valid UTF-8 (Python keeps
    its bytes as surrogates) is stored with those bytes escaped (`\\xe9`), not refused."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def to_url(where: str | Path) -> str:
    """A SQLAlchemy URL from a URL or a file path (a path becomes `sqlite:///PATH`)."""
    text = str(where)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def _tables(metadata: Any) -> tuple[Any, Any, Any]:
    from sqlalchemy import (
        Boolean,
        Column,
        DateTime,
        Float,
        Integer,
        String,
        Table,
        Text,
    )

    version = Table("schema_version", metadata, Column("version", Integer, nullable=False))
    decisions = Table(
        "decisions",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("time", DateTime(timezone=True), nullable=False, index=True),
        Column("surface", String(8), nullable=False),
        Column("client", String(200)),
        Column("input_sha256", String(64)),
        Column("study_uid", String(64), index=True),
        Column("series_uid", String(64)),
        Column("sop_uid", String(64)),
        Column("accession", String(64)),
        Column("patient_id", String(64)),
        Column("bundle", String(200), nullable=False, index=True),
        Column("weights_sha256", String(64)),
        Column("threshold", Float),
        Column("temperature", Float),
        Column("probability", Float),
        Column("label", String(200)),
        Column("screened", Boolean, nullable=False),
        Column("reason", Text),
        Column("ood_distance", Float),
        Column("ood_cutoff", Float),
        Column("out_of_distribution", Boolean),
        Column("latency_ms", Float),
        Column("source", Text),
        sqlite_autoincrement=True,  # ids never reused: a rotated-out id stays unique
    )
    studies = Table(
        "studies",
        metadata,
        Column("study_uid", String(64), primary_key=True),
        Column("state", String(8), nullable=False),
        Column("worker", String(200), nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("claimed_at", DateTime(timezone=True), nullable=False),
        Column("finished_at", DateTime(timezone=True)),
        Column("error", Text),
    )
    return version, decisions, studies


def _stored(value: datetime) -> datetime:
    """UTC, naive on SQLite (which keeps no zone) so that text comparisons order by time."""
    if value.tzinfo is None:
        raise CnnlabError(f"a decision's time must say its zone (UTC), got {value.isoformat()}")
    return value.astimezone(UTC)


class DecisionStore(StudyClaims):
    """The decisions and study claims in one database; safe to share between threads, and
    between processes (each opens its own)."""

    def __init__(self, url: str | Path | None = None) -> None:
        from sqlalchemy import MetaData, create_engine, event
        from sqlalchemy.exc import ArgumentError

        target = to_url(url) if url is not None else default_url()
        if target is None:
            raise CnnlabError(f"recording is turned off ({ENV}=off): no decision store to open")
        self.url = target
        try:
            self.engine = create_engine(target, future=True)
        except (ArgumentError, ImportError) as e:  # a bad URL, or no driver for it
            raise CnnlabError(f"cannot open the decision store {_safe(target)}: {e}") from None
        self.sqlite = self.engine.dialect.name == "sqlite"
        if self.sqlite:
            self.path = Path(self.engine.url.database or "")
            if not self.engine.url.database or self.engine.url.database == ":memory:":
                raise CnnlabError("the decision store must be a file, not an in-memory SQLite")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.metadata = MetaData()
        self.version, self.decisions, self.studies = _tables(self.metadata)
        self._lock = threading.Lock()  # one schema check per store
        self._ready = False

    def __repr__(self) -> str:
        return f"DecisionStore({_safe(self.url)})"

    @property
    def where(self) -> str:
        """The store as people read it: the SQLite file, or the URL without its password."""
        return str(self.path) if self.sqlite else _safe(self.url)

    # ------------------------------------------------------------------ schema

    def _ensure(self) -> None:
        """Create the tables once, and refuse a store written by a newer cnnlab."""
        if self._ready:
            return
        from sqlalchemy import func, insert, select
        from sqlalchemy.exc import DBAPIError

        with self._lock:
            for attempt in range(3):  # two processes creating the tables at once: one loses
                try:
                    with self.engine.begin() as conn:
                        self.metadata.create_all(conn)
                        found = conn.execute(select(func.max(self.version.c.version))).scalar()
                        if found is None:
                            conn.execute(insert(self.version).values(version=SCHEMA_VERSION))
                    break
                except DBAPIError as e:
                    if attempt == 2 or e.connection_invalidated:
                        raise CnnlabError(
                            f"cannot open the decision store {self.where}: {e.orig}"
                        ) from None
            if found is not None and found > SCHEMA_VERSION:
                raise CnnlabError(
                    f"the decision store {self.where} has schema version {found}, newer than "
                    f"this cnnlab's {SCHEMA_VERSION}: upgrade cnnlab to read it"
                )
            self._ready = True

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Any]:
        from sqlalchemy.exc import OperationalError

        self._ensure()
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as e:
            raise CnnlabError(f"the decision store {self.where}: {e.orig}") from None

    def opened(self) -> DecisionStore:
        """The store, its tables made and its schema checked (a clear error now, not later)."""
        self._ensure()
        return self

    # ------------------------------------------------------------------ decisions

    def record(self, decisions: Iterable[Decision]) -> int:
        """Commit `decisions` in one transaction (all or none); returns how many."""
        from sqlalchemy import insert

        rows = []
        for d in decisions:
            if d.surface not in SURFACES:
                raise CnnlabError(f"unknown surface {d.surface!r}: one of {', '.join(SURFACES)}")
            rows.append({k: _text(v) for k, v in asdict(d).items()} | {"time": _stored(d.time)})
        if rows:
            with self._begin() as conn:
                conn.execute(insert(self.decisions), rows)
        return len(rows)

    def query(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        study: str | None = None,
        model: str | None = None,
        limit: int | None = None,
    ) -> list[Decision]:
        """Decisions newest first: made at or after `since` and before `until`, about `study`
        (a StudyInstanceUID), by the bundle named `model`; at most `limit` of them."""
        from sqlalchemy import select

        t = self.decisions
        stmt = select(*(t.c[name] for name in COLUMNS)).order_by(t.c.time.desc(), t.c.id.desc())
        if since is not None:
            stmt = stmt.where(t.c.time >= _stored(since))
        if until is not None:
            stmt = stmt.where(t.c.time < _stored(until))
        if study is not None:
            stmt = stmt.where(t.c.study_uid == study)
        if model is not None:
            stmt = stmt.where(t.c.bundle == model)
        if limit is not None:
            if limit < 1:
                raise CnnlabError(f"the limit must be at least 1, got {limit}")
            stmt = stmt.limit(limit)
        with self._begin() as conn:
            found = conn.execute(stmt).mappings().all()
        return [Decision(**{**row, "time": _utc(row["time"])}) for row in found]

    def models(self) -> list[str]:
        """The bundles that have decisions on record (for a filter's choices)."""
        from sqlalchemy import select

        with self._begin() as conn:
            return list(conn.execute(select(self.decisions.c.bundle).distinct()).scalars())

    # ------------------------------------------------------------------ rotation

    def rotate(self, to: str | Path | None = None) -> tuple[Path, int]:
        """Move the decisions on record into a file of their own (`to`, default
        decisions-YYYYmmdd-HHMMSS.db beside the store) and go on with an empty store; returns
        (that file, how many decisions it holds). Writers may go on meanwhile: the archive
        appears whole (written aside, then renamed), then exactly its rows leave the store, so
        a crash between the two leaves a row in both, never in neither. Study claims stay."""
        if not self.sqlite:
            raise CnnlabError(
                f"rotation moves a SQLite file; {self.where} is a server database (archive it "
                "with its own tools, e.g. pg_dump, then delete old rows)"
            )
        from sqlalchemy import delete, func, select

        from cnnlab.fileio import atomic_path

        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        target = Path(to) if to else self.path.with_name(f"{self.path.stem}-{stamp}.db")
        if target.exists():
            raise CnnlabError(f"{target} exists already: rotate to another file")
        with self._begin() as conn:
            last = conn.execute(select(func.max(self.decisions.c.id))).scalar() or 0
        import sqlite3

        with atomic_path(target) as tmp:
            tmp.unlink()  # VACUUM INTO writes a new file only
            with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as db:
                db.execute("VACUUM INTO ?", (str(tmp),))
            with contextlib.closing(sqlite3.connect(tmp)) as db, db:
                db.execute("DELETE FROM decisions WHERE id > ?", (last,))
                db.execute("DELETE FROM studies")
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        with self._begin() as conn:
            moved = conn.execute(delete(self.decisions).where(self.decisions.c.id <= last))
        return target, moved.rowcount

    def close(self) -> None:
        self.engine.dispose()


_OPEN: dict[str, DecisionStore] = {}
_OPEN_LOCK = threading.Lock()


def default_store() -> DecisionStore | None:
    """The process's store at the default place (one engine per URL, shared by every caller);
    None when recording is turned off."""
    url = default_url()
    if url is None:
        return None
    with _OPEN_LOCK:
        store = _OPEN.pop(url, None) or DecisionStore(url)
        _OPEN[url] = store  # the most recent last
        while len(_OPEN) > 4:  # a long test session opens many: close the pools of the oldest
            _OPEN.pop(next(iter(_OPEN))).engine.dispose()
        return store


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL: readers never block the writer, and a commit is one append to the log. NORMAL: a
    commit is in the log file (the operating system's cache) when it returns, so a killed
    process loses nothing committed; only a power cut or a kernel crash can lose the last
    commits. FULL would sync the log at each commit and close that gap too, but costs an fsync
    per request: 26 ms against 0.97 ms per decision here (benchmarks/records_cost.py), over
    ten times the 2 ms budget. A site that needs power-cut durability runs PostgreSQL."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _safe(url: str) -> str:
    """A URL as logs may show it: without its password."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]
