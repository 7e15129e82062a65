"""The README's recipe reference, rendered from the models in cnnlab.config.sections: every
key with its default, what it takes and what it means. tests/test_readme.py checks that the
README holds exactly this; `python -m cnnlab.config.reference README.md` rewrites it there."""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from cnnlab.config.messages import bounds_of, bounds_text, strip, type_name
from cnnlab.config.sections import Recipe

BEGIN = "<!-- recipe keys: `python -m cnnlab.config.reference README.md` writes this table -->"
END = "<!-- end of recipe keys -->"


def reference() -> str:
    """Markdown: one table per section, keys in the order a recipe lists them."""
    top = {k: f for k, f in Recipe.model_fields.items() if not _section(f)}
    parts = [_table("", top)]
    for name, info in Recipe.model_fields.items():
        if section := _section(info):
            what = (section.__doc__ or "").strip().splitlines()[0]
            parts.append(f"**`{name}`**: {what}\n\n{_table(name, section.model_fields)}")
    return "\n\n".join(parts) + "\n"


def _section(info: FieldInfo) -> type[BaseModel] | None:
    tp = strip(info.annotation, [])[0]
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _table(prefix: str, fields: dict[str, FieldInfo]) -> str:
    rows = ["| key | default | takes | meaning |", "|---|---|---|---|"]
    for name, info in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        cells = [f"`{key}`", f"`{_yaml(info.get_default(call_default_factory=True))}`",
                 takes(info), info.description or ""]  # fmt: skip
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)


def takes(info: FieldInfo) -> str:
    """'an integer, from 1 to 10,000', 'a number, in [0, 1)', "'sgd' | 'adam'", and any rule."""
    tp, meta = strip(info.annotation, list(info.metadata))
    words = [type_name(info.annotation), bounds_text(tp, bounds_of(meta))]
    words += [phrase.removeprefix("must be ") for phrase in _rules(info)]
    if typing.get_origin(tp) in (list, dict):  # bounds on each item (data.std, train.freeze_after)
        item, item_meta = strip(typing.get_args(tp)[-1], [])
        words.append(f"each {bounds_text(item, bounds_of(item_meta))}".removesuffix("each "))
    return ", ".join(w for w in words if w)


def _rules(info: FieldInfo) -> list[str]:
    """The phrases of the sections.rule checks anywhere in the field's type."""
    found, todo = [], [info.annotation, *info.metadata]
    while todo:
        item = todo.pop(0)
        found += [item.func.phrase] if hasattr(getattr(item, "func", None), "phrase") else []
        todo += [*getattr(item, "__metadata__", ()), *getattr(item, "__args__", ())]
    return found


def _yaml(value: Any) -> str:
    """A default as a recipe writes it."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return json.dumps(value) if isinstance(value, list | dict) or value == "" else str(value)


def replace_block(text: str) -> str:
    """`text` (the README) with the block between BEGIN and END made from the models."""
    head, begin, rest = text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"the README has no {BEGIN} ... {END} block")
    return f"{head}{BEGIN}\n\n{reference()}\n{END}{tail}"


if __name__ == "__main__":  # python -m cnnlab.config.reference [README.md]
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
        path.write_text(replace_block(path.read_text()))
    else:
        sys.stdout.write(reference())
