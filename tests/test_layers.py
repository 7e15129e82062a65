"""The architecture, checked rather than remembered: cnnlab's layers only look down, no imports
go in circles, and every module's name says which file it is.

Every module's imports are read with `ast` (at module level, inside functions and under
`if TYPE_CHECKING:` alike) and mapped to the package's own files. In a package's `__init__.py`
a string that is exactly a module's dotted name counts as an import too: that is how a lazy
export (the facade's `_EXPORTS`, `import_module(name)`) names the module it loads on first use.
A failure names the file, the line and the import that breaks the rule.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "cnnlab"  # the package facade: `from cnnlab import load_bundle`

# Bottom to top. A part (a subpackage or a top-level module) may import its own layer and the
# layers below it. Parts of one layer stand beside each other; a cycle between them still fails.
LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"errors", "fileio", "lazy", "machine", "net", "strict", "config", "version"}),
    ("data", {"data", "samples"}),
    ("models", {"models", "names"}),  # names: the index of models, read before torch
    ("runtime", {"runtime"}),
    ("bundle", {"bundle", "predict", "deploy"}),  # the folder, and what runs it (ONNX too)
    ("records", {"records"}),  # every decision on record: written by surfaces, read by drift
    ("report", {"report"}),  # below evaluate and train: both write figures and cards
    ("evaluate", {"evaluate"}),
    ("train", {"train"}),
    ("analysis", {"anatomy", "explain", "learn"}),
    ("clinic", {"pacs"}),  # the hospital's workflow: DICOMweb in and out, SR and SC, a receiver
    ("surfaces", {"cli", "app", "serve", "__main__"}),
    ("facade", {ROOT}),  # its lazy exports name every layer, so nothing may import it
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


def modules(src: Path = SRC) -> dict[str, Path]:
    found = {}
    for path in sorted((src / ROOT).rglob("*.py")):
        name = ".".join(path.relative_to(src).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The package module an import refers to (`cnnlab.data.images.read_image` -> its module)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _named(node: ast.AST, package: str) -> list[str]:
    """The dotted names a node loads: an import's modules and names, or a string that is one."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from . import x, from ..data import y
            up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join(up + ([base] if base else []))
        # `from cnnlab import version` loads cnnlab.version; the facade is imported only by a
        # name taken from it (every module's parents run first anyway: they are not its imports)
        return ([base] if base != ROOT else []) + [f"{base}.{a.name}" for a in node.names]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if node.value.startswith(ROOT + ".") else []
    return []


def imports(src: Path = SRC) -> list[Import]:
    known = modules(src)
    found = []
    for module, path in known.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        lazy = path.name == "__init__.py"  # where lazy exports name their modules as strings
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            string = isinstance(node, ast.Constant)
            for name in _named(node, package):
                if string and not (lazy and name in known):  # only a whole module's name
                    continue
                target = _resolve(name, known) if name.split(".")[0] == ROOT else None
                # a module's own parent packages are where it lives, not a dependency; the facade
                # is a dependency of whoever takes a name from it
                parent = module.startswith(target + ".") and target != ROOT if target else False
                if target and target != module and not parent:
                    where = f"{path.relative_to(src.parent)}:{node.lineno}"
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


def names(src: Path = SRC) -> dict[str, list[str]]:
    """Each name a module or package goes by (its file name, its folder's), with where."""
    found: dict[str, list[str]] = {}
    for module, path in modules(src).items():
        if module == ROOT or path.stem == "__main__":
            continue
        name = path.parent.name if path.stem == "__init__" else path.stem
        found.setdefault(name, []).append(str(path.relative_to(src.parent)))
    return found


# The rules, each on a source tree: the real one below, tiny fake ones to show each one failing.


def check_every_part_has_a_layer(src: Path) -> None:
    parts = {part(m) for m in modules(src)}
    missing = sorted(parts - set(RANK))
    if missing:
        raise AssertionError(f"parts with no layer in tests/test_layers.py LAYERS: {missing}")


def check_imports_only_look_down(src: Path) -> None:
    bad = upward(imports(src))
    if bad:
        raise AssertionError("imports that look up:\n" + "\n".join(bad))


def check_no_circles_between_files(src: Path) -> None:
    found = imports(src)
    edges: dict[str, set[str]] = {}
    for imp in found:
        edges.setdefault(imp.source, set()).add(imp.target)
    groups = circles(edges)
    if groups:
        raise AssertionError("import circles:\n" + "\n".join(describe(g, found) for g in groups))


def check_no_cycles_between_parts(src: Path) -> None:
    found = imports(src)
    edges: dict[str, set[str]] = {}
    for imp in found:
        a, b = part(imp.source), part(imp.target)
        if a != b:
            edges.setdefault(a, set()).add(b)
    groups = circles(edges)
    crossing = [i for i in found if part(i.source) != part(i.target)]
    if groups:
        lines = [describe(g, crossing, part) for g in groups]
        raise AssertionError("cycles between parts:\n" + "\n".join(lines))


