"""A Keras-style model summary: per layer the output shape, parameters, mult-adds and receptive field.

One forward pass of one image, with hooks for the layer rows (`runtime.taps`: they see this
call only, so a summary made while others use the model mixes nothing) and a `FieldRecorder`
for receptive fields and mult-adds. Layer names are the module paths; `cnnlab explain`
selects layers by the same names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from cnnlab.anatomy.receptive import SPATIAL, Field, FieldRecorder
from cnnlab.config import MAX_INPUT_PIXELS
from cnnlab.errors import CnnlabError
from cnnlab.fileio import MIB
from cnnlab.runtime.taps import evaluating, tapped


@dataclass
class LayerRow:
    name: str  # module path; a module called again gets "#2", "#3", ...
    type: str
    output_shape: tuple[int, ...]  # without the batch axis, PyTorch order (C, H, W)
    params: int
    trainable: bool | None  # None: no parameters of its own
    mult_adds: int
    field: Field

    @property
    def shape_text(self) -> str:
        """Keras order: 26x26x32 for a feature map, 1600 for a vector."""
        s = self.output_shape
        dims = (*s[1:], s[0]) if len(s) == 3 else s
        return "x".join(map(str, dims)) or "scalar"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "type": self.type, "output_shape": list(self.output_shape),
            "params": self.params, "trainable": self.trainable, "mult_adds": self.mult_adds,
            "receptive_field": self.field.to_dict(),
        }  # fmt: skip


@dataclass
class Summary:
    model: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    mult_adds: int
    param_bytes: int  # parameters and buffers as stored
    activation_bytes: int  # every row's output for one image, forward pass only
    output_shape: tuple[int, ...] = ()
    notes: list[str] = field(default_factory=list)

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    def layer_names(self) -> list[str]:
        return [r.name for r in self.rows]

    def final_field(self) -> Field | None:
        """The field of the last layer whose output is still a spatial map."""
        spatial = [r.field for r in self.rows if r.field.kind == SPATIAL]
        return spatial[-1] if spatial else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape), "layers": [r.to_dict() for r in self.rows],
            "total_params": self.total_params, "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params, "mult_adds": self.mult_adds,
            "param_bytes": self.param_bytes, "activation_bytes": self.activation_bytes,
        }  # fmt: skip


def is_layer(module: nn.Module) -> bool:
    """A summary row: a leaf module, or a container that owns parameters (timm's BatchNormAct2d)."""
    if isinstance(module, nn.Identity):
        return False
    has_children = next(module.children(), None) is not None
    return not has_children or next(module.parameters(recurse=False), None) is not None


def layer_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if name and is_layer(m)}


