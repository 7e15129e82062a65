"""Receptive fields on the real graph of a forward pass, branches and dilation included.

A TorchDispatchMode sees every aten op the model runs (convolutions, pools, pads, adds,
concatenations, views, ...) with its real arguments, and carries a `Field` from each input
tensor to each output. Branches merge as the union of their fields, so ResNet shortcuts and
EfficientNet residuals come out right; an op without a rule gives "unsupported" instead of
a guess (torchscan's fallback is wrong for branching nets, its issue #41). No tracing: any
model that runs eagerly works, timm and torchvision included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakTensorKeyDictionary

SPATIAL, FLAT, GLOBAL, UNSUPPORTED = "spatial", "flat", "global", "unsupported"


@dataclass(frozen=True)
class Field:
    """What one unit of a tensor sees of the input, per axis (H, W).

    spatial: a `rf` x `rf` window; unit i is centred at start + i * jump (input pixels).
    flat: a flattened spatial map (each value still sees `rf`); global: the whole input
    (after global pooling or a dense layer); unsupported: an op without a rule (see reason).
    """

    kind: str = SPATIAL
    rf: tuple[int, int] = (1, 1)
    jump: tuple[int, int] = (1, 1)
    start: tuple[float, float] = (0.0, 0.0)
    reason: str = ""

    def through(self, kernel, stride, padding, dilation) -> Field:
        """The field after a conv/pool window: r += (k_eff - 1) j; start += ((k_eff-1)/2 - p) j."""
        if self.kind != SPATIAL:
            return self if self.kind in (GLOBAL, UNSUPPORTED) else unsupported("window on flat")
        rf, jump, start = [], [], []
        for ax in range(2):
            k_eff = dilation[ax] * (kernel[ax] - 1) + 1
            j = self.jump[ax]
            rf.append(self.rf[ax] + (k_eff - 1) * j)
            start.append(self.start[ax] + ((k_eff - 1) / 2 - padding[ax]) * j)
            jump.append(j * stride[ax])
        return Field(SPATIAL, tuple(rf), tuple(jump), tuple(start))  # type: ignore[arg-type]

    def shifted(self, before: tuple[int, int]) -> Field:
        """Padding (before = top, left) moves every unit's centre back by pad * jump."""
        if self.kind != SPATIAL:
            return self
        start = tuple(s - p * j for s, p, j in zip(self.start, before, self.jump, strict=True))
        return replace(self, start=start)

    def bounds(self, index: tuple[int, int]) -> tuple[tuple[float, float], tuple[float, float]]:
        """(lo, hi) input rows and columns, inclusive, that unit `index` (row, col) sees."""
        out = []
        for ax in range(2):
            c = self.start[ax] + index[ax] * self.jump[ax]
            half = (self.rf[ax] - 1) / 2
            out.append((c - half, c + half))
        return out[0], out[1]  # type: ignore[return-value]

    def describe(self) -> str:
        if self.kind in (GLOBAL, UNSUPPORTED):
            return self.kind
        return _hw(self.rf)

    def describe_jump(self) -> str:
        return _hw(self.jump) if self.kind == SPATIAL else "-"

    def describe_start(self) -> str:
        if self.kind != SPATIAL:
            return "-"
        h, w = (f"{s:g}" for s in self.start)
        return h if h == w else f"{h},{w}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        if self.kind in (SPATIAL, FLAT):
            d["rf"] = list(self.rf)
        if self.kind == SPATIAL:
            d["jump"], d["start"] = list(self.jump), list(self.start)
        if self.reason:
            d["reason"] = self.reason
        return d


def _hw(v: tuple) -> str:
    return f"{v[0]}x{v[1]}"


def unsupported(reason: str) -> Field:
    return Field(UNSUPPORTED, reason=reason)


def union(fields: list[Field]) -> Field:
    """Merge of branches (add, multiply, concat): every input window, the widest extent."""
    if any(f.kind == GLOBAL for f in fields):
        return Field(GLOBAL)
    bad = [f for f in fields if f.kind == UNSUPPORTED]
    if bad:
        return bad[0]
    if len({f.kind for f in fields}) > 1:
        return unsupported("merges spatial and flattened tensors")
    if len({f.jump for f in fields}) > 1:
        return unsupported("merges branches with different strides")
    first = fields[0]
    if first.kind == FLAT:
        return Field(FLAT, tuple(max(f.rf[a] for f in fields) for a in range(2)))  # type: ignore[arg-type]
    rf, start = [], []
    for ax in range(2):
        lo = min(f.start[ax] - (f.rf[ax] - 1) / 2 for f in fields)
        hi = max(f.start[ax] + (f.rf[ax] - 1) / 2 for f in fields)
        rf.append(round(hi - lo) + 1)
        start.append((lo + hi) / 2)
    return Field(SPATIAL, tuple(rf), first.jump, tuple(start))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- op rules

