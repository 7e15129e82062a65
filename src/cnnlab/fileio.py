"""Atomic file writes (a crash or a bad input never leaves a half-written file behind), reads
with a size cap (a 10 GB file named `.jpg` is refused, not read), and paths said so that a
file meant to ship names no machine's absolute path."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError

MIB = 1024 * 1024
GIB = 1024 * MIB
DEFAULT_MAX_FILE_MB = 256.0  # any one file the CLI reads (image, recipe, bundle.json)
MAX_FILE_ENV = "CNNLAB_MAX_FILE_MB"  # set by `cnnlab --max-file-mb N`, or by hand
_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # atomic_path's temporaries: .NAME.XXXXXXXX.tmp


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
def atomic_path(path: str | Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it into place, else delete it.
    The file gets `mode`, else the permissions a plain open() would give; while it is written
    it is owner-only (mkstemp's), so a secret given mode 0o600 is never readable by others."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # here, as hashlib and shlex below: the CLI parser reads this module

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            tmp_path.chmod(0o666 & ~umask() if mode is None else mode)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporaries `atomic_path` left in `folder` when a process was killed mid-write
    (`.checkpoint.pt.k2j4x9ab.tmp`); call it at the start of the next run that writes there."""
    removed = []
    with contextlib.suppress(OSError):
        for p in Path(folder).iterdir():
            if _TEMP.match(p.name) and p.is_file() and not p.is_symlink():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


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
    import shlex

    def one(line: str) -> str:
        try:
            words = shlex.split(line)
        except ValueError:  # unbalanced quotes: leave it as written
            return line
        return shlex.join(data_name(w) if Path(w).is_absolute() else w for w in words)

    return "\n".join(one(line) for line in command.splitlines())


def max_file_bytes() -> int:
    """The cap on one file read (`MAX_FILE_ENV`, else `DEFAULT_MAX_FILE_MB`)."""
    raw = os.environ.get(MAX_FILE_ENV, "")
    try:
        mb = float(raw) if raw.strip() else DEFAULT_MAX_FILE_MB
    except ValueError:
        raise CnnlabError(f"{MAX_FILE_ENV} must be a number of megabytes, got {raw!r}") from None
    if not mb > 0 or mb == float("inf"):
        raise CnnlabError(f"{MAX_FILE_ENV} must be a positive number of megabytes, got {raw!r}")
    return int(mb * MIB)


def read_capped(path: str | Path, limit: int | None = None) -> bytes:
    """A regular file's bytes, refused (OSError with a readable message) when it is over
    `limit` bytes (default `max_file_bytes()`) or is not a regular file: a FIFO or a device
    would block or never end, a sparse 10 GB file would exhaust memory."""
    limit = max_file_bytes() if limit is None else limit
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO would block a plain open()
    with os.fdopen(fd, "rb") as f:  # one open: stat and read the same file
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"not a regular file: {path}")
        if st.st_size > limit:
            raise OSError(
                f"file is {_size(st.st_size)}, over the {_size(limit)} limit on one file "
                f"(raise it with --max-file-mb or {MAX_FILE_ENV})"
            )
        # read(n) reserves n bytes first: ask for the file's size, not the cap (3.5 GB for a
        # VGG-16 checkpoint), and read on only if it grew since the stat
        data = f.read(min(limit, st.st_size) + 1)
        if len(data) > st.st_size:
            data += f.read(limit + 1 - len(data))
    if len(data) > limit:  # grew while being read
        raise OSError(f"file is over the {_size(limit)} limit on one file")
    return data


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def plain_name(name: Any, what: str) -> str:
    """`name` when it names a file directly inside a folder: no folder part, no absolute path,
    no `..`, no hidden name. A bundle that names `/etc/passwd` or `../x` is refused, not read."""
    if not isinstance(name, str) or not _PLAIN_NAME.match(name):
        raise CnnlabError(f"{what} must be a plain file name inside the bundle folder (no folder, "
                          f"absolute path or '..'), got {_shown(name)}")  # fmt: skip
    return name


@contextlib.contextmanager
def open_inside(folder: str | Path, name: str, limit: int) -> Iterator[tuple[Any, int]]:
    """(binary file, size) of the regular file `name` directly in `folder`, opened without
    following a link (a symlink is refused, even one that points inside) and without blocking
    (a FIFO is refused, not waited on); over `limit` bytes it is refused before any read."""
    path = Path(folder) / plain_name(name, "a bundle file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise CnnlabError(f"{path} is missing") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CnnlabError(f"{path} is a symbolic link; a bundle's files must be plain files "
                              "inside its folder") from None  # fmt: skip
        raise CnnlabError(f"{path} is unreadable: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CnnlabError(f"{path} is not a regular file (a FIFO, device or folder)")
        if st.st_size > limit:
            raise CnnlabError(f"{path} is {_size(st.st_size)}, over the {_size(limit)} such a "
                              "file may be")  # fmt: skip
        yield f, st.st_size


def read_inside(folder: str | Path, name: str, limit: int) -> bytes:
    """The bytes of `open_inside`'s file (refused if it grew past `limit` while being read)."""
    with open_inside(folder, name, limit) as (f, size):
        data = f.read(size + 1)  # read(n) reserves n bytes: the file's size, not the cap
        if len(data) > size:  # grew since the stat: read on, to the cap at most
            data += f.read(limit + 1 - len(data))
    if len(data) > limit:
        raise CnnlabError(f"{Path(folder) / name} is over the {_size(limit)} such a file may be")
    return data


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < MIB else f"{n / MIB:,.{0 if n % MIB == 0 else 1}f} MB"


def file_digest(path: str | Path) -> str:
    """sha256 of a file, read in 1 MB chunks (bundles record their weights' digest)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:  # noqa: PTH123
        for chunk in iter(lambda: f.read(MIB), b""):
            h.update(chunk)
    return h.hexdigest()


def finite_values(obj: Any) -> Any:
    """`obj` with every NaN or infinite float (in dicts, lists, tuples) made None: JSON has no
    such numbers, and a strict reader (a browser, `jq`) rejects a file that holds them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_values(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_values(v) for v in obj]
    return obj


def on_terminal() -> bool:
    """Whether stdout and stderr both reach a terminal: a progress bar redraws a line many times
    a second, which is right on a screen and fills a pipe, a log file or a CI log with noise."""
    import sys

    return all(getattr(s, "isatty", lambda: False)() for s in (sys.stdout, sys.stderr))
