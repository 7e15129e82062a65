"""Screening a PACS over DICOMweb: QIDO-RS finds the studies (by date and modality), the
decision store's claims pick those not yet screened, WADO-RS fetches their images, the one
inference path (`cnnlab.predict.predict_sources`) answers, and STOW-RS stores an SR per image
read and a Secondary Capture per image screened back into the study, as two new series.

A study is claimed before it is read and finished after its results are stored: a study done
is never screened again (across restarts and replicas: the store's claims), and a study that
failed (the PACS answered 500, the STOW was refused, it holds no image) is retried on a later
pass, its failure on record. One study's failure never stops the others.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from cnnlab.errors import CnnlabError

if TYPE_CHECKING:  # the model's side (torch) loads once a study is claimed, not to poll
    from cnnlab.bundle.loading import Bundle
    from cnnlab.pacs.answers import Answered
    from cnnlab.records.store import DecisionStore

log = logging.getLogger("cnnlab")

STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
MODALITY, ACCESSION, STUDY_DATE = "00080060", "00080050", "00080020"
OURS = ("SR", "OT", "KO", "PR", "SEG")  # results, ours or others': never images to screen


@dataclass
class StudyOutcome:
    """What became of one study on one pass."""

    study_uid: str
    accession: str = ""
    answers: list[Answered] = field(default_factory=list)
    stored: int = 0  # instances stored back (SRs and SCs)
    error: str | None = None  # why the study failed (it is retried)
    skipped: bool = False  # claimed by another worker, or done already

    @property
    def line(self) -> str:
        """One line per study for the log and the command's output."""
        who = f"study {self.study_uid}" + (
            f" (accession {self.accession})" if self.accession else ""
        )
        if self.error:
            return f"{who}: FAILED, will retry: {self.error}"
        said = "; ".join(a.shown.text or a.shown.row["result"] for a in self.answers)
        return f"{who}: {len(self.answers)} image(s), {self.stored} result(s) stored: {said}"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def connect(url: str, timeout: float = 30.0):
    """A DICOMweb client for `url` (the root: QIDO, WADO and STOW paths below it). The
    client's own retries (up to a minute of back-off per request) are off: a study that fails
    is retried on the next pass, and a PACS that is down is said at once."""
    from dicomweb_client.api import DICOMwebClient

    logging.getLogger("retrying").setLevel(logging.CRITICAL)  # its tracebacks: said in one line
    client = DICOMwebClient(url=url.rstrip("/"), timeout=timeout)
    client.set_http_retry_params(retry=False)
    return client


