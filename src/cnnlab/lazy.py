"""Lazy exports for a package's `__init__` (PEP 562): `from cnnlab.bundle import load_bundle`
works, yet importing the package loads none of its modules until a name is used. That keeps
the light commands light (`cnnlab --help` must not import torch); `loading_at_start` keeps a
server's heavy start quick."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Any


def lazy_exports(
    package: dict[str, Any], table: dict[str, str], eager: tuple[str, ...] = ()
) -> None:
    """Give a package (its `globals()`) `__all__`, `__getattr__` and `__dir__` for `table`
    (name -> the module defining it), beside the `eager` names it defines itself. A name is
    imported on first use, then kept."""

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package['__name__']!r} has no attribute {name!r}")
        value = getattr(import_module(table[name]), name)
        package[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*package, *table})

    getter: Callable[[str], Any] = __getattr__
    package.update(__all__=[*eager, *sorted(table)], __getattr__=getter, __dir__=__dir__)


@contextlib.contextmanager
def loading_at_start() -> Iterator[None]:
    """A long-lived process's start (`serve`): no garbage collection while torch, FastAPI and
    the models load, then all they made is frozen out of every later collection. A start
    makes millions of objects and frees few, so the collector's passes over them were 0.3 s
    of a 3 s start, and each full pass in service would scan them again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
