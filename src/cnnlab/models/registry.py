"""Models by name: a decorator registers each builder; `create_model` checks arguments early.

Unlike timm, an unknown keyword is refused at once with the list of valid ones, instead of
surfacing as "unexpected keyword argument" deep inside a constructor.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError


@dataclass
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    input_size: tuple[int, int, int]  # native (C, H, W)
    num_classes: int  # native number of outputs
    family: str = "cnnlab"
    meta: dict[str, Any] = field(default_factory=dict)  # year, headline result, ...

    def arguments(self) -> dict[str, Any]:
        """Valid keyword arguments and their defaults."""
        sig = inspect.signature(self.builder)
        return {
            k: p.default
            for k, p in sig.parameters.items()
            if p.kind == p.KEYWORD_ONLY or p.default is not p.empty
        }


_REGISTRY: dict[str, ModelEntry] = {}
_RESOLVERS: list[Callable[[str], ModelEntry | None]] = []  # e.g. timm/torchvision backbones by name


def register_model(
    name: str | None = None,
    *,
    input_size: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
    family: str = "cnnlab",
    **meta: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        _refuse_taken(key, fn)
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[key] = ModelEntry(
            key, fn, doc[0] if doc else "", input_size, num_classes, family, meta
        )
        return fn

    return wrap


def _where(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _refuse_taken(name: str, fn: Callable[..., nn.Module]) -> None:
    """A name means one model: a second builder under it would silently replace the first (a
    bundle trained on one would load into the other), as would a name a resolver answers. The
    same builder registered again (its module reloaded) replaces itself."""
    taken = _REGISTRY.get(name)
    if taken is not None and _where(taken.builder) != _where(fn):
        raise CnnlabError(
            f"model name {name!r} is taken: {_where(taken.builder)} registered it before "
            f"{_where(fn)}; give one of them another name (register_model(name=...))"
        )
    for resolve in _RESOLVERS:
        if resolve(name) is not None:
            raise CnnlabError(
                f"model name {name!r} is a name {resolve.__module__}.{resolve.__qualname__} "
                f"resolves; {_where(fn)} needs a name without its prefix"
            )


def register_resolver(fn: Callable[[str], ModelEntry | None]) -> None:
    """A resolver turns names outside the registry (say `timm/resnet18`) into entries."""
    shadowed = [name for name in _REGISTRY if fn(name) is not None]
    if shadowed:
        raise CnnlabError(
            f"{_where(fn)} resolves {shadowed[0]!r}, which "
            f"{_where(_REGISTRY[shadowed[0]].builder)} registered: one name, one model"
        )
    _RESOLVERS[:] = [r for r in _RESOLVERS if _where(r) != _where(fn)] + [fn]  # a reload: once


def get_entry(name: str) -> ModelEntry:
    if name in _REGISTRY:
        return _REGISTRY[name]
    for resolve in _RESOLVERS:
        entry = resolve(name)
        if entry is not None:
            return entry
    close = [n for n in _REGISTRY if name.lower() in n.lower() or n.lower() in name.lower()]
    hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
    raise CnnlabError(f"unknown model {name!r}{hint}; run `cnnlab models` for the list")


def list_models() -> list[ModelEntry]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; unknown arguments are refused with the valid ones listed."""
    entry = get_entry(name)
    valid = entry.arguments()
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        listing = ", ".join(f"{k}={v!r}" for k, v in valid.items())
        raise CnnlabError(
            f"model {name} has no argument {unknown[0]!r}; valid arguments: {listing}"
        )
    _check_size(entry, kwargs)
    try:
        model = entry.builder(**kwargs)
    except (ValueError, TypeError, RuntimeError) as e:
        raise CnnlabError(f"cannot build {name} with {str(kwargs)[:300]}: {e}") from None
    model.cnnlab_name = name  # type: ignore[assignment]
    return model


def meta_model(entry: ModelEntry, kwargs: dict[str, Any]) -> nn.Module | None:
    """`entry` built with `kwargs` on the meta device, without pretrained weights and without
    touching the random generators; None if the builder cannot run there (then no estimate)."""
    if "pretrained" in entry.arguments():
        kwargs = {**kwargs, "pretrained": False}
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            return entry.builder(**kwargs)
    except Exception:  # noqa: BLE001 - the real build reports a builder's own errors
        return None


MAX_PARAMS = 1_000_000_000  # 4 GB of float32 weights, 7x VGG-16: past what cnnlab trains or serves


def _check_size(entry: ModelEntry, kwargs: dict[str, Any]) -> None:
    """Refuse a model over `MAX_PARAMS` from its meta-device build, before any allocation:
    `input_size: [4096, 4096]` gave keras_mnist_cnn a 34 GB dense layer."""
    model = meta_model(entry, kwargs)
    params = sum(p.numel() for p in model.parameters()) if model is not None else 0
    if params > MAX_PARAMS:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "its defaults"
        raise CnnlabError(
            f"{entry.name} ({args[:200]}) would have {params / 1e6:,.0f} M parameters "
            f"({params * 4 / 1e9:.1f} GB); cnnlab builds at most {MAX_PARAMS / 1e6:,.0f} M: a "
            "smaller input size (data.image_size), fewer classes or smaller model arguments"
        )


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
