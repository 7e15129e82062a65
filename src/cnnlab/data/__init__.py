"""Data: sources read into in-memory uint8 tensors, splits, preprocessing, augmentation.

The names below load on first use, so the readers' table (`cnnlab.data.readers`) can be read
without torch, as `cnnlab --help` does.
"""

from cnnlab.lazy import lazy_exports

_EXPORTS = {
    "ImageData": "cnnlab.data.dataset",
    "LoadedData": "cnnlab.data.dataset",
    "PreparedData": "cnnlab.data.prepare",
    "prepare_data": "cnnlab.data.prepare",
    "Preprocess": "cnnlab.data.preprocess",
    "load_source": "cnnlab.data.sources",
}

lazy_exports(globals(), _EXPORTS)
