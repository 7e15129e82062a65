"""Studies claimed by the PACS screeners, in the decision store's database: a study is screened
once, across restarts and replicas, and one that failed is tried again, with a count.

On SQLite a claim is one atomic INSERT (the first) or conditional UPDATE (a retry); on
PostgreSQL the retry's row is taken with `SELECT ... FOR UPDATE SKIP LOCKED`, so a worker never
waits on a study another is claiming: it moves on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cnnlab.errors import CnnlabError

CLAIM_LEASE = timedelta(minutes=30)  # a claim older than this, never finished, is retried
MAX_ATTEMPTS = 5  # a study that failed this often is left for a person


@dataclass(frozen=True)
class StudyClaim:
    """Where a study stands with the screeners: claimed, done or failed, after how many tries."""

    study_uid: str
    state: str  # "claimed" | "done" | "failed"
    worker: str
    attempts: int
    claimed_at: datetime
    finished_at: datetime | None
    error: str | None


class StudyClaims:
    """The claim methods of `DecisionStore` (which provides the engine, `studies` table and
    `_begin` transactions)."""

    sqlite: bool
    studies: Any
    engine: Any

    def claim_study(
        self,
        study_uid: str,
        worker: str,
        lease: timedelta = CLAIM_LEASE,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> bool:
        """Claim `study_uid` for `worker`: True for exactly one caller. A study done is never
        claimed again; one that failed (or whose claim is older than `lease` and unfinished:
        its worker died) is claimed again, until it has been tried `max_attempts` times."""
        now = datetime.now(UTC)
        if self._insert_claim(study_uid, worker, now):
            return True
        t = self.studies
        retry = ((t.c.state == "failed") | ((t.c.state == "claimed") & (t.c.claimed_at < now - lease))
                 ) & (t.c.attempts < max_attempts)  # fmt: skip
        values = {"state": "claimed", "worker": worker, "attempts": t.c.attempts + 1,
                  "claimed_at": now, "finished_at": None, "error": None}  # fmt: skip
        from sqlalchemy import select, update

        with self._begin() as conn:
            if self.sqlite:  # one statement: SQLite runs it under its one write lock
                done = conn.execute(
                    update(t).where(t.c.study_uid == study_uid, retry).values(values)
                )
                return done.rowcount == 1
            row = conn.execute(
                select(t.c.study_uid).where(t.c.study_uid == study_uid, retry)
                .with_for_update(skip_locked=True)
            ).first()  # fmt: skip
            if row is None:
                return False
            conn.execute(update(t).where(t.c.study_uid == study_uid).values(values))
            return True

    def _insert_claim(self, study_uid: str, worker: str, now: datetime) -> bool:
        """The first claim of a study: an INSERT that does nothing when the row exists."""
        if self.sqlite:
            from sqlalchemy.dialects.sqlite import insert
        elif self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            raise CnnlabError(f"claiming studies needs SQLite or PostgreSQL, not {self.where}")
        stmt = insert(self.studies).values(
            study_uid=study_uid, state="claimed", worker=worker, attempts=1, claimed_at=now
        ).on_conflict_do_nothing(index_elements=["study_uid"]).returning(self.studies.c.study_uid)  # fmt: skip
        with self._begin() as conn:  # RETURNING: psycopg's rowcount is -1 here
            return conn.execute(stmt).first() is not None

    def finish_study(self, study_uid: str, ok: bool, error: str | None = None) -> None:
        """Mark a claimed study done (`ok`), or failed with `error` (tried again later)."""
        from sqlalchemy import update

        t = self.studies
        with self._begin() as conn:
            done = conn.execute(
                update(t).where(t.c.study_uid == study_uid).values(
                    state="done" if ok else "failed", finished_at=datetime.now(UTC),
                    error=None if ok else (error or "failed"))
            )  # fmt: skip
            if done.rowcount != 1:
                raise CnnlabError(f"study {study_uid} was never claimed: claim it first")

    def study(self, study_uid: str) -> StudyClaim | None:
        from sqlalchemy import select

        with self._begin() as conn:
            row = conn.execute(select(self.studies).where(self.studies.c.study_uid == study_uid))
            found = row.mappings().first()
        if found is None:
            return None
        return StudyClaim(**{**found, "claimed_at": _utc(found["claimed_at"]),
                             "finished_at": _utc(found["finished_at"])})  # fmt: skip


def _utc(value: datetime | None) -> datetime | None:
    """Aware UTC (SQLite hands back naive datetimes; they were stored as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
