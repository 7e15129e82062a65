"""A `.tar.gz`, `.tgz`, `.tar` or `.zip` of an image folder as `--data`: extracted once, into the cache.

The extraction folder is keyed by the archive's path, size and mtime, and appears by one
rename when complete, so an interrupted extraction is never mistaken for a finished one.

An image folder needs only files and folders, so an archive holding anything else (a symbolic
or hard link, a device, a FIFO) or a path that could reach outside (absolute, `..`, a drive) is
refused whole, naming the member, before anything is written. This does not lean on the Python's
tarfile filters: `filter="data"` on Python 3.11.7 lets a chain of symlinks past PATH_MAX write
outside the folder (CVE-2025-4517). With no link in the archive, no path can leave the folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from cnnlab.data.download import cache_dir
from cnnlab.errors import CnnlabError
from cnnlab.fileio import GIB

log = logging.getLogger("cnnlab")

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")
MAX_EXPANDED_BYTES = 64 * GIB  # refuse archives claiming more than this once unpacked
MAX_MEMBERS = 500_000  # each member listed costs memory before a byte is extracted
# a pax or GNU long-name header holds a path (at most PATH_MAX, 4 KB) and a few attributes.
# tarfile reads one whole into memory, so a header claiming gigabytes (a small file, once
# compressed) would exhaust memory before any member is seen; and Python 3.11.7's pax parsing
# is quadratic in a run of digits (CVE-2024-6232): 0.12 s for 8 KB, 9.5 s for 64 KB
MAX_HEADER_BYTES = 8 * 1024
_LONG_HEADERS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                 tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)  # fmt: skip


class ArchiveRefused(CnnlabError):
    """An archive cnnlab will not extract; the message names the member and why."""


class _HeaderTooLarge(Exception):  # not a tarfile.HeaderError: tarfile would read it as the end
    pass


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def extraction_dir(archive: Path) -> Path:
    st = archive.stat()
    ident = f"{archive.resolve()}\0{st.st_size}\0{st.st_mtime_ns}"
    stem = archive.name.split(".")[0] or "archive"
    return cache_dir() / "extracted" / f"{stem}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


def _stays_inside(name: str, dest: Path) -> bool:
    """Whether `name` lands inside `dest`: relative, no `..`, no drive, and (links being refused,
    so the lexical path is the real one) its normalised path under `dest`."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]) or "\0" in name:
        return False
    final = os.path.normpath(os.path.join(dest, *p.parts))
    return final == str(dest) or final.startswith(str(dest) + os.sep)


def _shown(name: str) -> str:
    """A member name fit for one line of a terminal: escaped if it holds control characters,
    its middle cut if long (a chain of links past PATH_MAX has names of kilobytes)."""
    shown = name if name.isprintable() else ascii(name)
    return shown if len(shown) <= 100 else f"{shown[:60]}...{shown[-30:]}"


def _refuse(archive: Path, member: str, what: str) -> ArchiveRefused:
    return ArchiveRefused(
        f"{archive.name}: {_shown(member)} {what}; cnnlab extracts only plain files and folders, so the "
        "archive is refused (nothing was extracted)"
    )


def _check_member(archive: Path, dest: Path, name: str, kind: str | None) -> None:
    """`kind` is what the member is when it is not a file or a folder ("a symbolic link", ...)."""
    if kind:
        raise _refuse(archive, name, f"is {kind}")
    if not _stays_inside(name, dest):
        raise _refuse(archive, name, "has a path that could reach outside the extraction folder")


def _check_room(
    total: int, count: int, where: Path, archive: Path, most: int = MAX_EXPANDED_BYTES
) -> None:
    free = shutil.disk_usage(where).free
    if total > most or total > free:
        raise ArchiveRefused(
            f"{archive.name} would unpack to {total / GIB:.1f} GiB "
            f"({free / GIB:.1f} GiB free in {where}); extract it yourself and pass the folder"
        )
    if count > MAX_MEMBERS:
        raise ArchiveRefused(
            f"{archive.name} holds more than {MAX_MEMBERS:,} members; extract it yourself and "
            "pass the folder"
        )


def _zip_kind(info: zipfile.ZipInfo) -> str | None:
    """Unix zips keep the file type in the high bits of external_attr: a link is stored as a
    file whose content is its target, and other tools (unzip, bsdtar) would make the link."""
    mode = info.external_attr >> 16
    if not stat.S_IFMT(mode) or stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "neither a file nor a folder"


def _extract_zip(archive: Path, dest: Path, most: int = MAX_EXPANDED_BYTES) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        _check_room(sum(m.file_size for m in members), len(members), dest, archive, most)
        for m in members:
            _check_member(archive, dest, m.filename, _zip_kind(m))
        zf.extractall(dest)


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile's member header, refused when it announces a pax or long-name block bigger than
    any real one (`frombuf` is tarfile's public hook for reading one header)."""

    @classmethod
    def frombuf(cls, buf, encoding, errors):  # type: ignore[no-untyped-def]
        info = super().frombuf(buf, encoding, errors)
        if info.type in _LONG_HEADERS and info.size > MAX_HEADER_BYTES:
            raise _HeaderTooLarge(info.size)
        return info


def _tar_kind(m: tarfile.TarInfo) -> str | None:
    if m.isfile() or m.isdir():
        return None
    if m.issym():
        return f"a symbolic link (to {_shown(m.linkname)})"
    if m.islnk():
        return f"a hard link (to {_shown(m.linkname)})"
    if m.isfifo():
        return "a FIFO"
    if m.ischr() or m.isblk():
        return "a device"
    return f"neither a file nor a folder (tar type {m.type!r})"


def _extract_tar(archive: Path, dest: Path, most: int = MAX_EXPANDED_BYTES) -> None:
    try:
        with tarfile.open(archive, tarinfo=_BoundedTarInfo) as tf:
            members = []
            for m in tf:  # one at a time: a member-count bomb stops before it is all listed
                members.append(m)
                if len(members) > MAX_MEMBERS:
                    break
            _check_room(sum(m.size for m in members if m.isfile()), len(members), dest, archive,
                        most)  # fmt: skip
            for m in members:
                _check_member(archive, dest, m.name, _tar_kind(m))
            # checked above; the filter stays as a second lock (it also drops set-uid bits)
            tf.extractall(dest, members=members, filter="data")
    except _HeaderTooLarge as e:
        raise ArchiveRefused(
            f"{archive.name}: a tar header announces {e.args[0]:,} bytes of extended attributes "
            f"(at most {MAX_HEADER_BYTES:,} are plausible); the archive is refused"
        ) from None


def _extract(archive: Path, dest: Path, most: int = MAX_EXPANDED_BYTES) -> None:
    extract = _extract_zip if archive.name.lower().endswith(".zip") else _extract_tar
    extract(archive, dest, most)


def unpack_into(archive: Path, dest: Path, most: int = MAX_EXPANDED_BYTES) -> Path:
    """Unpack `archive` into the folder `dest` (made here; the caller owns and removes it), with
    every check `extract_archive` makes and at most `most` bytes unpacked: for data that must
    not be kept, such as a zip uploaded to the app."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        _extract(archive, dest, most)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise CnnlabError(f"cannot extract {archive.name}: {e}") from None
    return dest


def extract_archive(archive: Path) -> Path:
    """The folder holding `archive`'s contents, extracting it on first use."""
    dest = extraction_dir(archive)
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("extracting %s into %s (once)", archive, dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        _extract(archive, tmp)
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
