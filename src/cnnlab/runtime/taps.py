"""Reading inside a shared model during one call: forward hooks that act for their caller only.

A loaded bundle's model is shared by every app session and API thread, and a hook registered on
a module fires in every thread's forward pass, so hooks writing into the caller's dict mixed
concurrent callers' features (4 threads predicting 40 X-rays: 25 wrong OOD distances). Here
each `with tapped(...)` block gets a key that is active only in its own context (a ContextVar:
its thread, or its asyncio task); its hooks run in the forward passes of that context and
return at once anywhere else. Nothing is locked and the model's state is never changed, so
callers run in parallel. Every capture in cnnlab (OOD features, Grad-CAM, feature maps, the
receptive-field gradient, the summary) goes through this module, and so does running a
shared model in eval mode without switching it (`evaluating`).

Why hooks and not an FX graph returning the named nodes (torchvision's
`create_feature_extractor`): it switches the model it traces to train and back to eval (a
shared model's BatchNorm and Dropout would flip under concurrent callers), tracing fails on
some timm and torchvision models, and it cannot say "the 2nd call of a reused module" (names
like `layer1.0.relu#2`), stop a pass once a layer has run, or take only the first of a
test-time-augmented model's views. Hooks see every eager model as it runs.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError

PreHook = Callable[[nn.Module, tuple], Any]  # (module, args): its return value is ignored
PostHook = Callable[[nn.Module, tuple, Any], Any]  # (module, args, output): not None replaces it

# the keys of the `tapped` blocks open in this context; a hook whose key is absent does nothing
_OPEN: contextvars.ContextVar[frozenset[object]] = contextvars.ContextVar(
    "cnnlab_taps", default=frozenset()
)


@contextmanager
def tapped(
    pre: Iterable[tuple[nn.Module, PreHook]] = (),
    post: Iterable[tuple[nn.Module, PostHook]] = (),
) -> Iterator[None]:
    """While the block runs, each `pre` hook runs before its module's forward and each `post`
    hook after it, in this thread or task's forward passes only; what a `post` hook returns (if
    not None) replaces the module's output downstream, as with `register_forward_hook`."""
    key = object()

    def only_here(fn: Callable) -> Callable:
        def hook(*args: Any) -> Any:
            return fn(*args) if key in _OPEN.get() else None

        return hook

    token = _OPEN.set(_OPEN.get() | {key})
    handles = []
    try:
        handles += [m.register_forward_pre_hook(only_here(fn)) for m, fn in pre]
        handles += [m.register_forward_hook(only_here(fn)) for m, fn in post]
        yield
    finally:
        for h in handles:
            h.remove()
        _OPEN.reset(token)


def split_name(name: str) -> tuple[str, int]:
    """'layer1.0.relu#2' -> ('layer1.0.relu', 2): the module's path and which of its calls."""
    path, _, call = name.partition("#")
    return path, int(call) if call else 1


@contextmanager
def hooked(
    model: nn.Module,
    names: list[str],
    on_output: Callable[[str, torch.Tensor], torch.Tensor | None],
    inputs: bool = False,
) -> Iterator[None]:
    """While active, `on_output(name, tensor)` runs for each named layer call of this context's
    forward passes ("path" is a module's first call, "path#2" its second); the tensor is the
    layer's output (what `on_output` returns, if anything, replaces it downstream), or with
    `inputs` its first input. Calls are counted from the block's start."""
    modules = dict(model.named_modules())
    wanted: dict[str, dict[int, str]] = {}
    for name in names:
        path, call = split_name(name)
        if path not in modules:
            raise CnnlabError(f"no layer {name!r} in this model")
        wanted.setdefault(path, {})[call] = name
    counts: dict[str, int] = {}

    def seen(path: str, tensor: Any) -> torch.Tensor | None:
        counts[path] = counts.get(path, 0) + 1
        name = wanted[path].get(counts[path])
        if name is not None and isinstance(tensor, torch.Tensor):
            return on_output(name, tensor)
        return None

    def pre(path: str) -> PreHook:
        def hook(module: nn.Module, args: tuple) -> None:
            seen(path, args[0] if args else None)  # an input is read, never replaced

        return hook

    def post(path: str) -> PostHook:
        return lambda module, args, output: seen(path, output)

    hooks = [(modules[p], pre(p) if inputs else post(p)) for p in wanted]
    with tapped(pre=hooks if inputs else (), post=() if inputs else hooks):  # type: ignore[arg-type]
        yield


def _modes(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    return [(m, m.training) for m in model.modules()]


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode for the block. A model already in it (a loaded bundle's, shared by
    every caller) is not touched at all; one being trained is switched, then each module is
    put back as it was (a frozen stage's BatchNorm stays in eval)."""
    modes = _modes(model)
    if not any(training for _, training in modes):
        yield model
        return
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
