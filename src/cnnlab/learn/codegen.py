"""`cnnlab code MODEL|RECIPE|BUNDLE`: a complete script to copy, in PyTorch or Keras.

What goes in: the model as the list of its layers (`plain_layers`), the data and training
settings of a recipe (a recipe file, a bundle's saved recipe, or for a bare model name the
settings its native input suggests). The script needs only its framework, numpy and Pillow.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.config import Recipe, load_recipe, recipe_from_dict
from cnnlab.errors import CnnlabError
from cnnlab.learn.plain_layers import NotPlain, PlainModel, plain_layers

FRAMEWORKS = ("pytorch", "keras", "streamlit")


@dataclass
class CodeSource:
    ref: str  # what the user named
    what: str  # "recipe recipes/x.yaml", "bundle runs/x", "model keras_mnist_cnn"
    recipe: Recipe
    model_name: str
    model_args: dict[str, Any]  # as create_model takes them, channels/size/outputs filled in
    channels: int
    size: tuple[int, int]
    num_outputs: int
    params: int  # cnnlab's count, what `cnnlab summary` prints
    plain: PlainModel | None  # None: not a plain stack of layers (see `why_not_plain`)
    why_not_plain: str = ""

    @property
    def binary(self) -> bool:
        return self.num_outputs == 1


def _default_recipe(model: str, channels: int, size: tuple[int, int], outputs: int) -> Recipe:
    """Settings for a bare model name: the classic dataset of its native input, Adam 1e-3."""
    source = {(1, 28): "mnist", (3, 32): "cifar10"}.get((channels, size[0]), "data")
    raw: dict[str, Any] = {
        "name": model, "data": {"source": source, "normalize": "unit"},
        "model": {"name": model}, "train": {"optimizer": "adam", "lr": 0.001, "batch_size": 64,
                                              "epochs": 10},
    }  # fmt: skip
    if source == "data":
        raw["data"].update(
            image_size=list(size), color_mode="grayscale" if channels == 1 else "rgb"
        )
        if outputs == 1:
            raw["data"]["class_mode"] = "binary"
    return recipe_from_dict(raw)


def _channels(recipe: Recipe, native: int) -> int:
    return {"grayscale": 1, "rgb": 3}.get(recipe.data.color_mode, native)


def brief_recipe(model: str) -> Path | None:
    """The one recipe that trains `model` as it comes (no model.args), e.g. the brief's
    recipes/mnist_torch_net.yaml for torch_mnist_net: its normalisation ([-1, 1]), batch and
    optimiser are the brief's, which a generic default would not be. None when none or several
    (fastnet is trained by many recipes, each its own way)."""
    from cnnlab.names import recipe_model, recipe_paths

    found = []
    for path in recipe_paths().values():
        if recipe_model(path) == model and not load_recipe(path).model.args:
            found.append(path)
    return found[0] if len(found) == 1 else None


def code_source(ref: str) -> CodeSource:
    """A recipe file, a bundle (folder or shipped name) or a model name, resolved for the generators."""
    from cnnlab.bundle.catalog import looks_like_bundle
    from cnnlab.models import create_model, get_entry
    from cnnlab.names import resolve_model

    path = shown = Path(ref)
    bundle_model = None
    if not looks_like_bundle(ref) and path.suffix.lower() not in (".yaml", ".yml"):
        named = resolve_model(ref)  # a recipe's name stands for the recipe: its data, its model
        recipe_file = named.recipe or brief_recipe(named.model)
        if recipe_file is not None:
            path, shown = recipe_file, Path("recipes", recipe_file.name)
    if path.suffix.lower() in (".yaml", ".yml"):
        recipe = load_recipe(path)
        entry = get_entry(recipe.model.name)
        channels = _channels(recipe, entry.input_size[0])
        size = tuple(recipe.data.image_size or entry.input_size[1:])
        outputs = 1 if recipe.data.class_mode == "binary" else entry.num_classes
        what = f"recipe {shown.as_posix()}"
        args = dict(recipe.model.args)
    elif looks_like_bundle(ref):
        from cnnlab.bundle.loading import load_bundle

        bundle = load_bundle(ref)
        meta = bundle.meta
        pre = bundle.preprocess
        channels, size = pre.channels, (pre.size[0], pre.size[1])
        outputs = 1 if bundle.binary else len(bundle.classes)
        try:
            recipe = recipe_from_dict(dict(meta.get("recipe") or {}))
        except CnnlabError:
            recipe = _default_recipe(meta["model"]["name"], channels, size, outputs)
        entry = get_entry(meta["model"]["name"])
        args = dict(meta["model"].get("args") or {})
        what, bundle_model = f"bundle {ref}", bundle.model
    else:
        entry = get_entry(ref)
        channels, size = entry.input_size[0], tuple(entry.input_size[1:])
        outputs = entry.num_classes
        recipe = _default_recipe(entry.name, channels, size, outputs)
        what, args = f"model {ref}", {}
    valid = entry.arguments()
    for key, value in (("in_channels", channels), ("num_classes", outputs),
                       ("input_size", [size[0], size[1]])):  # fmt: skip
        if key in valid and key not in args:
            args[key] = value
    if "pretrained" in valid:
        args["pretrained"] = False  # the script loads pretrained weights itself
    if bundle_model is not None:
        model = bundle_model
    else:
        try:
            with torch.device("meta"):
                model = create_model(entry.name, **args)
        except Exception:  # noqa: BLE001 - a model meta cannot build is built for real
            model = create_model(entry.name, **args)
    params = sum(p.numel() for p in model.parameters())
    try:
        plain, why = plain_layers(model, (channels, *size), entry.name), ""  # type: ignore[arg-type]
    except NotPlain as e:
        plain, why = None, str(e)
    return CodeSource(ref, what, recipe, entry.name, args, channels, size, outputs, params,  # type: ignore[arg-type]
                      plain, why)  # fmt: skip


def generate_code(ref: str, framework: str = "pytorch") -> str:
    """The script's text; a model Keras cannot express as a Sequential is a CnnlabError saying why."""
    if framework not in FRAMEWORKS:
        raise CnnlabError(f"--framework must be one of {', '.join(FRAMEWORKS)}, not {framework!r}")
    if framework == "streamlit":
        return _checked(_streamlit(ref))
    source = code_source(ref)
    if framework == "keras":
        from cnnlab.learn.code_keras import keras_script

        text = keras_script(source)
    else:
        from cnnlab.learn.code_pytorch import pytorch_script

        text = pytorch_script(source)
    return _checked(text)


