"""Figures per subgroup (`--by FIELD`): a model can be good on average and poor for one view,
sex, age band or scanner. Groups come from each image's DICOM tags, or from a metadata CSV
(`--meta FILE.csv`: a `file` column and one column per field) for other formats.

A group with fewer than MIN_TO_JUDGE positives or negatives gets a plain warning: its
sensitivity (or specificity) rests on too few images to judge (a 95% interval wider than
about +-0.1 at 0.9).
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.evaluate.medical import binary_metrics, bootstrap_intervals

MIN_TO_JUDGE = 30
AGE_FIELD = "age_band"  # from DICOM PatientAge (or a CSV's `age` in years)
AGE_BANDS = ((18, "0-17"), (40, "18-39"), (65, "40-64"), (10**9, "65+"))
UNKNOWN = "unknown"
SHOWN = ("auc", "sensitivity", "specificity")


def age_band(years: float | None) -> str:
    if years is None or not np.isfinite(years):
        return UNKNOWN
    return next(name for upper, name in AGE_BANDS if years < upper)


def dicom_age_years(value: str) -> float | None:
    """DICOM's age string (AS): '045Y', '006M', '003W', '010D' -> years."""
    value = str(value or "").strip().upper()
    per_year = {"Y": 1, "M": 12, "W": 52.18, "D": 365.25}
    if len(value) >= 2 and value[-1] in per_year and value[:-1].isdigit():
        return int(value[:-1]) / per_year[value[-1]]
    return None


def _dicom_value(path: str, field: str) -> str:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError):
        raise CnnlabError(f"--by {field} reads DICOM tags, and {path} is not a DICOM file: give "
                          "the groups in a CSV with --meta FILE.csv (columns file, "
                          f"{field})") from None  # fmt: skip
    if field == AGE_FIELD:
        return age_band(dicom_age_years(ds.get("PatientAge", "")))
    value = ds.get(field)
    return str(value).strip() or UNKNOWN if value is not None else UNKNOWN


def _check_field(field: str) -> None:
    if field == AGE_FIELD:
        return
    from pydicom.datadict import keyword_dict

    if field not in keyword_dict:
        raise CnnlabError(f"--by {field} is not a DICOM keyword (e.g. ViewPosition, PatientSex, "
                          f"Manufacturer) nor {AGE_FIELD}; for other fields give --meta "
                          "FILE.csv")  # fmt: skip


def _csv_values(paths: list[str], field: str, meta: str | Path) -> list[str]:
    """Each image's `field` from the CSV row whose `file` is its path, its path inside the data
    folder (class/name.png) or its file name."""
    from cnnlab.fileio import read_capped

    try:
        text = read_capped(meta).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise CnnlabError(f"--meta {meta}: {e}") from None
    rows = list(csv.DictReader(text.splitlines()))
    columns = set(rows[0]) if rows else set()
    want = "age" if field == AGE_FIELD and field not in columns else field
    missing = [c for c in ("file", want) if c not in columns]
    if missing:
        raise CnnlabError(f"{meta} has no column {', '.join(missing)} (it has: "
                          f"{', '.join(sorted(columns)) or 'no rows'})")  # fmt: skip
    table = {str(PurePosixPath(r["file"].strip().replace("\\", "/"))): r[want] for r in rows}
    out = []
    for path in paths:
        parts = PurePosixPath(path.replace("\\", "/")).parts
        tails = ["/".join(parts[-k:]) for k in range(len(parts), 0, -1)]
        value = next((table[t] for t in tails if t in table), None)
        if want == "age":
            try:
                value = age_band(float(value)) if value not in (None, "") else UNKNOWN
            except ValueError:
                raise CnnlabError(f"{meta}: age {value!r} is not a number of years") from None
        out.append(str(value).strip() if value not in (None, "") else UNKNOWN)
    return out


def group_of_each(paths: list[str] | None, field: str, meta: str | Path | None = None) -> list[str]:
    """Each image's group: its DICOM tag `field` (or age band), or the CSV's column."""
    if not paths:
        raise CnnlabError("--by needs image files (a folder): this data has no file per image")
    if meta is not None:
        return _csv_values(paths, field, meta)
    _check_field(field)
    return [_dicom_value(p, field) for p in paths]


def subgroup_figures(
    p: np.ndarray,
    y: np.ndarray,
    threshold: float,
    groups: list[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Per group (largest first): n, positives, negatives, AUC, sensitivity and specificity with
    stratified bootstrap 95% intervals, and a `warning` when a class has too few images."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y).astype(int)
    labels = np.asarray(groups, dtype=object)
    out = []
    for name in sorted(set(groups), key=lambda g: (-int((labels == g).sum()), g)):
        m = labels == name
        pos, neg = int(y[m].sum()), int((1 - y[m]).sum())
        point = binary_metrics(p[m], y[m], threshold)
        ci = bootstrap_intervals(p[m], y[m], threshold, n_boot, seed, stratified=True)
        row: dict[str, Any] = {"group": name, "n": int(m.sum()), "positives": pos, "negatives": neg}
        for key in SHOWN:
            row[key], row[f"{key}_ci"] = point[key], ci[key]
        few = [f"{n} {what}" for n, what in ((pos, "positives"), (neg, "negatives"))
               if n < MIN_TO_JUDGE]  # fmt: skip
        if few:
            row["warning"] = (f"{name}: only {' and '.join(few)} (fewer than {MIN_TO_JUDGE}); "
                              "too few to judge its figures")  # fmt: skip
        out.append(row)
    return out


def format_subgroups(field: str, rows: list[dict[str, Any]], indent: str = "") -> list[str]:
    width = max(len("group"), *(len(r["group"]) for r in rows)) + 2
    lines = [f"{indent}by {field}:",
             f"{indent}  {'group':<{width}}{'n':>5}{'pos':>5}{'neg':>5}   "
             f"{'AUC (95% CI)':<22}{'sensitivity':<22}specificity"]  # fmt: skip
    for r in rows:
        cells = []
        for key in SHOWN:
            v, (lo, hi) = r[key], r[f"{key}_ci"]
            cells.append("-" if v != v else f"{v:.3f} ({lo:.3f}-{hi:.3f})")
        lines.append(f"{indent}  {r['group']:<{width}}{r['n']:>5}{r['positives']:>5}"
                     f"{r['negatives']:>5}   {cells[0]:<22}{cells[1]:<22}{cells[2]}")  # fmt: skip
    lines += [f"{indent}  warning: {r['warning']}" for r in rows if r.get("warning")]
    return lines
