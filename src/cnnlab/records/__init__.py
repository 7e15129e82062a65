"""Every decision on record (store.py: `Decision`, `DecisionStore`; claims.py: the studies the
PACS screeners claim), built from what the surfaces showed (entries.py: `decisions_from`);
`cnnlab decisions` lists and exports them, the app's Worklist shows them by risk.

The names below load on first use: the store needs no torch, so `cnnlab decisions` starts fast.
"""

from cnnlab.lazy import lazy_exports

_EXPORTS = {
    "Decision": "cnnlab.records.store",
    "DecisionStore": "cnnlab.records.store",
    "decisions_from": "cnnlab.records.entries",
    "sha256_of": "cnnlab.records.entries",
}

lazy_exports(globals(), _EXPORTS)
