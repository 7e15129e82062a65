"""The names a user types (models, recipes, timm architectures), checked before torch loads.

A typo must be answered at once with the closest names, not after the 5 seconds that importing
torch, torchvision and timm take. So the registry's table (names, families, parameter counts)
and timm's architecture names are read from `names.json`, an index generated from the real
registry (`python -m cnnlab.names` rewrites it; tests/test_names.py checks it is current). The
index is trusted only while the model sources and timm's version are the ones it was built
from; otherwise (a model file edited or dropped into models/) the table is rebuilt once from
the registry and kept under $CNNLAB_DATA/index/, keyed by cnnlab's version, the sources' hash
and timm's version, so a new version never reads an old table.

A recipe's name stands for its model: `mnist_keras_cnn` (recipes/mnist_keras_cnn.yaml) means
`keras_mnist_cnn`. Recipes are read from ./recipes and from the checkout cnnlab runs from.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.version import __version__

INDEX = Path(__file__).with_name("names.json")
MODELS_DIR = Path(__file__).with_name("models")
CHECKOUT_RECIPES = Path(__file__).resolve().parents[2] / "recipes"  # a source checkout's
PREFIXES = ("timm/", "torchvision/")  # any classifier of either library (models/transfer.py)


def models_fingerprint() -> str:
    """What the registry's table depends on: the model sources, and timm's version (the
    EfficientNet-Lite counts come from timm's builders)."""
    digest = hashlib.sha256(_timm_version().encode())
    for path in sorted(MODELS_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _timm_version() -> str:
    try:
        return metadata.version("timm")
    except metadata.PackageNotFoundError:
        return "none"


def build_index() -> dict[str, Any]:
    """The index from the real registry and timm (imports torch: seconds)."""
    import timm
    import torch

    from cnnlab.models import count_params, list_models
    from cnnlab.models.registry import meta_model

    rows = []
    for entry in list_models():
        with torch.device("meta"):
            model = meta_model(entry, {})
        rows.append({
            "name": entry.name, "family": entry.family,
            "params": count_params(model) if model is not None else None,
            "input": "x".join(map(str, entry.input_size)), "classes": entry.num_classes,
            "description": entry.description,
        })  # fmt: skip
    return {
        "fingerprint": models_fingerprint(),
        "models": rows,
        "timm": sorted(timm.list_models()),
    }


def _cached_index_path() -> Path:
    from cnnlab.data.download import cache_dir

    return cache_dir() / "index" / f"names-{__version__}-{models_fingerprint()}.json"


@cache
def index() -> dict[str, Any]:
    """The shipped index when it describes these sources, else the cached one, else built."""
    fingerprint = models_fingerprint()
    for path in (INDEX, _cached_index_path()):
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(found, dict) and found.get("fingerprint") == fingerprint:
            return found
    built = build_index()
    try:
        from cnnlab.fileio import atomic_write_text

        atomic_write_text(_cached_index_path(), json.dumps(built))
    except OSError:  # a read-only cache folder: correct, only slower next time
        pass
    return built


def model_table() -> list[dict[str, Any]]:
    return list(index()["models"])


def model_names() -> list[str]:
    return [row["name"] for row in index()["models"]]


def recipe_paths() -> dict[str, Path]:
    """Recipe name -> file: ./recipes first (the user's own), then the checkout's."""
    found: dict[str, Path] = {}
    for folder in (Path("recipes"), CHECKOUT_RECIPES):
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                found.setdefault(path.stem, path)
    return found


def recipe_model(path: Path) -> str | None:
    """The model a recipe trains, read without checking the rest (that is load_recipe's job)."""
    from cnnlab.strict import strict_yaml

    try:
        raw = strict_yaml(path.read_text()[:1_000_000], f"recipe {path}")
        name = raw["model"]["name"]
    except (OSError, CnnlabError, KeyError, TypeError, UnicodeDecodeError):
        return None
    return name if isinstance(name, str) else None


@dataclass(frozen=True)
class ModelRef:
    """What a typed name stands for: a registry (or timm) model, and the recipe it came from."""

    model: str
    recipe: Path | None = None


def resolve_model(ref: str) -> ModelRef:
    """A registry name, timm/torchvision name, or recipe name (or file) -> the model it means;
    anything else a CnnlabError naming the closest names. Bundles are the caller's to try first."""
    path = Path(ref)
    if path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        model = recipe_model(path)
        if model is None:
            raise CnnlabError(f"recipe {ref} names no model (model.name)")
        return ModelRef(model, path)
    if ref in model_names() or ref.startswith(PREFIXES):
        return ModelRef(ref)
    if is_timm_name(ref):
        return ModelRef(ref)
    recipe = recipe_paths().get(ref)
    if recipe is not None and (model := recipe_model(recipe)) is not None:
        return ModelRef(model, recipe)
    raise unknown_model(ref)


@cache
def _timm_set() -> set[str]:
    return set(index()["timm"])


def is_timm_name(ref: str) -> bool:
    """timm's architectures, a pretrained tag (`resnet18.a1_in1k`) counting as its architecture."""
    return ref.partition(".")[0] in _timm_set()


def closest(name: str, candidates: list[str], n: int = 3) -> list[str]:
    """difflib's closest names, case ignored; a name containing the typed one counts too."""
    lowered = {c.lower(): c for c in candidates}
    near = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    if not near:
        near = [c for c in lowered if name.lower() in c][:n]
    return [lowered[c] for c in near]


def did_you_mean(name: str, candidates: list[str]) -> str:
    near = closest(name, candidates)
    return f" (did you mean {', '.join(near)}?)" if near else ""


def unknown_model(ref: str, extra: list[str] | None = None) -> CnnlabError:
    """The error for a name nothing claims: cnnlab's models, recipes and `extra` (shipped
    bundles) first; timm's architectures only when none of those is close."""
    ours = model_names() + list(recipe_paths()) + list(extra or [])
    hint = did_you_mean(ref, ours) or did_you_mean(ref, sorted(_timm_set()))
    what = "no model, recipe or timm architecture of that name"
    lead = (
        f"no bundle at {ref} and {what}"
        if ("/" in ref or os.sep in ref)
        else (f"unknown model {ref!r}: {what}")
    )
    return CnnlabError(f"{lead}{hint}; `cnnlab models` lists cnnlab's, `ls recipes/` the recipes")


def derived_path(kind: str, *parts: str | bytes, sources: tuple[Path, ...] = ()) -> Path:
    """Where something computed from the model sources alone is kept (`cnnlab summary`'s output
    for a model name): keyed by cnnlab's version, the models' fingerprint, the sources that
    compute it and `parts`, so an edited model or a new version never reads an old answer."""
    from cnnlab.data.download import cache_dir

    digest = hashlib.sha256(f"{__version__}\0{models_fingerprint()}\0".encode())
    for folder in sources:
        for path in sorted(folder.glob("*.py")):
            digest.update(path.read_bytes() + b"\0")
    for part in parts:
        digest.update((part.encode() if isinstance(part, str) else part) + b"\0")
    return cache_dir() / "index" / f"{kind}-{digest.hexdigest()[:24]}.json"


def write_index(path: Path = INDEX) -> None:
    """Regenerate the shipped index (run after changing a model or upgrading timm)."""
    path.write_text(json.dumps(build_index(), indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    write_index()
    print(f"wrote {INDEX}")
