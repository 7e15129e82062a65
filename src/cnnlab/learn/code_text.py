"""How a value from a recipe, a bundle or a file name becomes text in a generated script.

A generated script is code its user runs, and the values come from files anyone may have
written: a description that closes a docstring (`x\"\"\"` then a line of code) would run when the
script is merely asked for `--help`. So a value is only ever written as a Python literal that
reads back equal (`literal`): assigned to a variable that the docstrings refer to, or in a
comment as that literal, which holds no line break. Nothing is pasted into a docstring.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from cnnlab.errors import CnnlabError

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,99}")


def literal(value: Any) -> str:
    """`value` as Python source that `ast.literal_eval` reads back equal: `repr` escapes quotes,
    backslashes, newlines and every other unprintable character, and the read back proves it."""
    text = repr(value)
    try:
        same = ast.literal_eval(text) == value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        same = False
    if not same or "\n" in text or "\r" in text:
        raise CnnlabError(f"cannot write {type(value).__name__} {text[:60]} as a Python literal")
    return text


def model_word(name: str) -> str:
    """A registered model's name for a docstring (`keras_mnist_cnn`, `timm/resnet18`); any
    other text is not written there."""
    return name if _PLAIN_NAME.fullmatch(name) else "the model"
