"""A model as a plain list of layers, when it is one: the shared input of the PyTorch and Keras
code generators and of the block diagram.

One image of zeros runs through the model (on the meta device for a fresh model), and the
layers it calls and the torch functions it runs between them are recorded in order; the
model is a plain stack when each takes the previous one's output and nothing else (no skip
connection, no custom module). Shapes come from that same pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from cnnlab.errors import CnnlabError
from cnnlab.runtime.taps import evaluating, tapped

ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.GELU: "gelu",
               nn.SiLU: "silu", nn.ReLU6: "relu6", nn.LeakyReLU: "leaky_relu"}  # fmt: skip


@dataclass
class PlainLayer:
    kind: str  # conv, maxpool, avgpool, bn, act, dropout, flatten, linear, adaptive_avg, ...
    args: dict[str, Any]
    name: str  # the module path ("features.conv1"), or the function ("flatten")
    out_shape: tuple[int, ...] = ()  # without the batch axis, (C, H, W) or (F,)
    in_shape: tuple[int, ...] = ()
    params: int = 0


@dataclass
class PlainModel:
    name: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    layers: list[PlainLayer] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def num_outputs(self) -> int:
        return int(self.layers[-1].out_shape[0])


class NotPlain(CnnlabError):
    """The model is not a plain stack of standard layers (say why)."""


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def describe_module(m: nn.Module, name: str) -> PlainLayer:
    """One standard module as a PlainLayer; anything else raises NotPlain naming it."""
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise NotPlain(f"{name}: padding_mode {m.padding_mode!r}")
        pad = m.padding if isinstance(m.padding, str) else _pair(m.padding)
        return PlainLayer("conv", {
            "in": m.in_channels, "out": m.out_channels, "kernel": _pair(m.kernel_size),
            "stride": _pair(m.stride), "padding": pad, "dilation": _pair(m.dilation),
            "groups": m.groups, "bias": m.bias is not None}, name)  # fmt: skip
    if isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
        kind = "maxpool" if isinstance(m, nn.MaxPool2d) else "avgpool"
        k = _pair(m.kernel_size)
        args = {"kernel": k, "stride": _pair(m.stride or m.kernel_size),
                "padding": _pair(m.padding), "ceil_mode": bool(m.ceil_mode)}  # fmt: skip
        if kind == "maxpool" and _pair(m.dilation) != (1, 1):
            raise NotPlain(f"{name}: dilated max-pool")
        return PlainLayer(kind, args, name)
    if isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        kind = "adaptive_avg" if isinstance(m, nn.AdaptiveAvgPool2d) else "adaptive_max"
        size = m.output_size
        return PlainLayer(kind, {"size": _pair(size if size is not None else 1)}, name)
    if isinstance(m, nn.BatchNorm2d):
        return PlainLayer("bn", {"features": m.num_features, "eps": m.eps,
                                 "momentum": m.momentum if m.momentum is not None else 0.1}, name)  # fmt: skip
    for cls, act in ACTIVATIONS.items():
        if type(m) is cls:
            args = {"fn": act}
            if act == "leaky_relu":
                args["slope"] = m.negative_slope
            return PlainLayer("act", args, name)
    if isinstance(m, nn.Dropout | nn.Dropout2d):  # (models.base.Dropout: nn.Dropout, drawn faster)
        return PlainLayer("dropout", {"p": m.p, "spatial": isinstance(m, nn.Dropout2d)}, name)
    if type(m) is nn.Flatten:
        if m.start_dim != 1 or m.end_dim != -1:
            raise NotPlain(f"{name}: Flatten({m.start_dim}, {m.end_dim})")
        return PlainLayer("flatten", {}, name)
    if type(m) is nn.Linear:
        return PlainLayer("linear", {"in": m.in_features, "out": m.out_features,
                                     "bias": m.bias is not None}, name)  # fmt: skip
    if type(m) is nn.LocalResponseNorm:
        return PlainLayer("lrn", {"size": m.size, "alpha": m.alpha, "beta": m.beta, "k": m.k}, name)
    if type(m) is nn.Identity:
        return PlainLayer("identity", {}, name)
    raise NotPlain(f"{name} is a {type(m).__name__}, not a standard layer")


def plain_layers(
    model: nn.Module, input_shape: tuple[int, int, int], name: str = "model"
) -> PlainModel:
    """The model as a chain of standard layers with their output shapes, or NotPlain saying why."""
    x, calls, output = _run_once(model, input_shape)
    layers: list[PlainLayer] = []
    previous = x
    for call in calls:
        inputs = list({id(t): t for t in call.tensors}.values())
        if len(inputs) != 1 or inputs[0] is not previous or call.first is not previous:
            raise NotPlain(f"{call.name} does not simply take the previous layer's output "
                           "(a skip connection or a merge)")  # fmt: skip
        if call.module is not None:
            layer = describe_module(call.module, call.name)
            layer.params = sum(p.numel() for p in call.module.parameters())
        elif _is_flatten(call.name, call.rest):
            layer = PlainLayer("flatten", {}, "flatten")
        else:
            raise NotPlain(f"it runs `{call.name}` between its layers")
        if not isinstance(call.output, torch.Tensor):
            raise NotPlain(f"{call.name} does not give one tensor")
        layer.in_shape, layer.out_shape = tuple(previous.shape[1:]), tuple(call.output.shape[1:])
        if layer.kind != "identity":
            layers.append(layer)
        previous = call.output
    if output is not previous:
        raise NotPlain("its output is not the last layer's")
    return PlainModel(name, tuple(input_shape), layers)  # type: ignore[arg-type]


@dataclass
class _Call:
    """A layer called, or a torch function run between layers, during the recorded pass."""

    name: str  # the module's path, or the function's name
    module: nn.Module | None
    args: tuple
    kwargs: dict
    output: Any = None

    @property
    def tensors(self) -> list[torch.Tensor]:
        flat = [*self.args, *self.kwargs.values()]
        return [t for t in flat if isinstance(t, torch.Tensor)]

    @property
    def first(self) -> Any:
        return self.args[0] if self.args else None

    @property
    def rest(self) -> list:
        return [*self.args[1:], *self.kwargs.values()]


def _is_leaf(module: nn.Module) -> bool:
    """torch.fx's leaf modules (PyTorch's own layers, not containers) and cnnlab's Dropout."""
    own = module.__module__.startswith(("torch.nn", "torch.ao.nn"))
    return isinstance(module, nn.Dropout) or (own and not isinstance(module, nn.Sequential))


