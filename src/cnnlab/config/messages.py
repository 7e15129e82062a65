"""pydantic's ValidationError as one line a person can act on: the key (`train.lr`,
`data.mean[1]`), what it takes (an integer, 'sgd' | 'adam', a number in [0, 1)), what it got,
and for an unknown key the nearest known one and the rest."""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ValidationError

from cnnlab.errors import CnnlabError

EXPECTED = {  # pydantic's error type -> what the key takes
    "int_type": "an integer", "int_from_float": "an integer", "int_parsing": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "bool_type": "true or false", "bool_parsing": "true or false", "string_type": "a string",
    "list_type": "a list", "dict_type": "a mapping", "model_type": "a mapping of settings",
}  # fmt: skip
BOUNDS = ("ge", "gt", "le", "lt")


@dataclass
class Spot:
    """Where an error's `loc` points in the recipe's types."""

    path: str  # train.lr, data.mean[1], train.freeze_after.conv1
    tp: Any = None  # the type expected there (Annotated and Optional stripped)
    bounds: dict[str, float] = field(default_factory=dict)
    section: type[BaseModel] | None = None  # the section the last key belongs to
    union_at: int | None = None  # the index in `loc` of a union member's tag, if one was passed


def recipe_error(error: ValidationError, model: type[BaseModel], prefix: str = "") -> CnnlabError:
    """The first problem (an unknown key before any other, as the keys are read first)."""
    errors = error.errors(include_url=False)
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    spot = locate(model, first["loc"], prefix)
    if spot.union_at is None:
        return CnnlabError(sentence(spot, first))
    at = first["loc"][: spot.union_at]  # each member of the union reported its own error
    members = [e for e in errors if e["loc"][: spot.union_at] == at and len(e["loc"]) > len(at)]
    deepest = max(members, key=lambda e: len(e["loc"]))
    if len(deepest["loc"]) > min(len(e["loc"]) for e in members):  # one member got further in
        return CnnlabError(
            sentence(locate(model, deepest["loc"], prefix, into_unions=True), deepest)
        )
    union = locate(model, at, prefix)
    finite = next((e for e in members if e["type"] == "finite_number"), None)
    if finite:
        return CnnlabError(sentence(union, finite))
    return CnnlabError(f"{union.path}: {deepest['input']!r} is not {type_name(union.tp)}")


def sentence(spot: Spot, error: dict) -> str:
    kind, given, where = error["type"], error["input"], spot.path or "recipe"
    if kind == "extra_forbidden":
        return unknown_key(spot)
    if kind == "literal_error":
        return f"{where}: {given!r} is not one of {type_name(spot.tp)}"
    if kind in EXPECTED:
        return f"{where}: expected {EXPECTED[kind]}, got {given!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{where} must be {_bound_phrase(spot, kind)}, got {given!r}"
    if kind == "recipe_rule":  # sections.rule: the message is the phrase
        return f"{where} {error['msg']}, got {given!r}"
    return f"{where}: {error['msg']} (got {given!r})"


def unknown_key(spot: Spot) -> str:
    section, _, key = spot.path.rpartition(".")
    known = sorted(spot.section.model_fields) if spot.section else []
    text = f"unknown recipe key {spot.path}"
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        text += f" (did you mean {section + '.' if section else ''}{close[0]}?)"
    return f"{text}; valid keys here: {', '.join(known)}"


def _bound_phrase(spot: Spot, kind: str) -> str:
    b = spot.bounds
    if spot.tp is int:  # a count: say the side it crossed
        if kind.startswith("greater"):
            return f"at least {b['ge'] if 'ge' in b else b['gt'] + 1:,}"
        return f"at most {b['le'] if 'le' in b else b['lt'] - 1:,}"
    return bounds_text(spot.tp, b)


