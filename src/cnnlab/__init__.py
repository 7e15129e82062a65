"""cnnlab: build, inspect, train, explain and deploy convolutional image classifiers.

The public API is imported on first use, so `cnnlab --help` and light commands start
without loading torch, scikit-learn and friends.
"""

from cnnlab.lazy import lazy_exports
from cnnlab.version import __version__ as __version__

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

lazy_exports(globals(), _EXPORTS, eager=("__version__",))
