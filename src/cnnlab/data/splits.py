"""Validation splits: seeded, stratified, and optionally grouped so one patient stays in one split."""

from __future__ import annotations

import re

import numpy as np
import torch

from cnnlab.errors import CnnlabError

_PATIENT_PATTERNS = [
    re.compile(
        r"^(?:[A-Z]+\d*-)?IM-(\d+)-\d+", re.IGNORECASE
    ),  # IM-0115-0001, NORMAL2-IM-1427-0001
    re.compile(r"^person(\d+)_", re.IGNORECASE),  # person1000_bacteria_2931
]


def patient_id(path: str) -> str:
    """The patient a Kermany chest X-ray file name belongs to (falls back to the file stem)."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0]
    for pat in _PATIENT_PATTERNS:
        m = pat.match(name)
        if m:
            prefix = "person" if pat is _PATIENT_PATTERNS[1] else "im"
            return f"{prefix}{int(m.group(1))}"
    return stem


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int, groups: list[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_index, val_index): class proportions kept; with groups, no group in both."""
    n = len(labels)
    y = labels.numpy()
    if fraction <= 0:
        return torch.arange(n), torch.arange(0)
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split  # slow to import

    if groups is None:
        counts = np.bincount(y)
        stratify = y if counts[counts > 0].min() >= 2 else None
        try:
            tr, va = train_test_split(
                np.arange(n), test_size=fraction, random_state=seed, shuffle=True, stratify=stratify
            )
        except ValueError as e:
            raise CnnlabError(f"cannot hold out {fraction:.0%} for validation: {e}") from None
        return torch.from_numpy(np.sort(tr)), torch.from_numpy(np.sort(va))
    n_splits = max(2, round(1 / fraction))
    codes = np.unique(np.asarray(groups), return_inverse=True)[1]
    if len(np.unique(codes)) < n_splits:
        raise CnnlabError(
            f"only {len(np.unique(codes))} groups; too few for a {fraction:.0%} grouped split"
        )
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    tr, va = next(cv.split(np.zeros(n), y, codes))
    return torch.from_numpy(np.sort(tr)), torch.from_numpy(np.sort(va))
