"""A limit is written once: no module-level name that bounds input (MAX_..., ..._MAX_BYTES,
..._LIMIT, MIB, BACKENDS, ...) is assigned in two modules of src/, and sizes are spelled with
fileio's MIB and GIB rather than 2**20 or 1024 * 1024 here and there (so `grep MIB` finds them).
Read with `ast`, like tests/test_layers.py."""

from __future__ import annotations

import ast
import re
from collections import defaultdict

from tests.test_layers import ROOT, SRC, modules

PACKAGE = SRC / ROOT

BOUND = re.compile(r"(^|_)(MAX|MIN|LIMITS?|CAPS?|MIB|GIB|BACKENDS)(_|$)")
UNITS = {2**20, 2**30}  # a MiB, a GiB
SPELLED_HERE = {"fileio.py"}  # where MIB and GIB are defined


def _assigned_names(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def _constant(node: ast.expr) -> int | None:
    """The value of an expression made of integer literals, * and ** only; else None."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Pow)):
        left, right = _constant(node.left), _constant(node.right)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Mult):
            return left * right
        return left**right if right < 64 else None
    return None


def _spelled_units(tree: ast.Module) -> list[int]:
    """Lines spelling a MiB or a GiB from literals (2**20, 1024 * 1024, 64 * 2**20...)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and _constant(node) is not None:
            parts = [_constant(n) for n in ast.walk(node) if isinstance(n, ast.BinOp)]
            if any(v in UNITS for v in parts):
                lines.add(node.lineno)
    return sorted(lines)


def test_each_bound_is_defined_in_one_module():
    where = defaultdict(list)
    for name, path in modules().items():
        for assigned in _assigned_names(ast.parse(path.read_text())):
            if BOUND.search(assigned):
                where[assigned].append(name)
    twice = {name: found for name, found in where.items() if len(set(found)) > 1}
    assert twice == {}


def test_sizes_are_spelled_with_fileio_units():
    spelled = []
    for path in modules().values():
        if path.relative_to(PACKAGE).as_posix() not in SPELLED_HERE:
            tree = ast.parse(path.read_text())
            spelled += [f"{path.relative_to(PACKAGE)}:{line}" for line in _spelled_units(tree)]
    assert spelled == []
