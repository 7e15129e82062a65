"""Tables for people: titles instead of snake_case keys, counts with thousands separators (and
15.47 G once they pass a billion; mult-adds already from a million), blanks where there is
nothing. Every table the app shows goes through `people_table`, so a page cannot forget it.

The cells keep their numbers (a pandas Styler formats what is shown): sorting a column in the
app sorts by value, not by text."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

ACRONYMS = {"rf": "RF", "auc": "AUC", "ood": "OOD", "ece": "ECE", "cpu": "CPU", "fc": "FC",
            "ppv": "PPV", "npv": "NPV", "uid": "UID", "id": "ID", "ms": "ms", "cv": "CV"}  # fmt: skip
TITLES = {
    "mult_adds": "Mult-adds",
    "receptive_field": "RF",
    "top_k": "Top k",
    "conv/fc": "Conv/FC",
    "best val acc": "Best val acc",
}
KEY = re.compile(r"[A-Za-z][A-Za-z0-9_ ()%-]*")  # what a column key looks like (no / or .)
SI = ((10**12, "T"), (10**9, "G"), (10**6, "M"))
COUNTED_BIG = {"mult_adds", "macs", "flops"}  # compute counts: read in M and G, like torchinfo
BIG = 10**9  # other counts (parameters) stay exact up to a billion: 138,357,544
NOT_COUNTS = {"year", "epoch", "step", "port"}  # integers that are names, not amounts: 1998


def title(key: str) -> str:
    """'mult_adds' -> 'Mult-adds', 'receptive_field' -> 'RF', 'ood_distance' -> 'OOD distance'."""
    if key in TITLES:
        return TITLES[key]
    if not KEY.fullmatch(key):  # a name, not a key: a data set's 'chest_xray/external' stays
        return key
    words = [ACRONYMS.get(w.lower(), w) for w in key.replace("_", " ").split()]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def count_text(n: int, si_from: int = BIG) -> str:
    """6,018; 138,357,544; 15.47 G (from `si_from` on: M, G, T with two decimals)."""
    for size, unit in SI:
        if abs(n) >= max(size, si_from):
            return f"{n / size:.2f} {unit}"
    return f"{n:,}"


def cell_text(value: Any, si_from: int = BIG) -> str:
    """A cell as a person reads it: '' for None or NaN, yes/no, counts as `count_text`, floats
    to four significant digits (thousands separated), lists joined with '; '."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return count_text(value, si_from)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "; ".join(cell_text(v, si_from) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {cell_text(v, si_from)}" for k, v in value.items())
    text = str(value)
    return "" if text == "None" else text


def people_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The rows as text cells under titles (for a terminal, a CSV for people, or a test)."""
    return [{title(k): _cell(k, v) for k, v in r.items()} for r in rows]


def _cell(key: str, value: Any) -> str:
    if key in NOT_COUNTS and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return cell_text(value, 10**6 if key in COUNTED_BIG else BIG)


def people_table(rows: Iterable[Mapping[str, Any]], titled: bool = True):
    """A pandas Styler of the rows: cells shown as `cell_text`, their values kept; columns
    under their titles, or under their keys (`titled=False`: a grid that labels them itself
    keeps the keys, the names its CSV download and tests use)."""
    import pandas as pd

    rows = list(rows)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    names = [title(k) for k in keys] if titled else keys
    frame = pd.DataFrame([[r.get(k) for k in keys] for r in rows], columns=names, dtype=object)
    return frame.style.format({
        name: (lambda v, k=k: _cell(k, _plain(v))) for k, name in zip(keys, names, strict=True)
    })  # fmt: skip


def _plain(value: Any) -> Any:
    """numpy scalars (a DataFrame may hold them) as Python numbers."""
    return value.item() if hasattr(value, "item") and not isinstance(value, list | tuple) else value
