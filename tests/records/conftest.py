"""A throwaway PostgreSQL 15 server for the store's tests: its own cluster in a temporary
folder, on a free port, stopped at the end. Missing PostgreSQL fails under CI=true."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _pg_tool(name: str) -> str | None:
    for folder in PG_BINS:
        if (folder / name).exists():
            return str(folder / name)
    return shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url() -> str:
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    missing = [n for n, t in (("initdb", initdb), ("pg_ctl", pg_ctl)) if t is None]
    if missing or not _psycopg():
        message = (f"PostgreSQL missing ({', '.join(missing) or 'psycopg'}): apt-get install "
                   "postgresql-15; pip install 'psycopg[binary]'")  # fmt: skip
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    # not under pytest's temp folder: that is private to root, and the server runs as postgres
    base = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
    data, port = base / "data", _free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: as its own user
        shutil.chown(base, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    for step in (
        [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        [pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"],
    ):
        done = subprocess.run([*as_user, *step], capture_output=True, text=True, timeout=120)
        if done.returncode:
            log = (base / "log").read_text() if (base / "log").exists() else ""
            pytest.fail(f"{step[0]} failed: {done.stdout}{done.stderr}{log}")  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


def _psycopg() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True
