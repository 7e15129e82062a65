"""The one way cnnlab parses JSON and YAML that someone else wrote (bundle.json, a recipe, a
`--set` value): a duplicated key is refused, not silently won by its last copy; nesting is
bounded before Python's recursion limit is reached; a YAML alias chain ("billion laughs") is
refused by the size it would expand to, before anything expands it.

Every refusal is a CnnlabError that names the document (`what`) and, for YAML, the line; one
for the shape of well-formed text is a `Refused`.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from cnnlab.errors import CnnlabError

MAX_DEPTH = 64  # a recipe is 3 levels deep, bundle.json 5
MAX_NODES = 100_000  # values in a document once its YAML aliases are expanded


class _Refused(Exception):
    """Raised inside the parsers; turned into one `Refused` by the public functions."""


class Refused(CnnlabError):
    """Well-formed text refused for its shape (a duplicate key, too deep, too large once
    expanded), as opposed to text that does not parse at all."""


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of parsed JSON-like data (a scalar is 0), walked without recursion; a
    value deeper than `limit` raises _Refused as soon as it is seen."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            children = list(v.values())
        elif isinstance(v, list | tuple):
            children = list(v)
        else:
            continue
        d += 1
        deepest = max(deepest, d)
        if d > limit:
            raise _Refused(f"nested more than {limit} levels deep")
        stack.extend((c, d) for c in children)
    return deepest


# ----------------------------------------------------------------------------- JSON


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def strict_json(text: str | bytes, what: str, nonfinite: bool = False) -> Any:
    """Parse JSON text; duplicate keys and nesting past MAX_DEPTH are refused, and NaN or
    Infinity too unless `nonfinite` (older bundles wrote them for undefined figures)."""
    constant = float if nonfinite else _no_constant
    try:
        value = json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=constant)
        depth(value)
    except _Refused as e:
        raise Refused(f"{what} is refused: {e}") from None
    except RecursionError:
        raise Refused(f"{what} is refused: nested more than {MAX_DEPTH} levels deep") from None
    except UnicodeDecodeError:
        raise CnnlabError(f"{what} is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise CnnlabError(f"{what} is not valid JSON (line {e.lineno}): {e.msg}") from None
    return value


# ----------------------------------------------------------------------------- YAML


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, bounded: depth counted while composing, duplicate keys refused,
    the composed tree's expanded size counted before any value is built."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Node | None:
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node)
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    line = key_node.start_mark.line + 1
                    raise _Refused(f"the key {key_node.value!r} appears twice (line {line})")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: Node) -> None:
    """Count the nodes as a consumer would see them, aliases expanded (a recursive alias never
    ends): past MAX_NODES the document is refused."""
    count = 0
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise _Refused(
                f"it would expand to more than {MAX_NODES:,} values (YAML aliases repeating "
                "aliases, or an alias of itself)"
            )
        if isinstance(node, MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)


def strict_yaml(text: str, what: str) -> Any:
    """Parse one YAML document safely (no Python objects), bounded as the module says."""
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except _Refused as e:
        raise Refused(f"{what} is refused: {e}") from None
    except RecursionError:
        raise Refused(f"{what} is refused: nested more than {MAX_DEPTH} levels deep") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise CnnlabError(f"{what} is not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    finally:
        loader.dispose()