def _streamlit(ref: str) -> str:
    """app.py for a bundle, or for the bundle a recipe's training writes (runs/<recipe>)."""
    from cnnlab.bundle.catalog import looks_like_bundle
    from cnnlab.learn.code_streamlit import streamlit_app
    from cnnlab.names import recipe_paths, resolve_model

    if looks_like_bundle(ref):
        from cnnlab.bundle.loading import load_bundle

        bundle = load_bundle(ref)
        recipe = str((bundle.meta.get("recipe") or {}).get("name") or "RECIPE")
        return streamlit_app(ref, bundle.name, f"cnnlab train {recipe} --out {ref}")
    path = shown = Path(ref)
    if path.suffix.lower() not in (".yaml", ".yml"):
        named = resolve_model(ref)
        if named.recipe is None or ref not in recipe_paths():
            raise CnnlabError(
                f"a Streamlit app needs a trained model: give a bundle or a recipe, not the "
                f"model {ref!r} (e.g. cnnlab code chest_xray_brief --framework streamlit)"
            )
        path, shown = named.recipe, Path("recipes", named.recipe.name)
    name = load_recipe(path).name
    out = f"runs/{name}"
    return streamlit_app(out, name, f"cnnlab train {shown.as_posix()} --out {out}")


def _checked(text: str) -> str:
    try:  # values are literals (code_text); a script that does not parse is never handed out
        ast.parse(text)
    except SyntaxError as e:  # pragma: no cover - a bug in the generators, not in the input
        raise CnnlabError(f"cnnlab code wrote a script that does not parse ({e}); a bug") from None
    return text
