"""cnnlab: build, inspect, train, explain and deploy convolutional image classifiers."""

__version__ = "0.1.0"

from cnnlab.bundle import Bundle, load_bundle, save_bundle  # noqa: E402
from cnnlab.config import Recipe, load_recipe  # noqa: E402
from cnnlab.data import ImageData, Preprocess, load_source, prepare_data  # noqa: E402
from cnnlab.engine import classification_report, fit  # noqa: E402
from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.models import create_model, list_models  # noqa: E402

__all__ = [
    "Bundle", "CnnlabError", "ImageData", "Preprocess", "Recipe", "__version__", "classification_report",
    "create_model", "fit", "list_models", "load_bundle", "load_recipe", "load_source", "prepare_data", "save_bundle",
]  # fmt: skip
