"""The Classify page with a bundle that declares what it accepts: a DICOM lateral view is "not
screened" with the reason (no label, no picture), and the table keeps each DICOM input's
identifiers, as the CLI and the API do."""

from __future__ import annotations

import shutil

from cnnlab.bundle.save import update_bundle_meta
from tests.pacs.studies import chest_dicom, dicom_file_bytes, new_study, synthetic_chest


def test_a_lateral_view_is_not_screened_in_the_app(app_env, app_bundle, tmp_path):
    chest = tmp_path / "chest"
    shutil.copytree(app_bundle, chest)
    update_bundle_meta(chest, accepts={"modality": ["CR", "DX"], "view": ["PA", "AP"]})
    study = new_study("ACC-APP")
    pa, lateral = (
        chest_dicom(synthetic_chest(1), study),
        chest_dicom(synthetic_chest(2), study, view="LL"),
    )
    at = app_env(chest).run()
    files = [("pa.dcm", dicom_file_bytes(pa), "application/dicom"),
             ("lateral.dcm", dicom_file_bytes(lateral), "application/dicom")]  # fmt: skip
    at.file_uploader(key="classify_files").set_value(files).run()
    assert not at.exception, at.exception
    refused = [w.value for w in at.warning if "Not screened" in w.value]
    assert refused == ["**lateral.dcm**: Not screened: a left lateral view (ViewPosition LL); "
                       "this model reads PA/AP views only"]  # fmt: skip
    assert len(at.image) == 1  # only the screened image is shown as the model saw it
    table = at.dataframe[0].value
    assert list(table["screened"]) == [True, False]
    assert list(table["sop_uid"]) == [pa.SOPInstanceUID, lateral.SOPInstanceUID]
    assert list(table["accession"]) == ["ACC-APP", "ACC-APP"]
    assert table["label"].isna()[1] and table["reason"][1].startswith("a left lateral view")
