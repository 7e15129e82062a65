"""A model as a plain list of layers, when it is one: the shared input of the PyTorch and Keras
code generators and of the block diagram.

`torch.fx` traces the forward pass; the model is a plain stack when every operation takes
the previous one's output and nothing else (no skip connection, no custom module). Shapes
come from running the chain on one empty image (on the meta device for a fresh model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError

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
    import torch.fx as fx

    was_training = model.training
    model.train()  # cnnlab models average test-time views in eval mode: trace the plain path

    class LayerTracer(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:  # cnnlab's Dropout too
            return isinstance(m, nn.Dropout) or super().is_leaf_module(m, qualname)

    try:
        graph = LayerTracer().trace(model)
    except Exception as e:  # noqa: BLE001 - any tracing failure means: not a plain stack
        raise NotPlain(f"its forward pass cannot be traced ({type(e).__name__})") from None
    finally:
        model.train(was_training)
    modules = dict(model.named_modules())
    layers: list[PlainLayer] = []
    previous = None
    for node in graph.nodes:
        if node.op == "placeholder":
            previous = node
            continue
        if node.op == "output":
            if node.args[0] is not previous:
                raise NotPlain("its output is not the last layer's")
            break
        inputs = [a for a in node.all_input_nodes]
        if inputs != [previous] or (node.args and node.args[0] is not previous):
            raise NotPlain(f"{node.name} does not simply take the previous layer's output "
                           "(a skip connection or a merge)")  # fmt: skip
        if node.op == "call_module":
            layer = describe_module(modules[node.target], str(node.target))
        elif node.op in ("call_function", "call_method") and _is_flatten(node):
            layer = PlainLayer("flatten", {}, "flatten")
        else:
            what = getattr(node.target, "__name__", str(node.target))
            raise NotPlain(f"it runs `{what}` between its layers")
        if layer.kind != "identity":
            layers.append(layer)
        previous = node
    plain = PlainModel(name, tuple(input_shape), layers)  # type: ignore[arg-type]
    _fill_shapes(model, plain, modules)
    return plain


def _is_flatten(node) -> bool:
    target = getattr(node.target, "__name__", node.target)
    if target not in ("flatten", "view", "reshape"):
        return False
    rest = list(node.args[1:]) + list(node.kwargs.values())
    return (
        target == "flatten"
        and rest in ([1], [1, -1])
        or target != "flatten"
        and (rest in ([-1], [[-1]]) or (len(rest) == 2 and rest[1] == -1))
    )


def _fill_shapes(model: nn.Module, plain: PlainModel, modules: dict[str, nn.Module]) -> None:
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(1, *plain.input_shape, device=device)
    with torch.no_grad():
        for layer in plain.layers:
            layer.in_shape = tuple(x.shape[1:])
            module = modules.get(layer.name)
            if layer.kind == "flatten":
                x = x.flatten(1)
            elif layer.kind == "dropout":
                pass
            else:
                was = module.training
                module.eval()
                x = module(x)
                module.train(was)
                layer.params = sum(p.numel() for p in module.parameters())
            layer.out_shape = tuple(x.shape[1:])
