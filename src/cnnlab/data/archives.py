"""A `.tar.gz`, `.tgz`, `.tar` or `.zip` of an image folder as `--data`: extracted once, into the cache.

The extraction folder is keyed by the archive's path, size and mtime, and appears by one
rename when complete, so an interrupted extraction is never mistaken for a finished one.
Member paths are checked: nothing is written outside the extraction folder, no links.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from cnnlab.data.download import cache_dir
from cnnlab.errors import CnnlabError

log = logging.getLogger("cnnlab")

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")
MAX_EXPANDED_BYTES = 64 * 2**30  # refuse archives claiming more than this once unpacked


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def extraction_dir(archive: Path) -> Path:
    st = archive.stat()
    ident = f"{archive.resolve()}\0{st.st_size}\0{st.st_mtime_ns}"
    stem = archive.name.split(".")[0] or "archive"
    return cache_dir() / "extracted" / f"{stem}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


def _safe_member(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return not p.is_absolute() and ".." not in p.parts and not (p.parts and ":" in p.parts[0])


def _check_room(total: int, where: Path, archive: Path) -> None:
    free = shutil.disk_usage(where).free
    if total > MAX_EXPANDED_BYTES or total > free:
        raise CnnlabError(
            f"{archive.name} would unpack to {total / 2**30:.1f} GiB "
            f"({free / 2**30:.1f} GiB free in {where}); extract it yourself and pass the folder"
        )


def _extract_zip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        bad = [m.filename for m in members if not _safe_member(m.filename)]
        if bad:
            raise CnnlabError(f"{archive.name} holds unsafe paths (e.g. {bad[0]}); not extracting")
        _check_room(sum(m.file_size for m in members), dest, archive)
        zf.extractall(dest)


def _extract_tar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        _check_room(sum(m.size for m in members if m.isfile()), dest, archive)
        # the "data" filter refuses absolute paths, '..', links out of dest and device files
        tf.extractall(dest, members=members, filter="data")


def extract_archive(archive: Path) -> Path:
    """The folder holding `archive`'s contents, extracting it on first use."""
    dest = extraction_dir(archive)
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("extracting %s into %s (once)", archive, dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, tmp)
        else:
            _extract_tar(archive, tmp)
        try:
            os.rename(tmp, dest)
        except OSError:  # another process finished first: use its copy
            if not dest.is_dir():
                raise
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise CnnlabError(f"cannot extract {archive}: {e}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
