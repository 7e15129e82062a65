"""Atomic file writes (a crash or a bad input never leaves a half-written file behind), and
paths said so that a file meant to ship names no machine's absolute path."""

from __future__ import annotations

import contextlib
import os
import shlex
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it into place, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def data_name(path: str | Path) -> str:
    """A data folder named by its last two path parts (`chest_xray/external`): readable, and no
    machine's absolute path in a card that ships."""
    parts = Path(path).parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(path)


def shareable_command(command: str) -> str:
    """The training command with every absolute path shortened to its data name."""
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: leave it as written
        return command
    return shlex.join(data_name(w) if Path(w).is_absolute() else w for w in words)


def on_terminal() -> bool:
    """Whether stdout and stderr both reach a terminal: a progress bar redraws a line many times
    a second, which is right on a screen and fills a pipe, a log file or a CI log with noise."""
    import sys

    return all(getattr(s, "isatty", lambda: False)() for s in (sys.stdout, sys.stderr))