_ELEMENTWISE = {
    "_to_copy", "detach", "alias", "lift_fresh", "contiguous", "copy_", "where", "masked_fill",
    "hardswish", "hardswish_", "hardsigmoid_", "native_dropout", "dropout", "mish", "mish_",
    "softplus", "prelu", "_prelu_kernel", "_native_batch_norm_legit_no_training",
}  # fmt: skip
_BATCH_NORM = {"native_batch_norm", "_native_batch_norm_legit", "batch_norm", "cudnn_batch_norm"}
_VIEWS = {"view", "_unsafe_view", "reshape", "unsqueeze", "squeeze", "expand", "flatten",
          "unflatten", "_reshape_alias"}  # fmt: skip
_SLICES = {"slice", "select", "narrow", "split", "split_with_sizes", "chunk", "unbind"}
_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "var", "std", "logsumexp"}
_MATMUL = {"mm": 0, "addmm": 1, "bmm": 0, "baddbmm": 1, "matmul": 0, "linear": 0}
_POOLS = {"max_pool2d_with_indices": True, "max_pool2d": True, "avg_pool2d": False}
_ADAPTIVE = {"_adaptive_avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"}
_PADS = {"constant_pad_nd", "reflection_pad2d", "replication_pad2d", "_pad_enum", "pad"}


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _two(value: Any, default: int) -> tuple[int, int]:
    if value is None or (isinstance(value, list | tuple) and len(value) == 0):
        return (default, default)
    if isinstance(value, int):
        return (value, value)
    v = [int(x) for x in value]
    return (v[0], v[0]) if len(v) == 1 else (v[-2], v[-1])


def _spatial(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape[-2:]) if t.dim() >= 3 else ()