def _value(item: dict[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def _http(what: str, url: str, e: Exception) -> CnnlabError:
    """A PACS failure in one line: unreachable, or the HTTP status it answered."""
    import requests

    if isinstance(e, requests.HTTPError) and e.response is not None:
        body = (e.response.text or "").strip().replace("\n", " ")[:200]
        return CnnlabError(f"{what}: the PACS at {url} answered HTTP {e.response.status_code}"
                           + (f" ({body})" if body else ""))  # fmt: skip
    if isinstance(e, requests.ConnectionError | requests.Timeout):
        return CnnlabError(f"{what}: the PACS at {url} is unreachable ({type(e).__name__})")
    return CnnlabError(f"{what}: {type(e).__name__}: {e}")


def date_range(since: date | None, days: int | None) -> str | None:
    """QIDO's StudyDate filter: 'YYYYMMDD-' from `since`, or from `days` ago; None: any date."""
    start = since or (date.today() - timedelta(days=days) if days is not None else None)
    return f"{start:%Y%m%d}-" if start else None


PAGE = 500  # QIDO results asked per request


def _all(search, *args, **kwargs) -> list[dict]:
    """Every result of a QIDO search, page by page. dicomweb-client's own `get_remaining`
    loops forever on a server that ignores `offset`: here a page that adds nothing new ends it."""
    seen: dict[str, dict] = {}
    offset = 0
    while True:
        page = search(*args, limit=PAGE, offset=offset, **kwargs)
        fresh = {json_key(item) for item in page} - seen.keys()
        for item in page:
            seen.setdefault(json_key(item), item)
        if len(page) < PAGE or not fresh:
            return list(seen.values())
        offset += len(page)


def json_key(item: dict) -> str:
    return "/".join(_value(item, tag) for tag in (STUDY_UID, SERIES_UID, SOP_UID))


def find_studies(client, url: str, dates: str | None, modalities: list[str]) -> list[dict]:
    """QIDO-RS: the studies of these dates holding any of these modalities (one query per
    modality: ModalitiesInStudy with several values is read differently by different PACS)."""
    found: dict[str, dict] = {}
    for modality in modalities or [None]:
        filters = {k: v for k, v in (("StudyDate", dates), ("ModalitiesInStudy", modality)) if v}
        try:
            studies = _all(client.search_for_studies, search_filters=filters)
        except Exception as e:  # noqa: BLE001 - requests' and the client's errors alike
            raise _http("searching for studies (QIDO-RS)", url, e) from None
        for study in studies:
            found.setdefault(_value(study, STUDY_UID), study)
    return [found[k] for k in sorted(found) if k]


def study_images(client, url: str, study_uid: str, modalities: list[str]) -> Iterator[Dataset]:
    """WADO-RS: the study's instances in series of these modalities (any, when none given;
    never results such as SR or SC), one at a time so that one corrupt instance is one error."""
    try:
        series = _all(client.search_for_series, study_uid)
    except Exception as e:  # noqa: BLE001
        raise _http(f"listing the series of study {study_uid}", url, e) from None
    wanted = [s for s in series if _value(s, MODALITY) not in OURS
              and (not modalities or _value(s, MODALITY) in modalities)]  # fmt: skip
    for s in wanted:
        series_uid = _value(s, SERIES_UID)
        try:
            instances = _all(client.search_for_instances, study_uid, series_uid)
        except Exception as e:  # noqa: BLE001
            raise _http(f"listing the images of series {series_uid}", url, e) from None
        for inst in instances:
            sop_uid = _value(inst, SOP_UID)
            try:
                yield client.retrieve_instance(study_uid, series_uid, sop_uid)
            except Exception as e:  # noqa: BLE001
                raise _http(f"fetching image {sop_uid} (WADO-RS)", url, e) from None


def screen_study(
    client, url: str, bundle: Bundle, study_uid: str, modalities: list[str], store_back: bool,
    store: DecisionStore | None, cam_layer: str | None = None,
) -> StudyOutcome:  # fmt: skip
    """One study: its images fetched, answered, the answers recorded, the results stored back.
    Raises CnnlabError for what fails the study as a whole."""
    from cnnlab.pacs.answers import answer_images, results_for

    outcome = StudyOutcome(study_uid)
    started = time.perf_counter()
    images = list(study_images(client, url, study_uid, modalities))
    if not images:
        kinds = "/".join(modalities) if modalities else "image"
        raise CnnlabError(f"study {study_uid} holds no {kinds} instances to screen")
    outcome.accession = str(images[0].get("AccessionNumber", "") or "")
    outcome.answers = answer_images(bundle, images)
    latency = (time.perf_counter() - started) * 1000 / len(images)
    if store is not None:
        record_answers(store, bundle, outcome.answers, latency)
    if store_back:
        results = results_for(bundle, outcome.answers, generate_uid(), generate_uid(), cam_layer)
        try:
            client.store_instances(results, study_instance_uid=study_uid)
        except Exception as e:  # noqa: BLE001
            raise _http(f"storing {len(results)} result(s) into study {study_uid} (STOW-RS)",
                        url, e) from None  # fmt: skip
        outcome.stored = len(results)
    return outcome


def screen_pass(
    url: str,
    load: Callable[[], Bundle],
    store: DecisionStore | None,
    dates: str | None = None,
    modalities: list[str] | None = None,
    store_back: bool = True,
    worker: str | None = None,
    report: Callable[[StudyOutcome], None] = lambda o: None,
) -> list[StudyOutcome]:
    """One pass over the PACS: every study found and not yet screened, claimed, screened and
    finished (done, or failed with its error: retried on a later pass). The bundle is loaded
    (`load`, cached by the caller) only once a study is claimed: a watch over a quiet PACS
    costs a query. Raises CnnlabError only when the PACS cannot be searched at all."""
    modalities = modalities or []
    client = connect(url)
    worker = worker or worker_name()
    cam_layer = None
    outcomes = []
    for study in find_studies(client, url, dates, modalities):
        uid = _value(study, STUDY_UID)
        if store is not None and not store.claim_study(uid, worker):
            continue
        try:
            bundle = load()
            if cam_layer is None and store_back:
                from cnnlab.explain import bundle_cam_layer

                cam_layer = bundle_cam_layer(bundle)
            outcome = screen_study(client, url, bundle, uid, modalities, store_back, store,
                                   cam_layer)  # fmt: skip
        except CnnlabError as e:
            outcome = StudyOutcome(uid, _value(study, ACCESSION), error=str(e))
        except Exception as e:  # noqa: BLE001 - one study's surprise never stops the others
            log.exception("screening study %s failed", uid)
            outcome = StudyOutcome(uid, _value(study, ACCESSION),
                                   error=f"{type(e).__name__}: {e}")  # fmt: skip
        if store is not None:
            store.finish_study(uid, outcome.error is None, outcome.error)
        report(outcome)
        outcomes.append(outcome)
    return outcomes


def watch(
    every_s: float, stop: threading.Event, run_pass: Callable[[], list[StudyOutcome]],
    on_error: Callable[[CnnlabError], None],
) -> None:  # fmt: skip
    """Passes every `every_s` seconds until `stop` is set; a PACS that is down is said and
    tried again on the next pass, never the end of the watch."""
    while not stop.is_set():
        try:
            run_pass()
        except CnnlabError as e:
            on_error(e)
        stop.wait(every_s)


def record_answers(store: DecisionStore, bundle: Bundle, answers: list, latency_ms: float) -> None:
    """The answers on record as decisions of the PACS surface (`screen` and `receive`)."""
    from cnnlab.records import decisions_from
    from cnnlab.records.entries import sha256_of

    store.record(decisions_from([a.shown for a in answers], bundle, "pacs", worker_name(),
                                latency_ms, [sha256_of(a.data) for a in answers]))  # fmt: skip
