"""Conv arithmetic without running a model: output sizes, 'same' padding, unused input, params.

Pure functions on integers, one spatial axis at a time (`*_shape` variants take pairs), checked
against real PyTorch tensor shapes in tests. The brief's worked examples:

>>> conv_output_size(32, 3, stride=1, padding="valid")
30
>>> conv_output_size(32, 3, stride=1, padding="same")
32
>>> conv_output_size(32, 3, stride=2, padding="valid")  # (32 - 3) / 2 + 1 = 15.5: the .5 is dropped
15
>>> unused_input(32, 3, stride=2, padding="valid")
1
>>> conv_params(3, 64, 3), conv_params(3, 64, 5)
(1792, 4864)
>>> [step.rf for step in receptive_field([ConvGeometry(3), ConvGeometry(3)])]  # 3x3, then 5x5
[3, 5]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cnnlab.errors import CnnlabError

Padding = int | str | tuple[int, int]  # 'valid', 'same', symmetric int, or (before, after)
Pair = int | tuple[int, int]


def pair(value: Pair, what: str = "value") -> tuple[int, int]:
    """An int or an (h, w) pair as an (h, w) pair."""
    if isinstance(value, int):
        return (value, value)
    h, w = value
    return (int(h), int(w))


def effective_kernel(kernel: int, dilation: int = 1) -> int:
    """Span of a dilated kernel: d(k - 1) + 1 (a 3x3 kernel with dilation 2 spans 5x5)."""
    _positive(kernel=kernel, dilation=dilation)
    return dilation * (kernel - 1) + 1


def same_padding(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding that gives ceil(size / stride) outputs; odd totals pad more after.

    This is TensorFlow/Keras 'same' and, for stride 1, PyTorch's `padding='same'`.
    """
    _positive(size=size, stride=stride)
    out = -(-size // stride)
    total = max((out - 1) * stride + effective_kernel(kernel, dilation) - size, 0)
    return (total // 2, total - total // 2)


def resolve_padding(
    padding: Padding, size: int, kernel: int, stride: int = 1, dilation: int = 1
) -> tuple[int, int]:
    """'valid' / 'same' / int / (before, after) to explicit (before, after) for one axis."""
    if isinstance(padding, str):
        name = padding.lower()
        if name == "valid":
            return (0, 0)
        if name == "same":
            return same_padding(size, kernel, stride, dilation)
        raise CnnlabError(f"padding must be 'valid', 'same' or a number, not {padding!r}")
    if isinstance(padding, int):
        before = after = padding
    else:
        before, after = (int(p) for p in padding)
    if before < 0 or after < 0:
        raise CnnlabError(f"padding must be >= 0, got {padding}")
    return (before, after)


def conv_output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: Padding = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """floor((in + p_before + p_after - k_eff) / s) + 1, or ceil with PyTorch's pooling rule.

    With `ceil_mode` the last window may overhang the input, but must start inside it or in
    the left padding (PyTorch's rule, so a pool never produces a window of padding only).
    Raises CnnlabError when the output would be smaller than 1.
    """
    _positive(size=size, kernel=kernel, stride=stride, dilation=dilation)
    before, after = resolve_padding(padding, size, kernel, stride, dilation)
    k_eff = effective_kernel(kernel, dilation)
    span = size + before + after - k_eff
    out = span // stride + 1
    if ceil_mode:  # the last window may overhang the end but must start inside input or left pad
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + before:
            out -= 1
    if out < 1:
        raise CnnlabError(
            f"kernel spans {k_eff} but the padded input is only {size + before + after} "
            f"(size {size}, padding {before}+{after}): the output would be < 1"
        )
    return out


def pool_output_size(
    size: int,
    kernel: int,
    stride: int | None = None,
    padding: Padding = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Pooling is the same arithmetic with stride defaulting to the kernel size."""
    return conv_output_size(size, kernel, stride or kernel, padding, dilation, ceil_mode)


def conv_output_shape(
    size: Pair,
    kernel: Pair,
    stride: Pair = 1,
    padding: Padding | tuple[int, int] = 0,
    dilation: Pair = 1,
    ceil_mode: bool = False,
) -> tuple[int, int]:
    """(H, W) version of `conv_output_size`; a padding pair is (pad_h, pad_w) as in PyTorch."""
    pads = (padding, padding) if isinstance(padding, int | str) else pair(padding)
    return tuple(  # type: ignore[return-value]
        conv_output_size(n, k, s, p, d, ceil_mode)
        for n, k, s, p, d in zip(
            pair(size), pair(kernel), pair(stride), pads, pair(dilation), strict=True
        )
    )


def used_positions(
    size: int, kernel: int, stride: int = 1, padding: Padding = 0, dilation: int = 1,
    ceil_mode: bool = False,
) -> list[int]:  # fmt: skip
    """Input positions (0-based, padding excluded) that at least one kernel tap reads."""
    spans = _used_spans(size, kernel, stride, padding, dilation, ceil_mode)
    return sorted(r + k * stride for r, a, b in spans for k in range(a, b + 1))


def _used_spans(
    size: int, kernel: int, stride: int, padding: Padding, dilation: int, ceil_mode: bool
) -> list[tuple[int, int, int]]:
    """The positions read, as (r, a, b): positions r + k * stride for k from a to b.

    Tap t reads c + o * stride for every output o, with c = t * dilation - before: a run in
    the residue class of c modulo the stride. Runs of one class merge into spans, so the cost
    follows the kernel, not the input (listing every tap of a 10**8 input took a minute and
    ran out of memory)."""
    out = conv_output_size(size, kernel, stride, padding, dilation, ceil_mode)
    before, _ = resolve_padding(padding, size, kernel, stride, dilation)
    starts: dict[int, list[int]] = {}
    for t in range(kernel):
        c = t * dilation - before
        starts.setdefault(c % stride, []).append(c // stride)
    spans = []
    for r, firsts in starts.items():
        last_k = (size - 1 - r) // stride  # the last k with r + k * stride inside the input
        open_a = open_b = None
        for k0 in sorted(firsts):
            a, b = max(k0, 0), min(k0 + out - 1, last_k)
            if a > b:
                continue
            if open_b is not None and a <= open_b + 1:
                open_b = max(open_b, b)
                continue
            if open_b is not None:
                spans.append((r, open_a, open_b))
            open_a, open_b = a, b
        if open_b is not None:
            spans.append((r, open_a, open_b))
    return spans


def unused_input(
    size: int, kernel: int, stride: int = 1, padding: Padding = 0, dilation: int = 1,
    ceil_mode: bool = False,
) -> int:  # fmt: skip
    """How many input rows (or columns) no kernel tap ever reads: wasted pixels.

    Usually the trailing ones when (in + 2p - k) is not a multiple of the stride, but also
    gaps between windows when the stride outruns the (dilated) kernel, e.g. 1x1 stride 2.
    """
    spans = _used_spans(size, kernel, stride, padding, dilation, ceil_mode)
    return size - sum(b - a + 1 for _, a, b in spans)


def conv_params(
    in_channels: int, out_channels: int, kernel: Pair, bias: bool = True, groups: int = 1
) -> int:
    """(kh * kw * c_in / groups + bias) * filters; stride and padding never change it.

    Depthwise is groups = in_channels: each filter sees one input channel.
    """
    _positive(in_channels=in_channels, out_channels=out_channels, groups=groups)
    if in_channels % groups or out_channels % groups:
        raise CnnlabError(
            f"groups={groups} must divide both in_channels={in_channels} and filters={out_channels}"
        )
    kh, kw = pair(kernel)
    return (kh * kw * (in_channels // groups) + int(bias)) * out_channels


def conv_mult_adds(
    out_size: Pair, in_channels: int, out_channels: int, kernel: Pair, groups: int = 1
) -> int:
    """Multiply-adds of one conv layer for one image: every output value is a kh*kw*c_in/g dot."""
    oh, ow = pair(out_size)
    kh, kw = pair(kernel)
    return oh * ow * out_channels * kh * kw * (in_channels // groups)


@dataclass(frozen=True)
class ConvGeometry:
    """One layer's geometry along one axis: what the receptive field depends on."""

    kernel: int
    stride: int = 1
    padding: int = 0  # padding before (left/top); the end padding does not move the field
    dilation: int = 1


@dataclass(frozen=True)
class RFStep:
    """Receptive field after a layer: size `rf`, jump (effective stride) and start.

    `start` is the centre of the first output unit's field in input coordinates (it can be
    negative, inside the padding); unit i is centred at start + i * jump.
    """

    rf: int
    jump: int
    start: float


def receptive_field(layers: list[ConvGeometry], input_rf: RFStep | None = None) -> list[RFStep]:
    """Field growth of a plain stack: r += (k_eff - 1) * j; j *= s; start += ((k_eff-1)/2 - p) * j."""
    step = input_rf or RFStep(1, 1, 0.0)
    out = []
    for g in layers:
        k_eff = effective_kernel(g.kernel, g.dilation)
        step = RFStep(
            rf=step.rf + (k_eff - 1) * step.jump,
            jump=step.jump * g.stride,
            start=step.start + ((k_eff - 1) / 2 - g.padding) * step.jump,
        )
        out.append(step)
    return out


def conv_formula(
    size: int, kernel: int, stride: int = 1, padding: Padding = 0, dilation: int = 1,
    ceil_mode: bool = False,
) -> str:  # fmt: skip
    """The output-size formula with the numbers filled in, for people learning it."""
    before, after = resolve_padding(padding, size, kernel, stride, dilation)
    k_eff = effective_kernel(kernel, dilation)
    out = conv_output_size(size, kernel, stride, padding, dilation, ceil_mode)
    pad = f"2*{before}" if before == after else f"{before}+{after}"
    rnd = "ceil" if ceil_mode else "floor"
    exact = (size + before + after - k_eff) / stride
    text = f"out = {rnd}(({size} - {k_eff} + {pad}) / {stride}) + 1 = {rnd}({exact:g}) + 1 = {out}"
    if dilation > 1:
        text = f"k_eff = {dilation}*({kernel}-1)+1 = {k_eff}; " + text
    if ceil_mode and out != math.ceil(exact) + 1:
        text += " (last window would start in the right padding, so dropped)"
    return text


def _positive(**values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise CnnlabError(f"{name} must be a whole number >= 1, got {v!r}")
