"""One convolution worked out by hand: where the kernel sits for each output position, which
input rows and columns it never reads, and on a real image with a model's real filter,
"patch x filter + bias = value" -- the same number `torch.nn.functional.conv2d` gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.anatomy.arithmetic import (
    Padding,
    conv_formula,
    conv_mult_adds,
    conv_output_size,
    conv_params,
    effective_kernel,
    pair,
    resolve_padding,
    used_positions,
)
from cnnlab.errors import CnnlabError


@dataclass(frozen=True)
class ConvSetting:
    """One conv layer's geometry on one input, both axes, padding resolved to (before, after)."""

    size: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]  # (top, bottom), (left, right)
    dilation: tuple[int, int]
    asked: str  # the padding as asked: valid, same or a number

    @classmethod
    def make(cls, size, kernel=3, stride=1, padding: Padding = "valid", dilation=1) -> ConvSetting:
        """From ints or (h, w) pairs and 'valid' / 'same' / a number; bad values are CnnlabErrors."""
        size, kernel, stride, dilation = pair(size), pair(kernel), pair(stride), pair(dilation)
        pads = []
        for ax in range(2):
            p = resolve_padding(padding, size[ax], kernel[ax], stride[ax], dilation[ax])
            conv_output_size(size[ax], kernel[ax], stride[ax], p, dilation[ax])  # checks all
            pads.append(p)
        return cls(size, kernel, stride, (pads[0], pads[1]), dilation, str(padding))

    @property
    def out(self) -> tuple[int, int]:
        return tuple(  # type: ignore[return-value]
            conv_output_size(self.size[a], self.kernel[a], self.stride[a], self.padding[a],
                             self.dilation[a]) for a in range(2)
        )  # fmt: skip

    @property
    def positions(self) -> int:
        return self.out[0] * self.out[1]

    def unit(self, position: int) -> tuple[int, int]:
        """Output (row, col) of a position counted row by row from 0."""
        if not 0 <= position < self.positions:
            raise CnnlabError(f"position must be 0..{self.positions - 1}, got {position}")
        return divmod(position, self.out[1])

    def taps(self, position: int) -> list[tuple[int, int]]:
        """Input (row, col) of every kernel tap at this position (negative or past the end:
        padding)."""
        oy, ox = self.unit(position)
        (top, _), (left, _) = self.padding
        rows = [oy * self.stride[0] + i * self.dilation[0] - top for i in range(self.kernel[0])]
        cols = [ox * self.stride[1] + j * self.dilation[1] - left for j in range(self.kernel[1])]
        return [(r, c) for r in rows for c in cols]

    def unused(self) -> tuple[list[int], list[int]]:
        """Input rows and columns no kernel tap ever reads."""
        out = []
        for ax in range(2):
            used = set(used_positions(self.size[ax], self.kernel[ax], self.stride[ax],
                                      self.padding[ax], self.dilation[ax]))  # fmt: skip
            out.append([i for i in range(self.size[ax]) if i not in used])
        return out[0], out[1]

    def formula(self) -> list[str]:
        """The output-size formula with these numbers, one line (or one per axis if they differ)."""
        lines = [
            conv_formula(self.size[a], self.kernel[a], self.stride[a], self.padding[a],
                         self.dilation[a]) for a in range(2)
        ]  # fmt: skip
        if lines[0] == lines[1]:
            return lines[:1]
        return [f"rows: {lines[0]}", f"cols: {lines[1]}"]

    def describe(self) -> list[str]:
        """What a student reads beside the drawing: the setting, the formula, what is lost."""
        h, w = self.size
        kh, kw = self.kernel
        text = [
            f"input {h}x{w}, kernel {kh}x{kw}, stride {_hw(self.stride)}, {self.padding_text()}, "
            f"dilation {_hw(self.dilation)}"
            + (f" (the kernel spans {_hw(tuple(effective_kernel(k, d) for k, d in zip(self.kernel, self.dilation, strict=True)))})"
               if self.dilation != (1, 1) else ""),
            *self.formula(),
            f"output {self.out[0]}x{self.out[1]}: {self.positions} positions",
            lost_text(*self.unused()),
        ]  # fmt: skip
        return text

    def padding_text(self) -> str:
        """'padding 1 per side', 'padding same: 1 per side', 'padding same: 1 before, 2 after'
        (rows and columns apart when they differ), 'padding valid: none'."""

        def side(before: int, after: int) -> str:
            return f"{before} per side" if before == after else f"{before} before, {after} after"

        (t, b), (lft, r) = self.padding
        if (t, b, lft, r) == (0, 0, 0, 0):
            detail = "none"
        elif (t, b) == (lft, r):
            detail = side(t, b)
        else:
            detail = f"rows {side(t, b)}; columns {side(lft, r)}"
        return (
            f"padding {self.asked}: {detail}"
            if self.asked in ("same", "valid")
            else f"padding {detail}"
        )

    def parameters(self, in_channels: int, filters: int, bias: bool = True) -> list[str]:
        """The layer's parameter count and mult-adds for `in_channels` in and `filters` out,
        each with its formula filled in (stride, padding and dilation change neither the
        weights nor, past the output size, the work per output)."""
        kh, kw = self.kernel
        oh, ow = self.out
        params = conv_params(in_channels, filters, self.kernel, bias)
        plus = " + 1" if bias else ""
        macs = conv_mult_adds((oh, ow), in_channels, filters, self.kernel)
        return [
            f"parameters = ({kh}*{kw}*{in_channels}{plus}) * {filters} = {params:,}"
            f"  (kernel_h * kernel_w * channels_in{' + bias' if bias else ''}) * filters",
            f"mult-adds = {kh}*{kw}*{in_channels} * {filters} * {oh}*{ow} = {macs:,}"
            "  (per window per filter, times the output positions)",
        ]


