"""Every bundle a user can pick: the one asked for, those shipped with cnnlab, those under runs/.

The app's model picker lists them; finding them is library work so the CLI, the app and
tests agree on what "available" means. Only paths here, no torch: `cnnlab app` resolves its
bundle with these before the server (and torch) starts; `cnnlab.bundle` loads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cnnlab.errors import CnnlabError

META = "bundle.json"  # what makes a folder a bundle

PREFERRED = "pneumonia"  # the shipped model the app opens with when none is asked for


def shipped_root() -> Path:
    return Path(str(resources.files("cnnlab") / "shipped"))


def shipped_bundles() -> dict[str, Path]:
    root = shipped_root()
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / META).is_file()}


def looks_like_bundle(ref: str) -> bool:
    """`ref` names something on disk or a shipped bundle, not a model or recipe name (no torch:
    the CLI asks before it loads anything)."""
    return Path(ref).expanduser().exists() or ref in shipped_bundles()


def resolve_bundle(ref: str | Path) -> Path:
    """A bundle folder, or the name of a bundle that ships with cnnlab (e.g. `pneumonia`)."""
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / META).is_file():
            raise CnnlabError(
                f"{path} is not a cnnlab bundle (no {META}); train one with `cnnlab train`"
            )
        return path
    if path.is_file() and path.name == META:
        return path.parent
    shipped = shipped_bundles()
    if str(ref) in shipped:
        return shipped[str(ref)]
    names = ", ".join(shipped) or "none installed"
    raise CnnlabError(
        f"no bundle at {ref}{_did_you_mean(str(ref), shipped)} (a bundle folder, or a shipped "
        f"model name: {names})"
    )


def _did_you_mean(ref: str, shipped: dict[str, Path]) -> str:
    """The closest shipped names and bundles under runs/ or the folder `ref` points into."""
    import difflib

    parent = Path(ref).expanduser().parent
    near_roots = {Path("runs"), parent} if str(parent) not in ("", ".") else {Path("runs")}
    known = list(shipped) + [_label(p) for root in near_roots for p in bundles_under(root)]
    near = difflib.get_close_matches(ref, known, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(near)}?)" if near else ""


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