def bounds_text(tp: Any, b: dict[str, float]) -> str:
    """`in [0, 1)`, `positive`, `>= 0`, or for an integer `from 1 to 10,000`."""
    lo, hi = b.get("ge", b.get("gt")), b.get("le", b.get("lt"))
    if tp is int and "ge" in b and "le" in b:
        return f"from {lo:,} to {hi:,}"
    if lo is not None and hi is not None:
        return f"in {'[' if 'ge' in b else '('}{lo:g}, {hi:g}{']' if 'le' in b else ')'}"
    if b.get("gt") == 0:
        return "positive"
    if lo is not None:
        return f">= {lo:g}" if "ge" in b else f"> {lo:g}"
    return f"<= {hi:g}" if "le" in b else f"< {hi:g}" if hi is not None else ""


def locate(model: type[BaseModel], loc: tuple, prefix: str = "", into_unions: bool = False) -> Spot:
    """Walk `loc` (('train', 'lr'), ('data', 'mean', 1)) through the models' annotations."""
    keys, (tp, meta), section = [prefix] if prefix else [], (model, []), model
    union_at = None
    for i, part in enumerate(loc):
        tp, meta = strip(tp, meta)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            keys.append(str(part))
            section, info = tp, tp.model_fields.get(part)
            tp, meta = (info.annotation, list(info.metadata)) if info else (None, [])
        elif _members(tp) and isinstance(part, str):  # pydantic names the union's member tried
            union_at = i if union_at is None else union_at
            if not into_unions:
                break
            tp, meta = _member(tp, part), []
        elif typing.get_origin(tp) is list and isinstance(part, int):
            keys[-1] += f"[{part}]"
            tp, meta = typing.get_args(tp)[0], []
        elif typing.get_origin(tp) is dict:
            key_error = loc[i + 1 : i + 2] == ("[key]",)
            keys.append(f"{part} (the key)" if key_error else str(part))
            tp, meta = typing.get_args(tp)[0 if key_error else 1], []
            if key_error:
                break
    tp, meta = strip(tp, meta)
    return Spot(".".join(keys), tp, bounds_of(meta), section, union_at)


def strip(tp: Any, meta: list) -> tuple[Any, list]:
    """Annotated[...] -> its type (metadata kept); X | None -> X."""
    while True:
        if typing.get_origin(tp) is Annotated:
            tp, *more = typing.get_args(tp)
            meta = [*meta, *more]
        elif _is_union(tp) and type(None) in typing.get_args(tp) and len(typing.get_args(tp)) == 2:
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp, meta


def bounds_of(meta: list) -> dict[str, float]:
    found = {}
    for m in meta:
        for item in [m, *getattr(m, "metadata", [])]:  # a Field() inside Annotated holds its own
            found.update(
                {k: getattr(item, k) for k in BOUNDS if getattr(item, k, None) is not None}
            )
    return found


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _members(tp: Any) -> list:
    return [a for a in typing.get_args(tp) if a is not type(None)] if _is_union(tp) else []


def _member(tp: Any, tag: str) -> Any:
    """The union member pydantic tagged `tag` ('bool', "literal['alternate']", 'list[float]')."""
    head = tag.partition("[")[0]
    for member in _members(tp):
        base = strip(member, [])[0]
        origin = typing.get_origin(base)
        name = "literal" if origin is Literal else getattr(origin or base, "__name__", "")
        if name == head:
            return member
    return tp


def type_name(tp: Any) -> str:
    """A type as the recipe's author reads it: 'sgd' | 'adam', a number, true, false or null."""
    tp = strip(tp, [])[0] if not _is_union(tp) else tp
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if _is_union(tp):
        parts = ["null" if a is type(None) else type_name(a) for a in typing.get_args(tp)]
        return ", ".join(parts[:-1]) + " or " + parts[-1]
    origin = typing.get_origin(tp)
    if origin is list:
        return (
            f"a list of {type_name(typing.get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}s"
        )
    names = {bool: "true, false", int: "an integer", float: "a number", str: "a string",
             dict: "a mapping", Any: "anything"}  # fmt: skip
    return names.get(origin or tp) or getattr(tp, "__name__", str(tp))
