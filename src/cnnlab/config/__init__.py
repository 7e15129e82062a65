"""Typed recipes: pydantic models loaded from YAML, checked strictly, overridable from the CLI.

A recipe is data, never code: unknown keys and wrong types are refused at load time with a
message that names the key, so a typo cannot silently fall back to a default. The keys, their
types, defaults and bounds are in sections.py (the README's reference is made from them by
reference.py); checks that span keys in checks.py; reading and writing in load.py.

The names load on first use (PEP 562): a module that needs only a bound (data.preprocess:
MAX_INPUT_PIXELS) does not import pydantic (a quarter of a second), so loading and running a
bundle never does.
"""

from __future__ import annotations

from cnnlab.lazy import lazy_exports

_NAMES = {
    "bounds": ["MAX_BATCH", "MAX_CUTOUT", "MAX_EPOCHS", "MAX_INPUT_PIXELS", "MAX_RANDOM_CROP",
               "MAX_SEED", "MAX_THREADS"],
    "sections": ["CALLBACKS", "AugmentConfig", "DataConfig", "DecisionConfig", "FinetuneConfig", "ModelConfig",
                 "Recipe", "TrainConfig"],
    "checks": ["check_augment", "check_recipe", "parse_rescale", "zoom_bounds"],
    "load": ["RECIPE_MAX_BYTES", "apply_override", "load_recipe", "recipe_from_dict",
             "save_recipe", "validate"],
}  # fmt: skip
_MODULE = {name: f"cnnlab.config.{module}" for module, names in _NAMES.items() for name in names}
lazy_exports(globals(), _MODULE)
