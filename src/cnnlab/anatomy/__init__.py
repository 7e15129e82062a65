"""Anatomy: a CNN taken apart without training it: conv arithmetic on paper, a Keras-style summary with
receptive fields computed on the real forward graph, and the classic architectures compared.

Names are imported on first use: `cnnlab conv` needs only the arithmetic, which is plain
Python, and must not pay for importing torch (seconds on a small CPU)."""

from cnnlab.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        (
            "ConvGeometry",
            "conv_mult_adds",
            "conv_output_shape",
            "conv_output_size",
            "conv_params",
            "pool_output_size",
            "receptive_field",
            "same_padding",
            "unused_input",
        ),
        "cnnlab.anatomy.arithmetic",
    ),  # fmt: skip
    "Field": "cnnlab.anatomy.receptive",
    **dict.fromkeys(
        ("LayerRow", "Summary", "format_summary", "summarize", "target_summary"),
        "cnnlab.anatomy.summary",
    ),
    "Target": "cnnlab.anatomy.target",
    "load_target": "cnnlab.anatomy.target",
}

lazy_exports(globals(), _EXPORTS)
