"""Models built by name from a registry. Importing this package imports every module in it, so
a file dropped here registers its models (`@register_model`) without being listed anywhere."""

import pkgutil
from importlib import import_module

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


def _import_model_modules() -> None:
    """Every module of this package, in name order (`_private` ones are left to their users)."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            import_module(f"{__name__}.{module.name}")


_import_model_modules()
