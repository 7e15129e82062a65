"""cnnlab: build, inspect, train, explain and deploy convolutional image classifiers.

The public API is imported on first use, so `cnnlab --help` and light commands start
without loading torch, scikit-learn and friends.
"""

from importlib import import_module

from cnnlab.version import __version__

_EXPORTS = {
    "Bundle": "cnnlab.bundle",
    "load_bundle": "cnnlab.bundle",
    "save_bundle": "cnnlab.bundle",
    "Recipe": "cnnlab.config",
    "load_recipe": "cnnlab.config",
    "ImageData": "cnnlab.data",
    "Preprocess": "cnnlab.data",
    "load_source": "cnnlab.data",
    "prepare_data": "cnnlab.data",
    "classification_report": "cnnlab.evaluate",
    "fit": "cnnlab.train",
    "CnnlabError": "cnnlab.errors",
    "create_model": "cnnlab.models",
    "list_models": "cnnlab.models",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
