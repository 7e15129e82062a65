"""Decisions from what a surface showed: `present()`'s rows (the one schema) become the rows on
record, so the audit says exactly what the person or the PACS was told."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.bundle.seal import WEIGHTS
from cnnlab.errors import CnnlabError
from cnnlab.fileio import file_digest
from cnnlab.records.store import Decision, DecisionStore, default_store

if TYPE_CHECKING:
    from cnnlab.bundle.loading import Bundle


def sha256_of(data: bytes | Path) -> str:
    """An input's sha256: of its bytes, or of a file's bytes (read in 1 MB chunks)."""
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest()
    return file_digest(data)


def decisions_from(
    shown: Sequence[Any],
    bundle: Bundle,
    surface: str,
    client: str | None,
    latency_ms: float | None,
    input_sha256: Sequence[str | None] | None = None,
    time: datetime | None = None,
) -> list[Decision]:
    """One Decision per shown prediction (`report.present.Presented`, or its row as a dict):
    `latency_ms` is the whole request's (each answer took that long), `input_sha256` the
    inputs' hashes in the same order (`sha256_of` their bytes). Rows that were not classified
    (unreadable, or refused by the bundle's rules) are on record too, with their reason."""
    when = time or datetime.now(UTC)
    hashes = list(input_sha256) if input_sha256 is not None else [None] * len(shown)
    if len(hashes) != len(shown):
        raise ValueError(f"{len(shown)} predictions but {len(hashes)} input hashes")
    weights = (bundle.sealed.get(WEIGHTS) or {}).get("sha256")
    cutoff = bundle.ood.threshold if bundle.ood is not None else None
    out = []
    for item, digest in zip(shown, hashes, strict=True):
        row = item.row if hasattr(item, "row") else item
        pred = getattr(item, "prediction", None)
        probability = row.get("positive_probability")
        if probability is None:
            probability = row.get("probability")
        screened = row.get("screened")
        if screened is None:
            screened = not row.get("error")
        out.append(Decision(
            time=when, surface=surface, client=client, input_sha256=digest,
            study_uid=row.get("study_uid"), series_uid=row.get("series_uid"),
            sop_uid=row.get("sop_uid"), accession=row.get("accession"),
            patient_id=row.get("patient_id"), bundle=bundle.name, weights_sha256=weights,
            threshold=row.get("threshold"), temperature=bundle.temperature,
            probability=probability, label=row.get("label") if screened else None,
            screened=bool(screened), reason=None if screened else (row.get("reason") or row.get("error")),
            ood_distance=row.get("ood_distance"),
            ood_cutoff=getattr(pred, "ood_threshold", None) or cutoff,
            out_of_distribution=row.get("out_of_distribution"), latency_ms=latency_ms,
            source=row.get("file"),
        ))  # fmt: skip
    return out


def put_on_record(
    shown: Sequence[Any],
    bundle: Bundle,
    surface: str,
    client: str | None,
    latency_ms: float | None,
    inputs: Sequence[bytes | Path | None],
    store: DecisionStore | None = None,
) -> int:
    """What a surface showed, on record before it is shown (one transaction): the default
    store unless `store`; nothing when recording is off. A store that cannot take them is a
    CnnlabError that says how to go on without recording."""
    store = store or default_store()
    if store is None:
        return 0
    hashes = [None if i is None else sha256_of(i) for i in inputs]
    try:
        return store.record(decisions_from(shown, bundle, surface, client, latency_ms, hashes))
    except CnnlabError as e:
        raise CnnlabError(
            f"{e} (nothing was answered; to answer without a record: --no-record "
            f"or CNNLAB_RECORDS=off)"
        ) from None
