"""Reading, checking, overriding and writing recipes (the models are in sections.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cnnlab.config.messages import recipe_error
from cnnlab.config.sections import Recipe
from cnnlab.errors import CnnlabError
from cnnlab.fileio import MIB, read_capped
from cnnlab.strict import Refused, strict_yaml

RECIPE_MAX_BYTES = MIB  # a recipe is a page of YAML


def recipe_from_dict(raw: Any) -> Recipe:
    """A recipe from parsed YAML or JSON (a recipe file, bundle.json's copy), fully checked."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as e:
        raise recipe_error(e, Recipe) from None


def validate(recipe: Recipe) -> None:
    """Check a recipe built or changed in Python as loading it would (types, bounds, keys)."""
    recipe_from_dict(recipe.to_dict())


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe, apply `key=value` overrides (values parsed as YAML), check it."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"recipe not found: {path}")
    try:
        text = read_capped(path, RECIPE_MAX_BYTES).decode()
    except OSError as e:
        raise CnnlabError(f"recipe {path} cannot be read: {e}") from None
    except UnicodeDecodeError:
        raise CnnlabError(f"recipe {path} is not a text file") from None
    raw = strict_yaml(text, f"recipe {path}")
    if raw is None:  # an empty file must not silently train the defaults
        raise CnnlabError(
            f"recipe {path} is empty: write its sections (data, model, train, ...); see recipes/"
        )
    if not isinstance(raw, dict):
        raise CnnlabError(f"recipe {path} must be a mapping of sections (data, model, train, ...)")
    raw.setdefault("name", path.stem)
    for item in overrides or []:
        apply_override(raw, item)
    return recipe_from_dict(raw)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """`train.lr=0.01` or `model.args.width=64`: a dotted key and a YAML value."""
    if "=" not in item:
        raise CnnlabError(f"--set expects key=value, got {item!r}")
    key, _, text = item.partition("=")
    try:
        value = strict_yaml(text, f"--set {key.strip()}") if text.strip() else None
    except Refused:  # a bomb or a duplicate key, not merely text that is not YAML
        raise
    except CnnlabError:
        value = text
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise CnnlabError(f"--set expects key=value, got {item!r}")
    node = raw
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise CnnlabError(f"--set {key}: {p} is not a section")
        node = nxt
    node[parts[-1]] = value


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
