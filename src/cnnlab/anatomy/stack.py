"""`cnnlab conv`: one layer or a stack of layers, worked out on paper (no model is run).

Stack syntax, comma separated:  c3  conv 3x3 | p2  max-pool 2x2 (stride 2) | a2  avg-pool
followed by any of  sN stride, dN dilation, pN / psame / pvalid padding, :N filters,
gN groups, dw depthwise, ceil (ceil mode). Example: "c3:32,c3:32,p2,c3:64s2psame,c3d2".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cnnlab.anatomy.arithmetic import (
    ConvGeometry,
    Padding,
    RFStep,
    conv_formula,
    conv_output_size,
    conv_params,
    pair,
    receptive_field,
    resolve_padding,
    same_padding,
    unused_input,
)
from cnnlab.errors import CnnlabError

_TOKEN = re.compile(r"(?P<kind>[cpa])(?P<kh>\d+)(?:x(?P<kw>\d+))?(?P<mods>.*)")
_MOD = re.compile(r"s(\d+)|d(\d+)|p(same|valid|\d+)|:(\d+)|g(\d+)|(dw)|(ceil)")
KINDS = {"c": "conv", "p": "max pool", "a": "avg pool"}


@dataclass
class LayerSpec:
    kind: str  # conv, max pool, avg pool
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: Padding | tuple[Padding, Padding] = 0
    dilation: tuple[int, int] = (1, 1)
    filters: int | None = None
    groups: int | str = 1  # or "dw" (depthwise: groups = input channels)
    ceil_mode: bool = False
    bias: bool = True
    text: str = ""


def parse_stack(text: str, default_padding: Padding = "valid") -> list[LayerSpec]:
    """Parse "c3,c3,p2,c3s2" into layer specs; a token that does not parse is a CnnlabError."""
    layers = []
    for raw in text.split(","):
        token = raw.strip().lower()
        m = _TOKEN.fullmatch(token)
        mods = m.group("mods") if m else ""
        if not m or _MOD.sub("", mods):
            raise CnnlabError(
                f"cannot read layer {raw.strip()!r}: use c3 (conv 3x3), p2 (max pool), a2 "
                "(avg pool), then sN stride, dN dilation, pN/psame/pvalid padding, :N filters, "
                "gN groups, dw, ceil; e.g. c3:32s2psame"
            )
        kind = KINDS[m.group("kind")]
        k = (int(m.group("kh")), int(m.group("kw") or m.group("kh")))
        spec = LayerSpec(kind, k, k if kind != "conv" else (1, 1), text=raw.strip())
        spec.padding = default_padding if kind == "conv" else 0
        for s, d, p, f, g, dw, ceil in _MOD.findall(mods):
            if s:
                spec.stride = (int(s), int(s))
            elif d:
                spec.dilation = (int(d), int(d))
            elif p:
                spec.padding = p if p in ("same", "valid") else int(p)
            elif f:
                spec.filters = int(f)
            elif g:
                spec.groups = int(g)
            elif dw:
                spec.groups = "dw"
            elif ceil:
                spec.ceil_mode = True
        if kind != "conv" and (spec.filters or spec.groups != 1):
            raise CnnlabError(f"layer {raw.strip()!r}: filters and groups apply to convs only")
        layers.append(spec)
    if not layers:
        raise CnnlabError("--layers is empty")
    return layers


def _axis_padding(padding, axis: int):
    if isinstance(padding, tuple):
        return padding[axis]
    return padding


def evaluate_stack(
    size: tuple[int, int], layers: list[LayerSpec], in_channels: int | None = None
) -> list[dict[str, Any]]:
    """Per layer: output size, unused input rows/cols, receptive field, jump, start, params."""
    h, w = size
    channels = in_channels
    fields = [RFStep(1, 1, 0.0), RFStep(1, 1, 0.0)]
    rows = []
    for i, spec in enumerate(layers, 1):
        where = f"layer {i} ({spec.text or spec.kind})"
        out, unused, pads, new_fields = [], [], [], []
        for ax, n in enumerate((h, w)):
            k, s, d = spec.kernel[ax], spec.stride[ax], spec.dilation[ax]
            p = _axis_padding(spec.padding, ax)
            try:
                before_after = resolve_padding(p, n, k, s, d)
                if spec.kind != "conv" and max(before_after) > k // 2:
                    raise CnnlabError(f"pool padding must be at most half the kernel ({k // 2})")
                out.append(conv_output_size(n, k, s, before_after, d, spec.ceil_mode))
                unused.append(unused_input(n, k, s, before_after, d, spec.ceil_mode))
            except CnnlabError as e:
                raise CnnlabError(f"{where} on a {h}x{w} input: {e}") from None
            pads.append(before_after)
            new_fields.append(
                receptive_field([ConvGeometry(k, s, before_after[0], d)], fields[ax])[0]
            )
        params = None
        if spec.kind == "conv" and channels is not None and spec.filters:
            groups = channels if spec.groups == "dw" else int(spec.groups)
            try:
                params = conv_params(channels, spec.filters, spec.kernel, spec.bias, groups)
            except CnnlabError as e:
                raise CnnlabError(f"{where}: {e}") from None
        if spec.kind == "conv":
            channels = spec.filters if spec.filters else None
        fields = new_fields
        rows.append({
            "layer": spec.text or spec.kind, "kind": spec.kind, "kernel": list(spec.kernel),
            "stride": list(spec.stride), "padding": [list(p) for p in pads],
            "dilation": list(spec.dilation), "ceil_mode": spec.ceil_mode,
            "output": out, "unused": unused, "channels": channels, "params": params,
            "rf": [f.rf for f in fields], "jump": [f.jump for f in fields],
            "start": [f.start for f in fields],
        })  # fmt: skip
        h, w = out
    return rows


def _hw(v: list) -> str:
    return str(v[0]) if v[0] == v[1] else f"{v[0]}x{v[1]}"


def format_stack(size: tuple[int, int], rows: list[dict[str, Any]]) -> str:
    head = ["#", "layer", "kind", "pad", "output", "unused", "RF", "jump", "start", "ch", "params"]
    body = []
    for i, r in enumerate(rows, 1):
        pads = {f"{a}+{b}" if a != b else str(a) for a, b in r["padding"]}
        body.append([
            str(i), r["layer"], r["kind"].replace(" ", "-"), "/".join(sorted(pads)),
            f"{r['output'][0]}x{r['output'][1]}", _hw(r["unused"]),
            _hw(r["rf"]), _hw(r["jump"]), _hw([f"{s:g}" for s in r["start"]]),
            "-" if r["channels"] is None else str(r["channels"]),
            "-" if r["params"] is None else f"{r['params']:,}",
        ])  # fmt: skip
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [f"input {size[0]}x{size[1]}", fmt.format(*head).rstrip()]
    lines += [fmt.format(*b).rstrip() for b in body]
    total = [r["params"] for r in rows if r["params"] is not None]
    if total:
        lines.append(f"conv parameters: {sum(total):,}")
    lines.append(
        "unused: input rows/cols no window reads; RF: input pixels one unit sees; jump: "
        "effective stride; start: centre of the first unit's field"
    )
    return "\n".join(lines)


def describe_layer(
    size: tuple[int, int],
    spec: LayerSpec,
    in_channels: int | None = None,
) -> tuple[dict[str, Any], str]:
    """One layer explained: the formula with numbers, output, unused input, 'same' padding, params."""
    row = evaluate_stack(size, [spec], in_channels)[0]
    axes = ["rows", "columns"]
    lines = []
    kh, kw = spec.kernel
    label = spec.kind if spec.kind != "conv" else "conv"
    pad_text = spec.padding if isinstance(spec.padding, str) else row["padding"]
    lines.append(
        f"{label} {kh}x{kw}, stride {_hw(list(spec.stride))}, padding {pad_text}, "
        f"dilation {_hw(list(spec.dilation))}{', ceil mode' if spec.ceil_mode else ''} "
        f"on a {size[0]}x{size[1]} input"
    )
    formulas = []
    for ax in range(2):
        f = conv_formula(size[ax], spec.kernel[ax], spec.stride[ax], tuple(row["padding"][ax]),
                         spec.dilation[ax], spec.ceil_mode)  # fmt: skip
        formulas.append(f)
    if formulas[0] == formulas[1]:
        lines.append(formulas[0])
    else:
        lines += [f"height: {formulas[0]}", f"width:  {formulas[1]}"]
    lines.append(f"output: {row['output'][0]}x{row['output'][1]}")
    unused = row["unused"]
    if any(unused):
        parts = [f"{u} {axes[ax][:-1] if u == 1 else axes[ax]}" for ax, u in enumerate(unused) if u]
        lines.append(f"unused input: {' and '.join(parts)} never read by any window")
    else:
        lines.append("unused input: none (every input row and column is read)")
    same = [same_padding(size[ax], spec.kernel[ax], spec.stride[ax], spec.dilation[ax])
            for ax in range(2)]  # fmt: skip
    outs = [-(-size[ax] // spec.stride[ax]) for ax in range(2)]
    lines.append(
        f"'same' padding (output ceil(in/stride) = {outs[0]}x{outs[1]}) needs "
        + ", ".join(f"{b} before + {a} after" for b, a in _dedupe(same))
        + (" (rows, columns)" if len(_dedupe(same)) > 1 else "")
    )
    rf, jump = row["rf"], row["jump"]
    lines.append(f"receptive field of one output unit: {rf[0]}x{rf[1]}, jump {_hw(jump)}")
    if row["params"] is not None:
        c = in_channels
        g = c if spec.groups == "dw" else int(spec.groups)
        per = f"{kh}*{kw}*{c}" + (f"/{g}" if g != 1 else "")
        lines.append(
            f"parameters: ({per} + {int(spec.bias)}) * {spec.filters} = {row['params']:,} "
            "(stride and padding never change it)"
        )
    row["same_padding"] = [list(p) for p in same]
    row["formula"] = formulas
    return row, "\n".join(lines)


def _dedupe(items: list) -> list:
    return items if items[0] != items[1] else items[:1]


def spec_from_args(
    kernel: str, stride: str, padding: str, dilation: str, pool: str | None, ceil_mode: bool,
    filters: int | None, groups: str, bias: bool,
) -> LayerSpec:  # fmt: skip
    """The single-layer flags of `cnnlab conv` as a LayerSpec (sizes may be N or HxW)."""
    k = parse_pair(kernel, "--kernel")
    kind = {"max": "max pool", "avg": "avg pool", None: "conv"}[pool]
    s = parse_pair(stride, "--stride") if stride else (k if pool else (1, 1))
    pad: Any = padding.lower()
    if pad not in ("same", "valid"):
        p = parse_pair(pad, "--padding", minimum=0)
        pad = p[0] if p[0] == p[1] else p
    g: int | str = "dw" if groups == "dw" else int(parse_pair(groups, "--groups")[0])
    return LayerSpec(kind, k, s, pad, parse_pair(dilation, "--dilation"), filters, g, ceil_mode,
                     bias, text=f"{kind} {k[0]}x{k[1]}")  # fmt: skip


def parse_pair(text: str, flag: str, minimum: int = 1) -> tuple[int, int]:
    """'3' or '3x5' to a pair; anything else (or below `minimum`) is a CnnlabError."""
    try:
        parts = [int(p) for p in str(text).lower().split("x")]
    except ValueError:
        raise CnnlabError(f"{flag} must be a number or HxW, got {text!r}") from None
    if len(parts) not in (1, 2) or min(parts) < minimum:
        raise CnnlabError(f"{flag} must be a number >= {minimum} or HxW, got {text!r}")
    return pair(parts[0] if len(parts) == 1 else (parts[0], parts[1]))
