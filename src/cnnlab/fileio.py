"""Atomic file writes (a crash or a bad input never leaves a half-written file behind), and
paths said so that a file meant to ship names no machine's absolute path."""

from __future__ import annotations

import contextlib
import os
import shlex
import tempfile
from collections.abc import Iterator
from pathlib import Path


def umask() -> int:
    """The process's umask, read without changing it (os.umask sets it: not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it into place, else delete it.
    The file gets the permissions a plain open() would give (mkstemp's are owner-only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            tmp_path.chmod(0o666 & ~umask())
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
    """The commands that made a bundle (one per line) with every absolute path shortened to its
    data name."""

    def one(line: str) -> str:
        try:
            words = shlex.split(line)
        except ValueError:  # unbalanced quotes: leave it as written
            return line
        return shlex.join(data_name(w) if Path(w).is_absolute() else w for w in words)

    return "\n".join(one(line) for line in command.splitlines())
