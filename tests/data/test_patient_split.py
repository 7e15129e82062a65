"""The patient-grouped validation split on the real chest X-ray file names: every name yields
a patient, no patient lands on both sides, and the class balance is kept."""

from __future__ import annotations

import torch

from cnnlab.data.splits import patient_id, stratified_split
from tests.conftest import shared_path


def test_patient_split_on_the_real_file_names() -> None:
    root = shared_path("chest_xray", "train")
    names, labels = [], []
    for k, cls in enumerate(("NORMAL", "PNEUMONIA")):
        files = sorted(p.name for p in (root / cls).iterdir())
        names += files
        labels += [k] * len(files)
    ids = [patient_id(n) for n in names]
    stems = {n.rsplit(".", 1)[0] for n in names}
    assert not any(i in stems for i in ids)  # no name fell back to its own stem
    assert len(set(ids)) < len(names)  # several images per patient exist: grouping matters
    y = torch.tensor(labels)
    tr, va = stratified_split(y, 0.1, 0, ids)
    assert not {ids[i] for i in tr.tolist()} & {ids[i] for i in va.tolist()}
    assert 0.08 < len(va) / len(y) < 0.12
    share = lambda idx: float(y[idx].float().mean())  # noqa: E731
    assert abs(share(va) - share(torch.arange(len(y)))) < 0.03  # stratified
