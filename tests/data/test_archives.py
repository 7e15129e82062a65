"""Hostile archives: links, devices and symlink chains past PATH_MAX are refused whole, by name,
whatever the Python's tarfile filters catch, and nothing is written outside the extraction folder."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from cnnlab.data import load_source
from cnnlab.data.archives import extract_archive, extraction_dir
from cnnlab.errors import CnnlabError


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))


def _add(tf: tarfile.TarFile, name: str, *, symlink: str = "", hardlink: str = "",
         content: bytes | None = None, kind: bytes = b"") -> None:  # fmt: skip
    info = tarfile.TarInfo(name)
    if symlink:
        info.type, info.linkname = tarfile.SYMTYPE, symlink
    elif hardlink:
        info.type, info.linkname = tarfile.LNKTYPE, hardlink
    elif kind:
        info.type = kind
    elif content is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o777
    if content is not None:
        info.size = len(content)
    tf.addfile(info, io.BytesIO(content) if content is not None else None)


def realpath_limit_archive(path: Path, dest_len: int) -> Path:
    """CVE-2025-4517's shape (CPython's own test_realpath_limit_attack): a chain of symlinks
    whose expansion passes PATH_MAX, so a non-strict realpath stops resolving and the data
    filter sees a harmless path; the link at its end climbs out, and files follow through it."""
    steps = "abcdefghijklmnop"
    max_path = os.pathconf(path.parent, "PC_PATH_MAX")
    component = "d" * ((max_path - dest_len - 1) // (len(steps) + 1))
    with tarfile.open(path, "w") as tf:
        parent = ""
        for step in steps:
            _add(tf, os.path.join(parent, component))
            _add(tf, os.path.join(parent, step), symlink=component)
            parent = os.path.join(parent, component)
        link = os.path.join(*steps, "l" * 254)
        _add(tf, link, symlink=os.path.join(*[".."] * len(steps)))
        _add(tf, "escape", symlink=os.path.join(link, ".."))
        _add(tf, "escape/newfile", content=b"written outside")
        _add(tf, "escape/../../newfile", content=b"written outside")  # two levels up
    return path


def _files_outside(root: Path, inside: Path) -> list[Path]:
    return [p for p in root.rglob("newfile*") if inside not in p.parents]


def test_symlink_chain_past_path_max_writes_nothing_outside(tmp_path):
    archive = tmp_path / "work" / "chain.tar"
    archive.parent.mkdir()
    archive.write_bytes(b"")
    dest = extraction_dir(archive)  # extraction happens in a sibling of this, same length + 10
    realpath_limit_archive(archive, len(str(dest)) + 10)
    with pytest.raises(CnnlabError, match=r"chain\.tar: a is a symbolic link"):
        extract_archive(archive)
    assert _files_outside(tmp_path, dest) == []
    assert not dest.exists()
    assert [p.name for p in dest.parent.iterdir()] == []  # the temporary folder is gone too


@pytest.mark.parametrize(
    ("member", "what"),
    [
        ({"symlink": "../../etc/passwd"}, "symbolic link"),
        ({"symlink": "inside.png"}, "symbolic link"),  # even one that stays inside
        ({"hardlink": "cat/a.png"}, "hard link"),
        ({"kind": tarfile.FIFOTYPE}, "FIFO"),
        ({"kind": tarfile.CHRTYPE}, "device"),
        ({"kind": tarfile.BLKTYPE}, "device"),
    ],
)
def test_tar_with_a_link_or_special_member_is_refused_by_name(tmp_path, member, what):
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        _add(tf, "set/cat/a.png", content=b"png")
        _add(tf, "set/cat/odd.png", **member)
    with pytest.raises(CnnlabError, match=rf"set\.tar\.gz: set/cat/odd\.png is a {what}"):
        load_source(str(archive))
    assert not extraction_dir(archive).exists()


def _zip_member(zf: zipfile.ZipFile, name: str, mode: int, data: bytes) -> None:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix: the mode lives in the high 16 bits of external_attr
    info.external_attr = mode << 16
    zf.writestr(info, data)


@pytest.mark.parametrize(
    ("mode", "what"),
    [(stat.S_IFLNK | 0o777, "symbolic link"), (stat.S_IFIFO | 0o644, "FIFO"),
     (stat.S_IFCHR | 0o644, "device")],
)  # fmt: skip
def test_zip_with_a_link_or_special_member_is_refused_by_name(tmp_path, mode, what):
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        _zip_member(zf, "set/cat/a.png", stat.S_IFREG | 0o644, b"png")
        _zip_member(zf, "set/cat/odd.png", mode, b"../../../etc/passwd")
    with pytest.raises(CnnlabError, match=rf"set\.zip: set/cat/odd\.png is a {what}"):
        extract_archive(archive)
    assert not extraction_dir(archive).exists()


@pytest.mark.parametrize("name", ["/abs/a.png", "../up.png", "set/../../up.png", "C:/x.png"])
def test_member_paths_outside_are_refused_in_tar_and_zip(tmp_path, name):
    for suffix in ("tar", "zip"):
        archive = tmp_path / f"bad.{suffix}"
        if suffix == "tar":
            with tarfile.open(archive, "w") as tf:
                _add(tf, name, content=b"x")
        else:
            with zipfile.ZipFile(archive, "w") as zf:
                zf.writestr(name, b"x")
        with pytest.raises(CnnlabError, match="outside"):
            extract_archive(archive)
        assert _files_outside(tmp_path, extraction_dir(archive)) == []


def test_plain_files_and_folders_still_extract(tmp_path):
    archive = tmp_path / "ok.tar"
    with tarfile.open(archive, "w") as tf:
        _add(tf, "ok")
        _add(tf, "ok/cat")
        _add(tf, "ok/cat/a.png", content=b"png")
    out = extract_archive(archive)
    assert (out / "ok/cat/a.png").read_bytes() == b"png"


def test_a_pax_header_claiming_gigabytes_is_refused_before_it_is_read(tmp_path):
    """tarfile reads a pax header whole into memory: a sparse 1 GB claim costs no disk here,
    and is refused from its 512-byte header."""
    archive = tmp_path / "bomb.tar"
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, 2**30
    archive.write_bytes(info.tobuf(format=tarfile.USTAR_FORMAT))
    os.truncate(archive, 512 + 2**30 + 1024)
    with pytest.raises(CnnlabError, match=r"bomb\.tar: a tar header announces 1,073,741,824"):
        extract_archive(archive)


def test_a_member_count_bomb_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("cnnlab.data.archives.MAX_MEMBERS", 50)
    archive = tmp_path / "many.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for i in range(60):
            _add(tf, f"many/f{i}.png", content=b"")
    with pytest.raises(CnnlabError, match="more than 50 members"):
        extract_archive(archive)


def test_a_pax_header_past_the_cap_is_refused_before_tarfile_parses_it(tmp_path):
    """Python 3.11.7 parses pax records in time quadratic in a run of digits (CVE-2024-6232:
    64 KB took 9.5 s); a header over 8 KB is refused from its announced size."""
    digits = b"1" * 9000
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, len(digits)
    raw = info.tobuf(format=tarfile.USTAR_FORMAT) + digits + bytes(-len(digits) % 512)
    archive = tmp_path / "slow.tar"
    archive.write_bytes(raw + bytes(2048))
    with pytest.raises(CnnlabError, match=r"slow\.tar: a tar header announces 9,000 bytes"):
        extract_archive(archive)
