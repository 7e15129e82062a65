"""Every bundle a user can pick: the one asked for, those shipped with cnnlab, those under runs/.

The app's model picker lists them; finding them is library work so the CLI, the app and
tests agree on what "available" means.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cnnlab.bundle import META, resolve_bundle, shipped_bundles

PREFERRED = "pneumonia"  # the shipped model the app opens with when none is asked for


@dataclass(frozen=True)
class BundleEntry:
    label: str  # what a picker shows: "pneumonia (shipped)", "runs/mnist"
    path: Path
    shipped: bool = False


def _label(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def bundles_under(root: str | Path, depth: int = 2) -> list[Path]:
    """Bundle folders (holding bundle.json) at most `depth` levels below `root`, sorted."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    found: list[Path] = []
    level = [root]
    for _ in range(depth):
        nxt = []
        for folder in level:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:  # unreadable folder: nothing to offer from it
                continue
            for child in children:
                (found if (child / META).is_file() else nxt).append(child)
        level = nxt
    return sorted(found)


def find_bundles(
    explicit: Iterable[str | Path] = (), roots: Iterable[str | Path] = ("runs",)
) -> list[BundleEntry]:
    """Explicit refs first (a bad one is a CnnlabError), then shipped models (`pneumonia`
    first), then bundles under `roots`; each folder listed once."""
    entries: list[BundleEntry] = []
    seen: set[Path] = set()

    def add(path: Path, label: str, shipped: bool) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            entries.append(BundleEntry(label, path, shipped))

    shipped = shipped_bundles()
    shipped_names = {p.resolve(): n for n, p in shipped.items()}
    for ref in explicit:
        path = resolve_bundle(ref)
        name = shipped_names.get(path.resolve())
        add(path, f"{name} (shipped)" if name else _label(path), name is not None)
    for name in sorted(shipped, key=lambda n: (n != PREFERRED, n)):
        add(shipped[name], f"{name} (shipped)", True)
    for root in roots:
        for path in bundles_under(root):
            add(path, _label(path), False)
    return entries
