"""What goes wrong in a hospital, each a clear error and nothing lost: a PACS that is down, a
500 on one study, a STOW refused, a study with no images. One study's failure never stops the
others; a failed study is retried on the next pass and then screened once."""

from __future__ import annotations

import functools
import threading

import pytest

from cnnlab.bundle.loading import load_bundle
from cnnlab.bundle.save import update_bundle_meta
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.net import free_port
from cnnlab.pacs.screening import connect, screen_pass, watch
from cnnlab.pacs.structured import read_report
from cnnlab.records.store import DecisionStore
from tests.pacs.proxy import flaky_pacs
from tests.pacs.studies import chest_dicom, dicom_file_bytes, new_study, synthetic_chest
from tests.serve.conftest import make_bundle

DAY = "19990101"  # these tests' studies, apart from the others' in the same Orthanc


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small binary bundle that accepts what the pneumonia bundle accepts (fast to run)."""
    path = tmp_path_factory.mktemp("bundles") / "chest"
    make_bundle(path, binary=True, seed=3, decision={"threshold": 0.5, "temperature": 1.0})
    update_bundle_meta(
        path, accepts={"modality": ["CR", "DX"], "body_part": ["CHEST"], "view": ["PA", "AP"]}
    )
    return load_bundle(path)


def upload_study(orthanc, accession: str, modality: str = "CR") -> str:
    study = new_study(accession)
    ds = chest_dicom(synthetic_chest(hash(accession) % 100), study, modality="CR")
    ds.StudyDate = DAY
    if modality == "OT":  # a study holding no X-ray: only an image of another kind
        ds.Modality = "OT"
    orthanc.upload(dicom_file_bytes(ds))
    return study.study_uid


def sr_count(orthanc, study_uid: str) -> int:
    client = connect(orthanc.dicomweb)
    series = client.search_for_series(study_uid, search_filters={"Modality": "SR"})
    return sum(
        len(client.search_for_instances(study_uid, s["0020000E"]["Value"][0])) for s in series
    )


def test_a_pacs_that_is_down_is_one_clear_line(capsys):
    url = f"http://127.0.0.1:{free_port()}/dicom-web"  # nothing listens there
    assert main(["screen", "--dicomweb", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"cnnlab: error: searching for studies (QIDO-RS): the PACS at {url} is unreachable "
                   "(ConnectionError)"]  # fmt: skip


def test_failed_studies_do_not_stop_the_others_and_are_retried_once(orthanc, tiny, tmp_path):
    s500, refused, fine, empty = (upload_study(orthanc, "F-500"), upload_study(orthanc, "F-STOW"),
                                  upload_study(orthanc, "F-OK"), upload_study(orthanc, "F-EMPTY", "OT"))  # fmt: skip
    store = DecisionStore(tmp_path / "decisions.db")
    load = functools.cache(lambda: tiny)
    with flaky_pacs(orthanc.http) as pacs:
        pacs.fail = {("GET", f"/studies/{s500}/series"): 500, ("POST", f"/studies/{refused}"): 409}
        first = {o.study_uid: o for o in screen_pass(pacs.url, load, store, DAY, [])}
        assert set(first) == {s500, refused, fine, empty}
        assert first[s500].error.startswith(f"listing the series of study {s500}: the PACS at "
                                            f"{pacs.url} answered HTTP 500")  # fmt: skip
        assert first[refused].error.startswith(f"storing 2 result(s) into study {refused} "
                                               f"(STOW-RS): the PACS at {pacs.url} answered HTTP 409")  # fmt: skip
        assert first[empty].error == f"study {empty} holds no image instances to screen"
        assert first[fine].error is None and sr_count(orthanc, fine) == 1
        assert "FAILED, will retry" in first[s500].line
        # what was decided before the STOW failed stays on record
        assert [d.accession for d in store.query(study=refused)] == ["F-STOW"]
        assert store.study(refused).state == "failed" and store.study(fine).state == "done"
        pacs.fail = {}  # the PACS recovers: the next pass retries the failed, never the done
        second = {o.study_uid: o for o in screen_pass(pacs.url, load, store, DAY, [])}
    assert set(second) == {s500, refused, empty}
    assert second[s500].error is None and second[refused].error is None
    assert store.study(refused).attempts == 2
    for uid in (s500, refused, fine):
        assert sr_count(orthanc, uid) == 1
    (sr,) = connect(orthanc.dicomweb).retrieve_series(
        refused, connect(orthanc.dicomweb).search_for_series(refused, search_filters={"Modality": "SR"})[0]["0020000E"]["Value"][0]
    )  # fmt: skip
    assert read_report(sr).algorithm == f"cnnlab {tiny.name}"


def test_watch_goes_on_after_a_pacs_error():
    stop, calls, errors = threading.Event(), [], []

    def run_pass():
        calls.append(1)
        if len(calls) == 1:
            raise CnnlabError("the PACS is unreachable")
        stop.set()
        return []

    watch(0.0, stop, run_pass, errors.append)
    assert len(calls) == 2 and [str(e) for e in errors] == ["the PACS is unreachable"]
