"""Models built by name from a registry; importing this package registers them all."""

from cnnlab.models import cifar, classic, fast, transfer  # noqa: F401  (registration side effects)
from cnnlab.models.registry import (
    ModelEntry,
    count_params,
    create_model,
    get_entry,
    list_models,
    register_model,
    register_resolver,
)

__all__ = [
    "ModelEntry", "count_params", "create_model", "get_entry", "list_models", "register_model", "register_resolver",
]  # fmt: skip
