"""Data: sources read into in-memory uint8 tensors, splits, preprocessing, augmentation.

The names below load on first use, so the readers' table (`cnnlab.data.readers`) can be read
without torch, as `cnnlab --help` does.
"""

from importlib import import_module

_EXPORTS = {
    "ImageData": "cnnlab.data.dataset",
    "LoadedData": "cnnlab.data.dataset",
    "PreparedData": "cnnlab.data.prepare",
    "prepare_data": "cnnlab.data.prepare",
    "Preprocess": "cnnlab.data.preprocess",
    "load_source": "cnnlab.data.sources",
}

__all__ = ["ImageData", "LoadedData", "PreparedData", "Preprocess", "load_source", "prepare_data"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cnnlab.data' has no attribute {name!r}")
