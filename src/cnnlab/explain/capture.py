"""Layer outputs by name, through `runtime.taps` (hooks that act for their caller only, so
concurrent callers of one loaded model never see each other's layers; why hooks and not
tracing is said there).

Names are the ones `cnnlab summary` prints: module paths, with "#2", "#3" for a module's
second and third call in one forward pass (torchvision's ResNet block reuses its ReLU).
"""

from __future__ import annotations

import difflib

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.runtime.taps import evaluating, hooked


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


def capture_outputs(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """One forward pass in eval mode, without gradients; the outputs of the named layers (batch kept).

    Outputs are copied at once, so a later in-place op (ReLU(inplace=True)) cannot change them.
    """
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str, out: torch.Tensor) -> None:
        outputs[name] = out.detach().float().clone()

    with evaluating(model), torch.no_grad(), hooked(model, names, keep):
        model(x)
    return outputs