def _hw(v: tuple[int, int]) -> str:
    return str(v[0]) if v[0] == v[1] else f"{v[0]}x{v[1]}"


def lost_text(rows: list[int], cols: list[int]) -> str:
    """'lost: row 31 and column 31 are never read' or 'nothing lost: ...'."""
    if not rows and not cols:
        return "nothing lost: every input row and column is read"
    parts = []
    for what, idx in (("row", rows), ("column", cols)):
        if idx:
            shown = ", ".join(map(str, idx[:6])) + (", ..." if len(idx) > 6 else "")
            parts.append(f"{len(idx)} {what}{'s' if len(idx) > 1 else ''} ({shown})")
    return f"lost: {' and '.join(parts)} never read by any window (counting from 0)"


# ----------------------------------------------------------------------------- a real filter


@dataclass
class ConvStep:
    """One output value of one filter, worked out: patch x filter + bias = value."""

    filter: int
    unit: tuple[int, int]  # output (row, col)
    taps: list[tuple[int, int]]  # input (row, col) per tap, row by row
    patch: np.ndarray  # (C, kh, kw) the input values the kernel covers (0 in padding)
    weights: np.ndarray  # (C, kh, kw)
    bias: float | None  # None: the layer has no bias
    value: float

    @property
    def dot(self) -> float:
        return float((self.patch.astype(np.float64) * self.weights).sum())

    def equation(self, digits: int = 4) -> str:
        bias = "0 (no bias)" if self.bias is None else f"{self.bias:.{digits}f}"
        return (f"sum(patch x filter) + bias = {self.dot:.{digits}f} + {bias} = "
                f"{self.value:.{digits}f}")  # fmt: skip


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first Conv2d the model's forward pass runs (its name as `cnnlab summary` prints it)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise CnnlabError("this model has no Conv2d layer")


def layer_setting(conv: nn.Conv2d, size: tuple[int, int]) -> ConvSetting:
    """The ConvSetting of a real Conv2d on an input of `size`."""
    if isinstance(conv.padding, str):
        pad: Padding = conv.padding
    else:
        ph, pw = conv.padding
        pad = ph if ph == pw else (ph, pw)  # type: ignore[assignment]
    if isinstance(pad, tuple):  # different per axis: resolve each one
        s = ConvSetting.make(
            size, tuple(conv.kernel_size), tuple(conv.stride), 0, tuple(conv.dilation)
        )
        return ConvSetting(s.size, s.kernel, s.stride, ((pad[0], pad[0]), (pad[1], pad[1])),
                           s.dilation, f"{pad[0]}x{pad[1]}")  # fmt: skip
    return ConvSetting.make(size, tuple(conv.kernel_size), tuple(conv.stride), pad,
                            tuple(conv.dilation))  # fmt: skip


class RealConv:
    """A model's real first-layer filters on one normalised image (1, C, H, W)."""

    def __init__(self, conv: nn.Conv2d, x: torch.Tensor, name: str = "") -> None:
        if conv.groups != 1:
            raise CnnlabError(f"{name}: grouped convolution is not drawn here")
        self.name = name
        self.x = x.detach().float().cpu()
        self.weight = conv.weight.detach().float().cpu()
        self.bias = None if conv.bias is None else conv.bias.detach().float().cpu()
        self.setting = layer_setting(conv, tuple(x.shape[-2:]))  # type: ignore[arg-type]
        (t, b), (lft, r) = self.setting.padding
        self.padded = F.pad(self.x[0], (lft, r, t, b))  # (C, H + pads, W + pads)

    @property
    def filters(self) -> int:
        return int(self.weight.shape[0])

    def feature_map(self, f: int) -> np.ndarray:
        """The whole (out_h, out_w) map of filter f, by F.conv2d (before any BN or activation)."""
        s = self.setting
        (t, b), (lft, r) = s.padding
        x = F.pad(self.x, (lft, r, t, b))
        bias = None if self.bias is None else self.bias[f : f + 1]
        out = F.conv2d(x, self.weight[f : f + 1], bias, s.stride, 0, s.dilation)
        return out[0, 0].numpy()

    def step(self, f: int, position: int) -> ConvStep:
        s = self.setting
        if not 0 <= f < self.filters:
            raise CnnlabError(f"filter must be 0..{self.filters - 1}, got {f}")
        oy, ox = s.unit(position)
        r0, c0 = oy * s.stride[0], ox * s.stride[1]
        kh, kw = s.kernel
        dh, dw = s.dilation
        patch = self.padded[:, r0 : r0 + dh * (kh - 1) + 1 : dh, c0 : c0 + dw * (kw - 1) + 1 : dw]
        w = self.weight[f]
        bias = None if self.bias is None else float(self.bias[f])
        value = float((patch.double() * w.double()).sum()) + (bias or 0.0)
        return ConvStep(f, (oy, ox), s.taps(position), patch.numpy().copy(), w.numpy().copy(),
                        bias, value)  # fmt: skip