def check_no_two_modules_share_a_name(src: Path) -> None:
    shared = {n: where for n, where in names(src).items() if len(where) > 1}
    if shared:
        lines = [f"    {n}: {', '.join(where)}" for n, where in sorted(shared.items())]
        raise AssertionError("modules or packages that share a name:\n" + "\n".join(lines))


def check_no_name_shadows_the_standard_library(src: Path) -> None:
    shadows = {n: w for n, w in names(src).items() if n in sys.stdlib_module_names}
    if shadows:
        lines = [f"    {n}: {', '.join(where)}" for n, where in sorted(shadows.items())]
        raise AssertionError("names of the standard library's modules:\n" + "\n".join(lines))


def test_every_part_has_a_layer() -> None:
    check_every_part_has_a_layer(SRC)


def test_imports_only_look_down() -> None:
    check_imports_only_look_down(SRC)


def test_no_circles_between_files() -> None:
    check_no_circles_between_files(SRC)


def test_no_cycles_between_parts() -> None:
    check_no_cycles_between_parts(SRC)


def test_no_two_modules_share_a_name() -> None:
    check_no_two_modules_share_a_name(SRC)


def test_no_name_shadows_the_standard_library() -> None:
    check_no_name_shadows_the_standard_library(SRC)


def fake_package(tmp: Path, files: dict[str, str]) -> Path:
    """A source tree holding a package named like cnnlab with these files (and empty
    `__init__.py`s for their folders)."""
    src = tmp / "src"
    for rel, text in {"__init__.py": "", **files}.items():
        path = src / ROOT / rel
        for folder in path.relative_to(src).parents[:-1]:
            (src / folder).mkdir(parents=True, exist_ok=True)
            (src / folder / "__init__.py").touch()
        path.write_text(text)
    return src


def test_an_upward_import_fails_naming_file_and_line(tmp_path: Path) -> None:
    src = fake_package(tmp_path, {
        "errors.py": "class CnnlabError(Exception): ...\n",
        "train/fit.py": "from cnnlab.errors import CnnlabError\n",
        "data/images.py": "import os\n\n\ndef read():\n    from cnnlab.train.fit import fit\n",
    })  # fmt: skip
    with pytest.raises(AssertionError) as failed:
        check_imports_only_look_down(src)
    assert str(failed.value).splitlines()[:2] == [
        "imports that look up:",
        "src/cnnlab/data/images.py:5: cnnlab.data.images imports cnnlab.train.fit: "
        "data (data) may not import train (train), a layer above",
    ]


def test_a_lazy_export_naming_a_module_is_an_import(tmp_path: Path) -> None:
    src = fake_package(tmp_path, {
        "models/__init__.py": '_EXPORTS = {\n    "fit": "cnnlab.train.fit",\n}\n',
        "train/fit.py": "def fit(): ...\n",
    })  # fmt: skip
    with pytest.raises(AssertionError) as failed:
        check_imports_only_look_down(src)
    assert str(failed.value).splitlines()[1] == (
        "src/cnnlab/models/__init__.py:2: cnnlab.models imports cnnlab.train.fit: "
        "models (models) may not import train (train), a layer above"
    )


def test_the_facade_is_the_top_layer(tmp_path: Path) -> None:
    """The facade names every layer, so a name taken from it (`from cnnlab import __version__`)
    imports them all: only `from cnnlab.version import __version__` looks down."""
    src = fake_package(tmp_path, {
        "__init__.py": '__version__ = "1"\n_EXPORTS = {"fit": "cnnlab.train.fit"}\n',
        "version.py": '__version__ = "1"\n',
        "train/fit.py": "def fit(): ...\n",
        "bundle/save.py": "from cnnlab import version\nfrom cnnlab import __version__\n",
    })  # fmt: skip
    with pytest.raises(AssertionError) as failed:
        check_imports_only_look_down(src)
    assert str(failed.value).splitlines()[1:] == [
        "src/cnnlab/bundle/save.py:2: cnnlab.bundle.save imports cnnlab: "
        "bundle (bundle) may not import facade (cnnlab), a layer above"
    ]


def test_two_modules_of_one_name_fail(tmp_path: Path) -> None:
    src = fake_package(tmp_path, {"data/cifar.py": "", "models/cifar.py": "", "cli/data.py": ""})
    with pytest.raises(AssertionError) as failed:
        check_no_two_modules_share_a_name(src)
    assert str(failed.value).splitlines() == [
        "modules or packages that share a name:",
        "    cifar: src/cnnlab/data/cifar.py, src/cnnlab/models/cifar.py",
        "    data: src/cnnlab/cli/data.py, src/cnnlab/data/__init__.py",
    ]


def test_a_standard_library_name_fails(tmp_path: Path) -> None:
    src = fake_package(tmp_path, {"inspect/summary.py": "", "learn/code.py": ""})
    with pytest.raises(AssertionError) as failed:
        check_no_name_shadows_the_standard_library(src)
    assert str(failed.value).splitlines() == [
        "names of the standard library's modules:",
        "    code: src/cnnlab/learn/code.py",
        "    inspect: src/cnnlab/inspect/__init__.py",
    ]