def apply_rule(
    func, args: tuple, kwargs: dict, fields: dict[int, Field], tensors: list, out: torch.Tensor
) -> Field:
    """The field of an op's output from its tracked inputs (`fields` keyed by tensor position)."""
    name = func.overloadpacket.__name__
    first_slot = min(fields)
    f = fields[first_slot]
    inp = tensors[first_slot]
    if name in ("convolution", "_convolution"):
        if first_slot != 0:
            return unsupported("input-dependent conv weights")
        if _arg(args, kwargs, 6, "transposed", False):
            return unsupported("transposed convolution")
        weight = args[1]
        if weight.dim() != 4:
            return unsupported(f"conv{weight.dim() - 2}d")
        k = tuple(weight.shape[-2:])
        s, p, d = (_two(_arg(args, kwargs, i, n), 1 if n != "padding" else 0)
                   for i, n in ((3, "stride"), (4, "padding"), (5, "dilation")))  # fmt: skip
        return f.through(k, s, p, d)
    if name in _POOLS:
        k = _two(_arg(args, kwargs, 1, "kernel_size"), 1)
        s = _two(_arg(args, kwargs, 2, "stride"), 0)
        s = k if s == (0, 0) else s
        p = _two(_arg(args, kwargs, 3, "padding"), 0)
        d = _two(_arg(args, kwargs, 4, "dilation"), 1) if _POOLS[name] else (1, 1)
        return f.through(k, s, p, d)
    if name in _ADAPTIVE:
        (ih, iw), (oh, ow) = _spatial(inp), _spatial(out)
        if (oh, ow) == (1, 1) and f.kind == SPATIAL:
            return Field(GLOBAL)
        if ih % oh or iw % ow:
            return unsupported("adaptive pooling with uneven windows")
        k = (ih // oh, iw // ow)
        return f.through(k, k, (0, 0), (1, 1))
    if name in _PADS:
        pad = [int(x) for x in _arg(args, kwargs, 1, "pad")]
        left, top = pad[0], (pad[2] if len(pad) >= 4 else 0)
        return f.shifted((top, left))
    if name in _BATCH_NORM:
        training = bool(_arg(args, kwargs, 5, "training", False))
        return unsupported("batch norm with batch statistics") if training else f
    if torch.Tag.pointwise in func.tags or name in _ELEMENTWISE:
        return _merge(fields, tensors, out)
    if name in ("cat", "stack"):
        return _concat(args, kwargs, fields, tensors, name)
    if name in _VIEWS:
        return _view(f, inp, out)
    if name in ("permute", "transpose", "t"):
        return f if f.kind == GLOBAL or _keeps_hw(name, args) else unsupported(name)
    if name == "as_strided_" and list(args[1]) == list(inp.shape):
        return f  # a memory-layout change in place (channels-last pooling), same values
    if name in _SLICES:
        return _slice(f, inp, args, kwargs, name)
    if name in _REDUCTIONS:
        return _reduce(f, inp, args, kwargs)
    if name in _MATMUL:
        return Field(GLOBAL) if f.kind in (FLAT, GLOBAL) else unsupported(name)
    return unsupported(name)


def _keeps_hw(name: str, args: tuple) -> bool:
    """Does a permute/transpose leave the two spatial axes last and in order?"""
    nd = args[0].dim()
    if nd < 3:
        return False
    if name == "permute":
        return [d % nd for d in args[1]][-2:] == [nd - 2, nd - 1]
    if name == "transpose":
        a, b = sorted(d % nd for d in args[1:3])
        return b < nd - 2 or a == b
    return False


def _merge(fields: dict[int, Field], tensors: list, out: torch.Tensor) -> Field:
    keep = []
    for slot, f in fields.items():
        if f.kind == SPATIAL and _spatial(tensors[slot]) != _spatial(out):
            return unsupported("broadcast of a spatial map")
        keep.append(f)
    return union(keep)


def _concat(args, kwargs, fields, tensors, name) -> Field:
    items = [t for t in args[0] if isinstance(t, torch.Tensor)]
    dim = int(_arg(args, kwargs, 1, "dim", 0))
    nd = items[0].dim() + (1 if name == "stack" else 0)
    if dim % nd >= nd - 2:
        return unsupported(f"{name} along a spatial axis")
    return union(list(fields.values()))


def _view(f: Field, inp: torch.Tensor, out: torch.Tensor) -> Field:
    if f.kind in (GLOBAL, UNSUPPORTED):
        return f
    same_batch = out.dim() >= 1 and out.shape[0] == inp.shape[0]
    if inp.dim() >= 3 and out.dim() >= 3 and _spatial(inp) == _spatial(out) and same_batch:
        return f
    if f.kind == SPATIAL and out.dim() == 2 and out.shape[0] == inp.shape[0]:
        return Field(FLAT, f.rf)  # flatten(1): one value per position, each still sees rf
    if f.kind == FLAT and out.shape[0] == inp.shape[0]:
        return f
    return unsupported("reshape that moves spatial axes")


def _slice(f: Field, inp: torch.Tensor, args, kwargs, name) -> Field:
    if f.kind in (GLOBAL, UNSUPPORTED):
        return f
    nd = inp.dim()
    dim = int(_arg(args, kwargs, 1 if name != "chunk" else 2, "dim", 0)) % nd
    if f.kind == FLAT or dim < nd - 2:
        return f if f.kind == SPATIAL or dim == 0 else unsupported(f"{name} of flattened map")
    if name == "slice":
        start, end = _arg(args, kwargs, 2, "start", 0), _arg(args, kwargs, 3, "end", None)
        step = _arg(args, kwargs, 4, "step", 1)
        if (start or 0) == 0 and (end is None or end >= inp.shape[dim]) and step == 1:
            return f
    return unsupported(f"{name} along a spatial axis")


def _reduce(f: Field, inp: torch.Tensor, args, kwargs) -> Field:
    nd = inp.dim()
    dims = _arg(args, kwargs, 1, "dim", None)
    if dims is None or (isinstance(dims, list | tuple) and len(dims) == 0):
        return Field(GLOBAL)
    dims = {int(d) % nd for d in (dims if isinstance(dims, list | tuple) else [dims])}
    if f.kind != SPATIAL:
        return Field(GLOBAL) if f.kind == FLAT and 1 in dims else f
    spatial = {nd - 2, nd - 1} & dims
    if not spatial:
        return f
    if spatial == {nd - 2, nd - 1}:
        return Field(GLOBAL)
    return unsupported("reduction over one spatial axis")


# ----------------------------------------------------------------------------- the recorder


def mult_adds(func, args: tuple, out: Any) -> int:
    """Multiply-adds of one op for the whole batch: convolutions and matrix products only."""
    name = func.overloadpacket.__name__
    if name in ("convolution", "_convolution") and isinstance(out, torch.Tensor):
        w = args[1]
        if len(args) > 6 and args[6]:  # transposed: each input value meets out/g * kh * kw weights
            return int(args[0].numel() * math.prod(w.shape[1:]))
        return int(out.numel() * math.prod(w.shape[1:]))
    if name in ("mm", "bmm", "matmul") and isinstance(out, torch.Tensor):
        return int(out.numel() * args[0].shape[-1])
    if name in ("addmm", "baddbmm") and isinstance(out, torch.Tensor):
        return int(out.numel() * args[1].shape[-1])
    return 0


class FieldRecorder(TorchDispatchMode):
    """Runs under a forward pass: a field for every tensor, mult-adds for the innermost layer."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.fields = WeakTensorKeyDictionary()
        self.fields[image] = Field()
        self.scope: list[str] = []  # names of the layers now running, innermost last
        self.mult_adds: dict[str, int] = {}
        self.total_mult_adds = 0

    def field_of(self, t: torch.Tensor) -> Field | None:
        return self.fields.get(t)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        flat_args, _ = tree_flatten((args, kwargs))
        tensors = [a for a in flat_args if isinstance(a, torch.Tensor)]
        tracked = {i: self.fields[t] for i, t in enumerate(tensors) if t in self.fields}
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        macs = mult_adds(func, args, out)
        if macs:
            self.total_mult_adds += macs
            if self.scope:
                self.mult_adds[self.scope[-1]] = self.mult_adds.get(self.scope[-1], 0) + macs
        if tracked and outs:
            try:
                field = apply_rule(func, args, kwargs, tracked, tensors, outs[0])
            except (IndexError, TypeError, ValueError) as e:  # an op signature we misread
                field = unsupported(f"{func.overloadpacket.__name__} ({e})")
            for t in outs:
                if t.is_floating_point() or t.is_complex():
                    self.fields[t] = field
        return out
