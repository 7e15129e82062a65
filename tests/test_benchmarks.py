"""Benchmarks are scripts nobody runs in CI (they take minutes to hours), so a rename in the
package can break one silently (benchmarks/chest_xray.py once imported a function that had
moved). Every `from cnnlab... import name` in them, at any depth, must resolve."""

from __future__ import annotations

import ast
import importlib
import importlib.util

import pytest

from tests.conftest import ROOT

SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_cnnlab_import_in_a_benchmark_exists(script):
    imports = [
        node
        for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cnnlab")
    ]
    for node in imports:
        module = importlib.import_module(node.module)
        for alias in node.names:
            found = hasattr(module, alias.name) or _submodule(f"{node.module}.{alias.name}")
            assert found, f"{script.name}:{node.lineno}: {node.module} has no {alias.name}"


def _submodule(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent is a module, not a package
        return False


def test_there_are_benchmarks_to_check():
    assert len(SCRIPTS) >= 10
