"""The architecture, checked rather than remembered: cnnlab's layers only look down, and no
imports go in circles.

Every module's imports are read with `ast` (at module level, inside functions and under
`if TYPE_CHECKING:` alike) and mapped to the package's own files. A failure names the file,
the line and the import that breaks the rule.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "cnnlab"

# Bottom to top. A part (a subpackage or a top-level module) may import its own layer and the
# layers below it. Parts of one layer stand beside each other; a cycle between them still fails.
LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"cnnlab", "errors", "fileio", "machine", "net", "strict", "config"}),
    ("data", {"data", "samples"}),
    ("models", {"models"}),
    ("runtime", {"runtime"}),
    (
        "bundle",
        {
            "bundle",
            "bundle_check",
            "bundle_save",
            "bundle_seal",
            "bundle_sign",
            "catalog",
            "predict",
        },
    ),
    ("report", {"report", "deploy"}),
    ("train", {"train", "inspect", "explain", "learn"}),
    ("surfaces", {"cli", "app", "serve", "__main__"}),
]
RANK = {part: i for i, (_, parts) in enumerate(LAYERS) for part in parts}
LAYER = {part: name for name, parts in LAYERS for part in parts}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. cnnlab.data.images
    target: str  # the imported module of the package, e.g. cnnlab.errors
    where: str  # file:line

    def __str__(self) -> str:
        return f"{self.where}: {self.source} imports {self.target}"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The package module an import refers to (`cnnlab.data.images.read_image` -> its module)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports() -> list[Import]:
    known = modules()
    found = []
    for module, path in known.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..data import y
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = _resolve(name, known) if name.startswith("cnnlab") else None
                # a module's own parent packages are where it lives, not a dependency
                if target and target != module and not module.startswith(target + "."):
                    where = f"{path.relative_to(SRC.parent)}:{node.lineno}"
                    found.append(Import(module, target, where))
    return list(dict.fromkeys(found))


def part(module: str) -> str:
    """The top-level part a module belongs to: `cnnlab.data.images` -> `data`."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else pieces[0]


def upward(found: list[Import]) -> list[str]:
    """Every import of a part from a higher layer than the importer's."""
    bad = []
    for imp in found:
        a, b = part(imp.source), part(imp.target)
        if RANK[b] > RANK[a]:
            bad.append(f"{imp}: {LAYER[a]} ({a}) may not import {LAYER[b]} ({b}), a layer above")
    return bad


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def describe(group: list[str], found: list[Import], key=lambda m: m) -> str:
    """A circle, and the imports that close it."""
    inside = set(group)
    lines = sorted({str(i) for i in found if key(i.source) in inside and key(i.target) in inside})
    return " <-> ".join(group) + "".join(f"\n    {line}" for line in lines)


def test_every_part_has_a_layer() -> None:
    parts = {part(m) for m in modules()}
    missing = sorted(parts - set(RANK))
    assert not missing, f"parts with no layer in tests/test_layers.py LAYERS: {missing}"


def test_imports_only_look_down() -> None:
    bad = upward(imports())
    assert not bad, "imports that look up:\n" + "\n".join(bad)


def test_no_circles_between_files() -> None:
    found = imports()
    edges: dict[str, set[str]] = {}
    for imp in found:
        edges.setdefault(imp.source, set()).add(imp.target)
    groups = circles(edges)
    assert not groups, "import circles:\n" + "\n".join(describe(g, found) for g in groups)


def test_no_cycles_between_parts() -> None:
    found = imports()
    edges: dict[str, set[str]] = {}
    for imp in found:
        a, b = part(imp.source), part(imp.target)
        if a != b:
            edges.setdefault(a, set()).add(b)
    groups = circles(edges)
    crossing = [i for i in found if part(i.source) != part(i.target)]
    assert not groups, "cycles between parts:\n" + "\n".join(
        describe(g, crossing, part) for g in groups
    )
