"""Layer outputs by name, through forward hooks (tracing-based extractors break on timm/torchvision).

Names are the ones `cnnlab summary` prints: module paths, with "#2", "#3" for a module's
second and third call in one forward pass (torchvision's ResNet block reuses its ReLU).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError


def resolve_layer(valid: list[str], wanted: str) -> str:
    """An exact layer name, or a unique suffix of one (`conv1` for `features.conv1`)."""
    if wanted in valid:
        return wanted
    hits = [n for n in valid if n.endswith("." + wanted)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise CnnlabError(f"layer {wanted!r} is ambiguous: {', '.join(hits[:8])}")
    close = difflib.get_close_matches(wanted, valid, n=3, cutoff=0.6)
    if not close:  # compare the last parts: 'conv9' is close to 'features.conv1'
        leaves = {n.rsplit(".", 1)[-1]: n for n in reversed(valid)}
        tail = wanted.rsplit(".", 1)[-1]
        close = [leaves[x] for x in difflib.get_close_matches(tail, list(leaves), n=3, cutoff=0.6)]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    shown = ", ".join(valid[:20])
    if len(valid) > 20:
        shown += f", ... ({len(valid)} in all; `cnnlab summary` lists them)"
    raise CnnlabError(f"no layer {wanted!r}{hint}; valid layers: {shown}")


def split_name(name: str) -> tuple[str, int]:
    """'layer1.0.relu#2' -> ('layer1.0.relu', 2)."""
    path, _, call = name.partition("#")
    return path, int(call) if call else 1


@contextmanager
def hooked(
    model: nn.Module,
    names: list[str],
    on_output: Callable[[str, torch.Tensor], torch.Tensor | None],
) -> Iterator[None]:
    """While active, `on_output(name, output)` runs for each named layer's call; what it returns
    (if anything) replaces the output downstream."""
    modules = dict(model.named_modules())
    wanted: dict[str, dict[int, str]] = {}
    for name in names:
        path, call = split_name(name)
        if path not in modules:
            raise CnnlabError(f"no layer {name!r} in this model")
        wanted.setdefault(path, {})[call] = name
    counts: dict[str, int] = {}

    def make(path: str):
        def hook(module, args, output):
            counts[path] = counts.get(path, 0) + 1
            name = wanted[path].get(counts[path])
            if name is not None and isinstance(output, torch.Tensor):
                return on_output(name, output)
            return None

        return hook

    handles = [modules[p].register_forward_hook(make(p)) for p in wanted]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def capture_outputs(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """One forward pass in eval mode, without gradients; the outputs of the named layers (batch kept).

    Outputs are copied at once, so a later in-place op (ReLU(inplace=True)) cannot change them.
    """
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str, out: torch.Tensor) -> None:
        outputs[name] = out.detach().float().clone()

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), hooked(model, names, keep):
            model(x)
    finally:
        model.train(was_training)
    return outputs
