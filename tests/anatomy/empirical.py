"""The empirical receptive field: the input pixels whose gradient is non-zero for one output unit.

To make "non-zero" mean "connected", the model is copied with positive weights, identity
batch norms and a small positive input (every ReLU/ReLU6 passes, nothing cancels), and
max-pools become average pools of the same geometry: a max-pool routes the gradient to one
pixel per window, which would hide part of a field that the unit does depend on.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from cnnlab.explain.capture import hooked


def monotone_copy(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model).double().eval()
    for parent in list(m.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MaxPool2d):
                pool = nn.AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode)
                setattr(parent, name, pool)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.running_mean.zero_()
                mod.running_var.fill_(1.0)
                if mod.affine:
                    mod.weight.fill_(1.0)
                    mod.bias.zero_()
            elif isinstance(mod, nn.Conv2d | nn.Linear):
                w = torch.rand(mod.weight.shape, generator=gen, dtype=torch.float64) * 0.5 + 0.5
                mod.weight.copy_(w / mod.weight[0].numel())
                if mod.bias is not None:
                    mod.bias.zero_()
    return m


def empirical_bounds(
    model: nn.Module, input_shape: tuple[int, int, int], layers: list[str], unit: str = "centre"
) -> dict[str, tuple[tuple[int, int], tuple[int, int], tuple[int, int]]]:
    """Per layer: (unit index, (first row, last row), (first col, last col)) with non-zero gradient."""
    m = monotone_copy(model)
    outs: dict[str, torch.Tensor] = {}

    def keep(name: str, out: torch.Tensor) -> torch.Tensor:
        outs[name] = out
        return out.clone()

    x = (torch.rand(1, *input_shape, dtype=torch.float64) * 0.5 + 0.5) * 1e-3
    x.requires_grad_(True)
    with hooked(m, layers, keep):
        m(x)
    result = {}
    for name in layers:
        o = outs[name]
        idx = (o.shape[-2] // 2, o.shape[-1] // 2) if unit == "centre" else (0, 0)
        (g,) = torch.autograd.grad(o[0, :, idx[0], idx[1]].sum(), x, retain_graph=True)
        nz = g[0].abs().sum(0).nonzero()
        if len(nz) == 0:  # a unit made of padding only sees nothing
            result[name] = (idx, None, None)
            continue
        rows, cols = nz[:, 0], nz[:, 1]
        result[name] = (idx, (int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max())))
    return result


def theoretical_bounds(field, index: tuple[int, int], size: tuple[int, int]):
    """The field of unit `index`, clipped to the image: what the gradient can reach."""
    (lh, hh), (lw, hw) = field.bounds(index)
    clip = [
        (max(0, lo), min(n - 1, hi)) for (lo, hi), n in zip(((lh, hh), (lw, hw)), size, strict=True)
    ]
    return tuple(tuple(int(v) if float(v).is_integer() else v for v in c) for c in clip)
