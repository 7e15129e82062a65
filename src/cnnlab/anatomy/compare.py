"""The classic-architecture comparison (brief point 5), generated from the models' own code.

Every number but the year and the headline result (registry `meta`) comes from building the
model at its native input and running `summarize` on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch.nn as nn

from cnnlab.anatomy.summary import target_summary
from cnnlab.errors import CnnlabError


@dataclass
class ArchRow:
    name: str
    year: int | None
    input: str  # C x H x W
    conv_layers: int
    fc_layers: int
    filter_sizes: list[str]  # distinct conv kernels, largest first
    params: int
    mult_adds: int
    receptive_field: str  # of the last feature map
    output_values: int  # numbers all layers output for one image (not activation functions)
    result: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_models(names: list[str]) -> list[ArchRow]:
    """Build each model at its native input and measure it (on the meta device where it can:
    VGG-16 then costs no memory and no compute)."""
    rows = []
    for name in names:
        target, s = target_summary(name)
        modules = dict(target.model.named_modules())
        convs = [modules[r.name.split("#")[0]] for r in s.rows if r.type.startswith("Conv")]
        kernels = sorted({tuple(m.kernel_size) for m in convs if isinstance(m, nn.Conv2d)},
                         reverse=True)  # fmt: skip
        final = s.final_field()
        meta = _meta(name)
        rows.append(
            ArchRow(
                name=name,
                year=meta.get("year"),
                input="x".join(map(str, target.input_shape)),
                conv_layers=len(convs),
                fc_layers=sum(1 for r in s.rows if r.type == "Linear"),
                filter_sizes=[f"{h}x{w}" for h, w in kernels],
                params=s.total_params,
                mult_adds=s.mult_adds,
                receptive_field=final.describe() if final else "-",
                output_values=sum(_numel(r.output_shape) for r in s.rows),
                result=str(meta.get("result", "")),
            )
        )
    return rows


def _meta(name: str) -> dict[str, Any]:
    from cnnlab.models import get_entry

    try:
        return dict(get_entry(name).meta)
    except CnnlabError:  # a timm name has no registry meta
        return {}


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _short(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


HEADERS = ["model", "year", "input", "conv/fc", "filters", "params", "mult-adds",
           "final RF", "layer outputs", "headline result"]  # fmt: skip


def _cells(r: ArchRow) -> list[str]:
    return [
        r.name, str(r.year or "-"), r.input, f"{r.conv_layers}/{r.fc_layers}",
        ", ".join(r.filter_sizes), f"{r.params:,}", _short(r.mult_adds), r.receptive_field,
        _short(r.output_values), r.result or "-",
    ]  # fmt: skip


def format_comparison(rows: list[ArchRow], markdown: bool = False) -> str:
    body = [_cells(r) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(HEADERS, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*HEADERS).rstrip()] + [fmt.format(*b).rstrip() for b in body]
    lines.append(
        "mult-adds at the native input, one image; final RF: receptive field of the last "
        "feature map; layer outputs: how many numbers all layers output for one image"
    )
    return "\n".join(lines)


def plot_comparison(rows: list[ArchRow]):
    """Bar chart of parameters and mult-adds, log scale (they span four orders of magnitude)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{r.name}\n({r.year})" if r.year else r.name for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.6 * len(rows), 4.2), constrained_layout=True)
    for ax, key, title, colour in (
        (axes[0], "params", "parameters", "#4c72b0"),
        (axes[1], "mult_adds", "multiply-adds per image", "#dd8452"),
    ):
        values = [getattr(r, key) for r in rows]
        bars = ax.bar(names, values, color=colour)
        ax.set_yscale("log")
        ax.set_title(f"{title} (log scale)")
        ax.bar_label(bars, labels=[_short(v) for v in values], padding=2, fontsize=9)
        ax.set_ylim(min(values) / 3, max(values) * 8)
        ax.grid(axis="y", which="major", alpha=0.3)
    fig.suptitle("Classic CNNs compared, from cnnlab's own model code")
    return fig
