"""API tokens: a file of names and token hashes, and the ASGI guard that asks every request but
the health probes for `Authorization: Bearer TOKEN`.

The file (`cnnlab token add/revoke` write it) holds one token a line, `NAME sha256:HEX`, with
`#` comments; never a token itself. A token is 32 random bytes, so a plain SHA-256 of it cannot
be guessed back (a slow password hash adds nothing for random secrets). Hashes are compared in
constant time, every one of them, so the time taken says nothing of which came close. The file
is re-read when it changes (its size, time or inode), so revoking a token needs no restart; a
file that turns bad fails closed: every request is refused until it is fixed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_path
from cnnlab.serve.guards import json_error

log = logging.getLogger("cnnlab.serve")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
LINE = re.compile(r"^(?P<name>\S+)\s+sha256:(?P<hash>[0-9a-f]{64})$")
PREFIX = "cnnlab_"  # says what a leaked secret is, so scanners and people can tell
OPEN_PATHS = "/v1/health/"  # probes: a load balancer carries no token


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def parse_tokens(text: str, where: str) -> dict[str, str]:
    """{name: sha256 hex} from a token file's text; a bad line is a CnnlabError naming it."""
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = LINE.match(line)
        if not m or not NAME.match(m["name"]):
            raise CnnlabError(
                f"{where}:{number}: expected 'NAME sha256:<64 hex digits>' (a name of letters, "
                f"digits, . _ @ -), got {_shown(line)!r}; `cnnlab token add NAME --file "
                f"{where}` writes a good line"
            )
        if m["name"] in found:
            raise CnnlabError(f"{where}:{number}: token name {m['name']!r} is there twice")
        found[m["name"]] = m["hash"]
    return found


def _shown(line: str) -> str:
    """A bad line as an error may show it: a plain token pasted by mistake is cut short."""
    return line if len(line) <= 24 else line[:8] + "..."


@dataclass(frozen=True)
class _Snapshot:
    stamp: tuple[int, int, int]  # (inode, size, mtime ns)
    hashes: dict[str, str] | None  # None: the file is bad (fail closed)
    problem: str | None


class TokenFile:
    """The tokens a server accepts, re-read whenever the file changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._snapshot = self._read()
        if self._snapshot.hashes is None:
            raise CnnlabError(self._snapshot.problem or f"{self.path}: unreadable")

    def _stamp(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self) -> _Snapshot:
        try:
            stamp = self._stamp()
            hashes = parse_tokens(self.path.read_text(), str(self.path))
        except OSError as e:
            return _Snapshot((0, 0, 0), None, f"token file {self.path}: {e.strerror}")
        except (CnnlabError, UnicodeDecodeError) as e:
            return _Snapshot(stamp, None, str(e))
        if not hashes:
            return _Snapshot(stamp, None, f"token file {self.path} holds no token: add one "
                             f"with `cnnlab token add NAME --file {self.path}`")  # fmt: skip
        return _Snapshot(stamp, hashes, None)

    def current(self) -> _Snapshot:
        """The file's tokens as they are now (one stat a call; a re-read when it changed)."""
        try:
            stamp = self._stamp()
        except OSError:
            stamp = (0, 0, 0)
        if stamp != self._snapshot.stamp:
            with self._lock:
                if stamp != self._snapshot.stamp:
                    before = self._snapshot
                    self._snapshot = self._read()
                    if self._snapshot.hashes is None:
                        log.error("%s; every request is refused until it is fixed",
                                  self._snapshot.problem)  # fmt: skip
                    elif before.hashes != self._snapshot.hashes:
                        log.info("token file %s re-read: %d token(s)", self.path,
                                 len(self._snapshot.hashes))  # fmt: skip
        return self._snapshot

    def names(self) -> list[str]:
        return sorted(self.current().hashes or {})

    def name_of(self, token: str) -> str | None:
        """The name of the token `token` in the file as it is now, or None."""
        return match_token(self.current().hashes or {}, token)


def match_token(hashes: dict[str, str], token: str) -> str | None:
    """The name whose hash is `token`'s, or None; compares every hash in constant time."""
    digest = token_hash(token)
    match = None
    for name, expected in hashes.items():
        if hmac.compare_digest(digest, expected):
            match = name
    return match


class BearerAuth:
    """ASGI middleware: every request but the health probes carries `Authorization: Bearer
    TOKEN` of a token in `tokens`, or gets a 401 JSON body with WWW-Authenticate; the token's
    name goes into the request's state as its client (the decisions on record name it)."""

    def __init__(self, app: Any, tokens: TokenFile) -> None:
        self.app, self.tokens = app, tokens

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        hashes = self.tokens.current().hashes  # one look at the file per request
        if hashes is None:
            refused = json_error(503, "tokens_unavailable", "the server's token file is being "
                                 "fixed; retry later", {"Retry-After": "5"})  # fmt: skip
            await refused(scope, receive, send)
            return
        given = _bearer(scope)
        name = match_token(hashes, given) if given else None
        if name is None:
            challenge = 'Bearer realm="cnnlab"' + (', error="invalid_token"' if given else "")
            detail = ("the token is not valid (revoked, or mistyped)" if given else
                      "send 'Authorization: Bearer TOKEN' (ask the server's operator for a token)")  # fmt: skip
            refused = json_error(401, "unauthorized", detail, {"WWW-Authenticate": challenge})
            await refused(scope, receive, send)
            return
        scope.setdefault("state", {})["client"] = name
        await self.app(scope, receive, send)


def _bearer(scope: dict) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def add_token(path: str | Path, name: str) -> str:
    """A new token named `name`, its hash appended to the token file (made if missing, owner
    read/write only); returns the token, which is nowhere else."""
    path = Path(path)
    if not NAME.match(name):
        raise CnnlabError(f"token name {name!r}: use letters, digits and . _ @ - (up to 64)")
    text = path.read_text() if path.exists() else ""
    if name in parse_tokens(text, str(path)):
        raise CnnlabError(f"{path} has a token named {name!r} already: revoke it first, or "
                          "pick another name")  # fmt: skip
    token = new_token()
    from datetime import UTC, datetime

    added = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
    line = f"{name} sha256:{token_hash(token)}  # added {added}\n"
    body = (text if not text or text.endswith("\n") else text + "\n") + line
    _replace(path, body, path.stat().st_mode & 0o777 if path.exists() else 0o600)
    return token


def revoke_token(path: str | Path, name: str) -> None:
    """Remove the token named `name` from the file (comments and the others stay)."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"no token file at {path}")
    text = path.read_text()
    if name not in parse_tokens(text, str(path)):
        raise CnnlabError(f"{path} has no token named {name!r}")
    kept = [raw for raw in text.splitlines(keepends=True)
            if raw.split("#", 1)[0].split()[:1] != [name]]  # fmt: skip
    _replace(path, "".join(kept), path.stat().st_mode & 0o777)


def _replace(path: Path, body: str, mode: int) -> None:
    """Write `body` beside `path` with `mode`, then rename it into place: a server re-reading
    the file never sees half a line, and the file is never readable by others meanwhile."""
    with atomic_path(path, mode) as tmp, open(tmp, "w") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
