"""Inspect a CNN without training it: conv arithmetic on paper, a Keras-style summary with
receptive fields computed on the real forward graph, and the classic architectures compared."""

from cnnlab.inspect.arithmetic import (
    ConvGeometry,
    conv_mult_adds,
    conv_output_shape,
    conv_output_size,
    conv_params,
    pool_output_size,
    receptive_field,
    same_padding,
    unused_input,
)
from cnnlab.inspect.receptive import Field
from cnnlab.inspect.summary import LayerRow, Summary, format_summary, summarize, target_summary
from cnnlab.inspect.target import Target, load_target

__all__ = [
    "ConvGeometry", "Field", "LayerRow", "Summary", "Target", "conv_mult_adds", "conv_output_shape",
    "conv_output_size", "conv_params", "format_summary", "load_target", "pool_output_size",
    "receptive_field", "same_padding", "summarize", "target_summary", "unused_input",
]  # fmt: skip