def summarize(model: nn.Module, input_shape: tuple[int, int, int], name: str = "model") -> Summary:
    """Run one image of `input_shape` (C, H, W) through `model` in eval mode and describe every layer.

    A model that cannot take this input is a CnnlabError that says so in one line.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    if device.type == "meta":  # shapes only: drawn on the CPU first, 100000x100000 took 120 GB
        image = torch.empty(1, *input_shape, device=device, dtype=dtype)
    else:
        gen = torch.Generator().manual_seed(0)
        image = torch.randn(1, *input_shape, generator=gen).to(device=device, dtype=dtype)
    recorder = FieldRecorder(image)
    calls: dict[str, int] = {}
    order: list[str] = []
    rows: dict[str, LayerRow] = {}
    seen_params: set[int] = set()

    def pre_hook(mod_name: str):
        def hook(module, args):
            calls[mod_name] = calls.get(mod_name, 0) + 1
            key = mod_name if calls[mod_name] == 1 else f"{mod_name}#{calls[mod_name]}"
            order.append(key)
            recorder.scope.append(key)

        return hook

    def post_hook(mod_name: str):
        def hook(module, args, output):
            key = recorder.scope.pop()
            out = _first_tensor(output)
            own = [p for p in module.parameters(recurse=False) if id(p) not in seen_params]
            seen_params.update(id(p) for p in own)
            count = sum(p.numel() for p in own)
            flags = {p.requires_grad for p in own}
            fld = recorder.field_of(out) if out is not None else None
            rows[key] = LayerRow(
                name=key,
                type=type(module).__name__,
                output_shape=tuple(out.shape[1:]) if out is not None else (),
                params=count,
                trainable=None if not own else (flags == {True} if len(flags) == 1 else None),
                mult_adds=0,
                field=fld or Field("unsupported", reason="output not computed from the image"),
            )
            if own and len(flags) > 1:
                rows[key].type += " (partly frozen)"

        return hook

    layers = layer_modules(model).items()
    taps = tapped(
        pre=[(m, pre_hook(n)) for n, m in layers], post=[(m, post_hook(n)) for n, m in layers]
    )
    try:
        with evaluating(model), torch.no_grad(), taps, recorder:
            output = model(image)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        shape = "x".join(map(str, input_shape))
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CnnlabError(f"{name} fails on input {shape} (C x H x W): {first}") from None
    ordered = [rows[k] for k in order if k in rows]
    for row in ordered:
        row.mult_adds = recorder.mult_adds.get(row.name, 0)
    params = {id(p): p for p in model.parameters()}.values()
    buffers = list(model.buffers())
    out = _first_tensor(output)
    return Summary(
        model=name,
        input_shape=tuple(input_shape),  # type: ignore[arg-type]
        rows=ordered,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        mult_adds=recorder.total_mult_adds,
        param_bytes=sum(t.numel() * t.element_size() for t in [*params, *buffers]),
        activation_bytes=sum(
            _numel(r.output_shape) * image.element_size() for r in ordered if r.output_shape
        ),
        output_shape=tuple(out.shape[1:]) if out is not None else (),
    )


def target_summary(
    ref: str, input_shape: tuple[int, int, int] | None = None, num_classes: int | None = None
) -> tuple[Any, Summary]:
    """(Target, Summary) of a bundle, a registered model or a timm name.

    A model name is first built on the meta device: shapes, counts and fields without
    allocating or computing anything (VGG-16 in 0.1 s instead of 3 s). Where that fails,
    a real build runs, so the user sees the real error, or a model meta cannot run still works.
    """
    from cnnlab.anatomy.target import load_target
    from cnnlab.bundle.catalog import looks_like_bundle

    if not looks_like_bundle(ref):
        try:
            with torch.device("meta"):
                target = load_target(ref, input_shape, num_classes)
            return target, summarize(target.model, target.input_shape, target.name)
        except Exception:  # noqa: BLE001 - retried for real just below, which reports properly
            pass
    if input_shape is not None and input_shape[1] * input_shape[2] > MAX_INPUT_PIXELS:
        c, h, w = input_shape
        raise CnnlabError(f"--input {c}x{h}x{w} is over the {MAX_INPUT_PIXELS / 1e6:.1f} MP a "
                          f"model input may have (this one runs for real, not on meta)")  # fmt: skip
    target = load_target(ref, input_shape, num_classes)
    return target, summarize(target.model, target.input_shape, target.name)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _first_tensor(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, list | tuple):
        for o in output:
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def _mb(n: int) -> str:
    return f"{n / MIB:,.2f} MB"


def _count(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n:,} ({n / div:.2f} {unit})"
    return f"{n:,}"


def format_summary(s: Summary) -> str:
    """The table people read, in the Keras layout, with a legend for the receptive-field columns.
    Every shape, the input's included, is in one order (Keras's H x W x C), said once."""
    c, h, w = s.input_shape
    shape = f"{h}x{w}x{c}"
    head = ["Layer (type)", "Output shape", "Param #", "Trainable", "Mult-adds", "RF", "Jump", "Start"]  # fmt: skip
    body = [
        [
            f"{r.name} ({r.type})", r.shape_text, f"{r.params:,}",
            {True: "yes", False: "no", None: "-"}[r.trainable] if r.params else "-",
            f"{r.mult_adds:,}", r.field.describe(), r.field.describe_jump(), r.field.describe_start(),
        ]
        for r in s.rows
    ]  # fmt: skip
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    right = {2, 4}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "=" * len(line(head))
    out = [f'Model: "{s.model}"   input {shape}   (shapes: H x W x C)', rule, line(head), rule]
    out += [line(b) for b in body]
    final = s.final_field()
    out += [
        rule,
        f"Total params: {s.total_params:,}",
        f"Trainable params: {s.trainable_params:,}",
        f"Non-trainable params: {s.non_trainable_params:,}",
        f"Mult-adds: {_count(s.mult_adds)}",
        f"Memory: params + buffers {_mb(s.param_bytes)}, activations {_mb(s.activation_bytes)} "
        f"(forward, one image), total {_mb(s.param_bytes + s.activation_bytes)}",
    ]
    if final is not None and final.kind == SPATIAL:
        out.append(
            f"Receptive field of the last feature map: {final.describe()} "
            f"(jump {final.describe_jump()}) on a {s.input_shape[1]}x{s.input_shape[2]} input"
        )
    unsupported = sorted({r.field.reason for r in s.rows if r.field.kind == "unsupported"})
    out.append(
        "RF: input pixels one unit sees (HxW); Jump: effective stride in input pixels; "
        "Start: centre of the first unit's field"
    )
    if unsupported:
        out.append("RF unsupported (no rule, not guessed) for: " + "; ".join(unsupported))
    return "\n".join(out)
