"""Every decision on record (store.py: `Decision`, `DecisionStore`), built from what the
surfaces showed (entries.py: `decisions_from`); `cnnlab decisions` lists and exports them.

The names below load on first use: the store needs no torch, so `cnnlab decisions` starts fast.
"""

from importlib import import_module

_EXPORTS = {
    "Decision": "cnnlab.records.store",
    "DecisionStore": "cnnlab.records.store",
    "decisions_from": "cnnlab.records.entries",
    "sha256_of": "cnnlab.records.entries",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cnnlab.records' has no attribute {name!r}")
