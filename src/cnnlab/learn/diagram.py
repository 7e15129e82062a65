"""A block diagram of any model from its module graph: one box per layer for a plain stack
(activations folded into the layer before, as Keras draws them), else one box per block of
the module tree (a residual block marked "+ skip"), each with its output shape and parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn
from PIL import Image, ImageDraw

from cnnlab.anatomy.summary import LayerRow, Summary
from cnnlab.fileio import atomic_path
from cnnlab.learn.conv_drawing import font
from cnnlab.learn.plain_layers import NotPlain, plain_layers

COLOURS = {"conv": (198, 219, 239), "pool": (253, 208, 162), "dense": (218, 218, 235),
           "norm": (230, 230, 230), "block": (199, 233, 192), "other": (240, 240, 240)}  # fmt: skip
MAX_BOXES = 24


@dataclass
class Box:
    title: str
    detail: str  # output shape, parameters
    kind: str


def _kind(type_name: str) -> str:
    t = type_name.lower()
    if "conv" in t:
        return "conv"
    if "pool" in t:
        return "pool"
    if "linear" in t:
        return "dense"
    if "norm" in t:
        return "norm"
    return "other"


def _shape(shape: tuple[int, ...]) -> str:
    dims = (*shape[1:], shape[0]) if len(shape) == 3 else shape
    return "x".join(map(str, dims))


def _plain_boxes(model: nn.Module, summary: Summary) -> list[Box]:
    plain = plain_layers(model, summary.input_shape, summary.model)
    boxes: list[Box] = []
    for layer in plain.layers:
        a = layer.args
        if layer.kind == "act" and boxes and boxes[-1].kind in ("conv", "dense"):
            boxes[-1].title += f" + {a['fn']}"
            continue
        if layer.kind == "conv":
            kh, kw = a["kernel"]
            extra = "".join(f", {n} {v[0] if v[0] == v[1] else v}" for n, v in
                            (("stride", a["stride"]), ("dilation", a["dilation"])) if v != (1, 1))  # fmt: skip
            pad = a["padding"] if isinstance(a["padding"], str) else (
                "" if a["padding"] == (0, 0) else f", pad {a['padding'][0]}")  # fmt: skip
            title = f"Conv {kh}x{kw}, {a['out']} filters{extra}{pad}"
            kind = "conv"
        elif layer.kind in ("maxpool", "avgpool"):
            title = f"{'Max' if layer.kind == 'maxpool' else 'Avg'}Pool {a['kernel'][0]}x{a['kernel'][1]}"
            kind = "pool"
        elif layer.kind == "linear":
            title, kind = f"Dense {a['out']}", "dense"
        elif layer.kind == "bn":
            title, kind = "BatchNorm", "norm"
        elif layer.kind == "dropout":
            title, kind = f"Dropout {a['p']:g}", "other"
        elif layer.kind.startswith("adaptive"):
            title, kind = f"Global {'avg' if 'avg' in layer.kind else 'max'} pool", "pool"
        else:
            title, kind = layer.kind.replace("_", " ").capitalize(), "other"
        detail = _shape(layer.out_shape) + (f" · {layer.params:,} params" if layer.params else "")
        boxes.append(Box(title, detail, kind))
    return boxes


def _has_skip(module: nn.Module) -> bool:
    """A residual block: timm's `has_skip`, torchvision's `downsample` or a ResNet block class."""
    for m in module.modules():
        if getattr(m, "has_skip", False) or getattr(m, "downsample", None) is not None:
            return True
        if type(m).__name__ in ("Bottleneck", "BasicBlock"):
            return True
    return False


def _grouped_boxes(model: nn.Module, summary: Summary) -> list[Box]:
    rows = [r for r in summary.rows if "#" not in r.name]
    depth = max(r.name.count(".") + 1 for r in rows)
    groups: list[tuple[str, list[LayerRow]]] = []
    for d in range(depth, 0, -1):
        groups = []
        for r in rows:
            key = ".".join(r.name.split(".")[:d])
            if groups and groups[-1][0] == key:
                groups[-1][1].append(r)
            else:
                groups.append((key, [r]))
        if len(groups) <= MAX_BOXES:
            break
    modules = dict(model.named_modules())
    boxes = []
    for key, members in groups:
        last = members[-1]
        params = sum(r.params for r in members)
        if len(members) == 1:
            title, kind = f"{key} ({last.type})", _kind(last.type)
        else:
            kinds: dict[str, int] = {}
            for r in members:
                kinds[_kind(r.type)] = kinds.get(_kind(r.type), 0) + 1
            parts = [f"{n} {k}" for k, n in kinds.items() if k in ("conv", "pool", "dense")]
            title = f"{key}: {', '.join(parts) or f'{len(members)} layers'}"
            module = modules.get(key)
            if module is not None and _has_skip(module):
                title += " + skip"
            kind = "block"
        shape = _shape(last.output_shape) if last.output_shape else "-"
        boxes.append(Box(title, shape + (f" · {params:,} params" if params else ""), kind))
    return boxes


def block_boxes(model: nn.Module, summary: Summary) -> tuple[list[Box], bool]:
    """The boxes to draw, and whether they are layers (a plain stack) or blocks."""
    try:
        return _plain_boxes(model, summary), True
    except NotPlain:
        return _grouped_boxes(model, summary), False


def draw_diagram(model: nn.Module, summary: Summary, width: int = 560) -> Image.Image:
    """Input at the top, one box per layer or block, the output at the bottom."""
    boxes, plain = block_boxes(model, summary)
    c, h, w = summary.input_shape
    items = [Box(f"Input {h}x{w}x{c}", summary.model, "other"), *boxes]
    box_h, gap, margin = 40, 16, 14
    width = max(width, *(int(font(13).getlength(b.title)) + 2 * margin + 24 for b in items))
    height = 2 * margin + 30 + len(items) * (box_h + gap)
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    d.text((margin, margin), f"{summary.model}: {summary.total_params:,} parameters, "
           f"{len(boxes)} {'layers' if plain else 'blocks of its module tree'}",
           fill=(30, 30, 30), font=font(14))  # fmt: skip
    y = margin + 30
    for i, b in enumerate(items):
        d.rounded_rectangle((margin, y, width - margin, y + box_h), radius=6,
                            fill=COLOURS.get(b.kind, COLOURS["other"]), outline=(120, 120, 120))  # fmt: skip
        d.text((margin + 10, y + 4), b.title, fill=(20, 20, 20), font=font(13))
        d.text((margin + 10, y + 21), b.detail, fill=(70, 70, 70), font=font(12))
        if i < len(items) - 1:
            cx = width // 2
            d.line((cx, y + box_h, cx, y + box_h + gap - 4), fill=(90, 90, 90), width=2)
            d.polygon([(cx - 4, y + box_h + gap - 6), (cx + 4, y + box_h + gap - 6),
                       (cx, y + box_h + gap - 1)], fill=(90, 90, 90))  # fmt: skip
        y += box_h + gap
    return img


def save_diagram(model: nn.Module, summary: Summary, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        draw_diagram(model, summary).save(tmp, format="PNG")
    return path
