"""The C-STORE receiver: an image pushed by a modality (pynetdicom as the sender) is screened,
its decision recorded, and its SR and Secondary Capture land in its study in the real Orthanc;
when the results cannot be delivered the sender is told to push again."""

from __future__ import annotations

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import ComputedRadiographyImageStorage

from cnnlab.bundle.loading import load_bundle
from cnnlab.bundle.save import update_bundle_meta
from cnnlab.net import free_port
from cnnlab.pacs.receiver import CANNOT_DELIVER, SUCCESS, Receiver
from cnnlab.pacs.screening import connect
from cnnlab.pacs.structured import read_report
from cnnlab.records.store import DecisionStore
from tests.pacs.studies import chest_dicom, new_study, synthetic_chest
from tests.serve.conftest import make_bundle


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundles") / "chest"
    make_bundle(path, binary=True, seed=4, decision={"threshold": 0.5, "temperature": 1.0})
    update_bundle_meta(path, accepts={"modality": ["CR", "DX"], "view": ["PA", "AP"]})
    return load_bundle(path)


def push(port: int, ds) -> int:
    """C-STORE `ds` to the receiver as a modality would; the status it answers."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ComputedRadiographyImageStorage, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="CNNLAB")
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def test_pushed_images_are_screened_and_their_results_stored(orthanc, tiny, tmp_path):
    store = DecisionStore(tmp_path / "decisions.db")
    receiver = Receiver(tiny, orthanc.dicomweb, store)
    port = free_port()
    receiver.start("127.0.0.1", port)
    try:
        study = new_study("RCV-1")
        pa = chest_dicom(synthetic_chest(7), study)
        lateral = chest_dicom(synthetic_chest(8), study, view="LL")
        assert push(port, pa) == SUCCESS and push(port, lateral) == SUCCESS
        down = Receiver(tiny, f"http://127.0.0.1:{free_port()}/dicom-web", store)
        down_port = free_port()
        down.start("127.0.0.1", down_port)
        try:  # the destination is down: the sender is told, and will push again
            assert (
                push(down_port, chest_dicom(synthetic_chest(9), new_study("RCV-2")))
                == CANNOT_DELIVER
            )
        finally:
            down.stop()
    finally:
        receiver.stop()
    client = connect(orthanc.dicomweb)
    (sr_series,) = client.search_for_series(study.study_uid, search_filters={"Modality": "SR"})
    reports = [
        read_report(ds)
        for ds in client.retrieve_series(study.study_uid, sr_series["0020000E"]["Value"][0])
    ]
    said = {r.referenced_sop_uid: r for r in reports}
    assert said[lateral.SOPInstanceUID].finding == "Not screened"
    assert said[pa.SOPInstanceUID].finding in ("Normal", "Pneumonia")
    assert len(client.search_for_series(study.study_uid, search_filters={"Modality": "OT"})) == 1
    kept = {d.sop_uid: d for d in store.query(study=study.study_uid)}
    assert kept[pa.SOPInstanceUID].screened and not kept[lateral.SOPInstanceUID].screened
    assert all(d.surface == "pacs" for d in kept.values())