class _BetweenLayers(TorchFunctionMode):
    """Records the torch functions run outside every layer (flatten, view, add, ...)."""

    def __init__(self, calls: list[_Call], depth: list[int]) -> None:
        super().__init__()
        self.calls, self.depth = calls, depth

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth[0] == 0:
            name = getattr(func, "__name__", str(func))
            if name == "__get__":  # a tensor property: `x.shape`
                name = getattr(getattr(func, "__self__", None), "__name__", name)
            self.calls.append(_Call(name, None, tuple(args), dict(kwargs), out))
        return out


def _run_once(
    model: nn.Module, input_shape: tuple[int, int, int]
) -> tuple[torch.Tensor, list[_Call], Any]:
    """One image of zeros through the model, eagerly, recording the layers called and the
    functions run between them: (the input, the calls, the output).

    Not torch.fx: its tracer patches `nn.Module.__call__` for the whole process while it
    traces, so another thread's forward pass at that moment runs into the trace. Here the
    hooks act for this call only (`runtime.taps`) and a TorchFunctionMode is this thread's.
    cnnlab models average test-time views in eval mode: the plain (training) path is run
    through a shallow copy whose own flag says training; its layers are the model's, in eval
    mode, and the model, which others may be running, keeps its mode."""
    import copy

    modules = [(n, m) for n, m in model.named_modules() if n and _is_leaf(m)]
    calls: list[_Call] = []
    depth = [0]

    def enter(name: str, module: nn.Module):
        def hook(m: nn.Module, args: tuple) -> None:
            if depth[0] == 0:
                calls.append(_Call(name, module, tuple(args), {}))
            depth[0] += 1

        return hook

    def leave(name: str, module: nn.Module):
        def hook(m: nn.Module, args: tuple, output: Any) -> None:
            depth[0] -= 1
            if depth[0] == 0:
                calls[-1].output = output

        return hook

    param = next(model.parameters(), None)
    x = torch.zeros(1, *input_shape, device=param.device if param is not None else "cpu")
    pre = [(m, enter(n, m)) for n, m in modules]
    post = [(m, leave(n, m)) for n, m in modules]
    with evaluating(model), torch.no_grad():
        plain_path = copy.copy(model)
        plain_path.training = True
        try:
            with tapped(pre=pre, post=post), _BetweenLayers(calls, depth):
                output = plain_path(x)
        except (RuntimeError, ValueError, TypeError, IndexError, AttributeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            shape = "x".join(map(str, input_shape))
            raise CnnlabError(f"the model fails on input {shape} (C x H x W): {first}") from None
    return x, calls, output


def _is_flatten(name: str, rest: list) -> bool:
    if name not in ("flatten", "view", "reshape"):
        return False
    return (
        name == "flatten"
        and rest in ([1], [1, -1])
        or name != "flatten"
        and (rest in ([-1], [[-1]]) or (len(rest) == 2 and rest[1] == -1))
    )
