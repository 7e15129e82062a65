"""What `summary` and `explain` look at: a bundle, a registered model, or a plain timm name.

A bundle brings its trained weights and its preprocessing; a model name is built fresh (no
download: `pretrained=False` unless asked) at its native input or the one given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from cnnlab.data.preprocess import Preprocess
from cnnlab.errors import CnnlabError


@dataclass
class Target:
    name: str
    model: nn.Module
    input_shape: tuple[int, int, int]  # (C, H, W)
    preprocess: Preprocess
    classes: list[str] | None = None  # from a bundle; None for a bare model
    bundle: object | None = None  # cnnlab.bundle.Bundle when loaded from one


def parse_input(text: str) -> tuple[int, int, int]:
    """'1x28x28' (C x H x W), '28x28' (H x W) or '28'; channels 0 means the model's own."""
    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        raise CnnlabError(f"--input must look like 1x28x28 (C x H x W), got {text!r}") from None
    if len(parts) > 3 or min(parts) < 1:
        raise CnnlabError(f"--input must be numbers >= 1 like 1x28x28 or 28x28, got {text!r}")
    if len(parts) == 1:
        parts = [parts[0], parts[0]]
    if len(parts) == 2:
        parts = [0, *parts]
    return (parts[0], parts[1], parts[2])


def load_target(
    ref: str,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    pretrained: bool = False,
) -> Target:
    """A bundle folder or shipped name, a registered model name, a recipe (name or file: its
    model, arguments and input size), or a timm model name; else the closest names."""
    from cnnlab.bundle.catalog import looks_like_bundle, shipped_bundles

    if looks_like_bundle(ref):
        return _from_bundle(ref, input_shape, num_classes)
    from cnnlab.models import get_entry
    from cnnlab.names import is_timm_name, model_names, resolve_model, unknown_model

    try:
        named = resolve_model(ref)
    except CnnlabError:
        raise unknown_model(ref, list(shipped_bundles())) from None
    if named.model not in model_names() and is_timm_name(named.model):
        target = _from_timm(named.model, input_shape, num_classes)
        if target is not None:
            return target
    entry = get_entry(named.model)
    args: dict = {}
    if named.recipe is not None:
        args, recipe_shape = _recipe_model(named.recipe, entry)
        input_shape = input_shape or recipe_shape
    return _from_registry(entry, input_shape, num_classes, pretrained, args)


def _recipe_model(path: Path, entry) -> tuple[dict, tuple[int, int, int] | None]:
    """A recipe's model arguments and the input its data gives the model."""
    from cnnlab.config import load_recipe

    recipe = load_recipe(path)
    data = recipe.data
    channels = {"grayscale": 1, "rgb": 3}.get(data.color_mode, entry.input_size[0])
    size = data.image_size
    shape = (channels, int(size[0]), int(size[1])) if size else None
    if shape is None and channels != entry.input_size[0]:
        shape = (channels, *entry.input_size[1:])
    return dict(recipe.model.args), shape


def _from_bundle(ref: str, input_shape, num_classes) -> Target:
    from cnnlab.bundle.loading import load_bundle

    if num_classes is not None:
        raise CnnlabError("--classes applies to model names; a bundle has its own classes")
    bundle = load_bundle(ref)
    pre = bundle.preprocess
    shape = _with_channels(input_shape, pre.channels) or (pre.channels, pre.size[0], pre.size[1])
    return Target(bundle.name, bundle.model, shape, pre, list(bundle.classes), bundle)


def _from_registry(entry, input_shape, num_classes, pretrained: bool, args=None) -> Target:
    from cnnlab.models import create_model

    valid = entry.arguments()
    kwargs: dict = dict(args or {})
    input_shape = _with_channels(input_shape, entry.input_size[0])
    shape = input_shape or tuple(entry.input_size)
    if input_shape is not None:
        if "input_size" in valid:
            kwargs["input_size"] = (shape[1], shape[2])
        for key in ("in_channels", "in_chans"):
            if key in valid:
                kwargs[key] = shape[0]
    if num_classes is not None:
        if num_classes < 1:
            raise CnnlabError(f"--classes must be at least 1, got {num_classes}")
        if "num_classes" not in valid:
            raise CnnlabError(f"model {entry.name} has no num_classes argument")
        kwargs["num_classes"] = num_classes
    if "pretrained" in valid:
        kwargs["pretrained"] = pretrained
    model = create_model(entry.name, **kwargs)
    return Target(entry.name, model, shape, _plain_preprocess(shape))  # type: ignore[arg-type]


def _from_timm(ref: str, input_shape, num_classes) -> Target | None:
    """A plain timm name (`resnet18`) when nothing in the registry claims it."""
    import timm

    name = ref.removeprefix("timm/")
    if not timm.is_model(name):
        return None
    kwargs: dict = {"pretrained": False}
    cfg_shape = timm.get_pretrained_cfg_value(name, "input_size") or (3, 224, 224)
    input_shape = _with_channels(input_shape, cfg_shape[0])
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if input_shape is not None:
        kwargs["in_chans"] = input_shape[0]
    try:
        model = timm.create_model(name, **kwargs)
    except (RuntimeError, ValueError, TypeError) as e:
        raise CnnlabError(f"cannot build timm model {name}: {e}") from None
    cfg = getattr(model, "pretrained_cfg", None) or {}
    shape = input_shape or tuple(cfg.get("input_size", (3, 224, 224)))
    pre = _plain_preprocess(shape, cfg.get("mean"), cfg.get("std"))
    return Target(ref, model, shape, pre)  # type: ignore[arg-type]


def _with_channels(shape, channels: int):
    """Fill in the model's own channel count where --input gave only H x W."""
    if shape is None or shape[0]:
        return shape
    return (int(channels), shape[1], shape[2])


def _plain_preprocess(shape, mean=None, std=None) -> Preprocess:
    """For a bare model: scale to 0-1 (or the library's own mean/std when it has them)."""
    c = shape[0]
    if mean is None or std is None or len(mean) != c:
        mean, std = [0.0] * c, [1.0] * c
    return Preprocess(c, [shape[1], shape[2]], list(mean), list(std), "stretch")
