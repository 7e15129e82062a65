"""No function in the package passes 100 lines (issue 26): one a newcomer reads in a sitting."""

from __future__ import annotations

import ast

from tests.test_layers import ROOT, SRC

LIMIT = 100


def long_functions(package=SRC / ROOT) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > LIMIT:
                    found.append(
                        f"{path.relative_to(package.parent)}:{node.lineno} {node.name}: {lines} lines"
                    )
    return found


def test_no_function_passes_100_lines() -> None:
    assert long_functions() == []


def test_a_long_function_is_named(tmp_path) -> None:
    package = tmp_path / ROOT
    package.mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(LIMIT))
    (package / "long.py").write_text(f"def long():\n{body}")
    (package / "short.py").write_text("def short():\n    return 1\n")
    assert long_functions(package) == [f"{ROOT}/long.py:1 long: {LIMIT + 1} lines"]
