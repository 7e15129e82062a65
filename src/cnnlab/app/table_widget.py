"""Every table in the app: `report.tables.people_table` (titles, separators, blanks) in a
grid as wide as the page (not squeezed into a column beside a figure); one wider than the
window scrolls sideways with its first column pinned, instead of losing columns off the edge."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import streamlit as st

from cnnlab.report.tables import people_table, title


def show_table(rows: Iterable[Mapping[str, Any]], height: int | str = "auto", pin: bool = False,
               key: str | None = None):  # fmt: skip
    """A sortable grid; its data keeps the rows' keys (as the CSV has them), shown as titles.
    A missing value is blank (the grid would draw a grey "None" for it, whatever the Styler
    says). `pin`: the first column stays in view while a table wider than the page scrolls sideways
    (Streamlit greys a pinned column, so only where that can happen)."""
    rows = list(rows)
    if not rows:
        return None
    keys = list(dict.fromkeys(k for r in rows for k in r))
    config = {
        k: st.column_config.Column(title(k), pinned=(pin and i == 0) or None)
        for i, k in enumerate(keys)
    }
    return st.dataframe(people_table(rows, titled=False), hide_index=True, height=height,
                        width="stretch", column_config=config, placeholder="", key=key)  # fmt: skip


def static_table(rows: Iterable[Mapping[str, Any]]) -> None:
    """A short table printed whole, under titles, its long cells wrapped (nothing to scroll)."""
    st.table(people_table(rows), hide_index=True)
