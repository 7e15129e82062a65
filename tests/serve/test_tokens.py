"""API tokens: the file (names and hashes, a bad line named), Bearer on every route but the
health probes, 401 JSON with WWW-Authenticate, re-read on change (revoking needs no restart),
the token's name as the client on record, and never a plain token in logs or the audit."""

from __future__ import annotations

import hmac
import logging
import os

import pytest
from fastapi.testclient import TestClient

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.records import DecisionStore
from cnnlab.serve import create_app
from cnnlab.serve.tokens import TokenFile, add_token, parse_tokens, revoke_token, token_hash
from tests.conftest import digit_images
from tests.serve.conftest import png_bytes

HASH = "ab" * 32


def test_the_file_takes_names_hashes_and_comments_and_names_a_bad_line():
    text = f"# ward tokens\n\nward-7 sha256:{HASH}  # added today\npacs.router sha256:{'cd' * 32}\n"
    assert parse_tokens(text, "t.txt") == {"ward-7": HASH, "pacs.router": "cd" * 32}
    for bad, line in ((f"ward-7 {HASH}", 1), (f"# ok\nward-7 sha256:{HASH[:-1]}", 2),
                      (f"w sha256:{HASH}\nw sha256:{HASH}", 2), (f"a b sha256:{HASH}", 1)):  # fmt: skip
        with pytest.raises(CnnlabError, match=rf"^t.txt:{line}: "):
            parse_tokens(bad, "t.txt")
    with pytest.raises(CnnlabError, match=r"got 'cnnlab_s\.\.\.'"):  # a pasted token: cut short
        parse_tokens("cnnlab_secretsecretsecretsecret", "t.txt")


def test_add_and_revoke_write_hashes_only(tmp_path, capsys):
    path = tmp_path / "tokens.txt"
    assert main(["token", "add", "ward-7", "--file", str(path)]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("cnnlab_") and len(token) > 40
    text = path.read_text()
    assert (
        token not in text
        and token_hash(token) in text
        and oct(path.stat().st_mode & 0o777) == "0o600"
    )
    assert main(["token", "add", "ward-7", "--file", str(path)]) == 2
    assert "already" in capsys.readouterr().err
    other = add_token(path, "pacs")
    assert TokenFile(path).name_of(other) == "pacs" and TokenFile(path).name_of(token) == "ward-7"
    assert main(["token", "revoke", "ward-7", "--file", str(path)]) == 0
    assert TokenFile(path).names() == ["pacs"]
    assert main(["token", "revoke", "nobody", "--file", str(path)]) == 2
    assert "no token named 'nobody'" in capsys.readouterr().err


def test_every_hash_is_compared_in_constant_time(tmp_path, monkeypatch):
    path = tmp_path / "t.txt"
    first = add_token(path, "a")
    add_token(path, "b")
    add_token(path, "c")
    tokens = TokenFile(path)
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda x, y: calls.append(1) or real(x, y))
    assert tokens.name_of(first) == "a" and len(calls) == 3  # no early exit on a match


def test_serve_refuses_a_bad_token_file_naming_the_line(tmp_path, capsys):
    bad = tmp_path / "tokens.txt"
    bad.write_text(f"ok sha256:{HASH}\nward-7 not-a-hash\n")
    assert main(["serve", "pneumonia", "--tokens", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: expected 'NAME sha256:" in err and len(err.strip().splitlines()) == 1


@pytest.fixture
def guarded(digit_bundle, tmp_path):
    path = tmp_path / "tokens.txt"
    token = add_token(path, "ward-7")
    with TestClient(create_app(digit_bundle, tokens=TokenFile(path))) as client:
        yield client, path, token


def upload() -> list:
    return [("files", ("d.png", png_bytes(digit_images(1, seed=2)[0][0]), "image/png"))]


def test_bearer_on_every_route_but_the_probes(guarded):
    client, _, token = guarded
    for probe in ("/v1/health/live", "/v1/health/ready"):
        assert client.get(probe).status_code == 200
    for path in ("/v1/models", "/healthz", "/openapi.json", "/docs", "/v1/nowhere"):
        r = client.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == 'Bearer realm="cnnlab"'
        assert r.json()["error"] == "unauthorized" and "Authorization: Bearer" in r.json()["detail"]
    assert client.post("/v1/predict", files=upload()).status_code == 401
    wrong = client.get("/v1/models", headers={"Authorization": "Bearer cnnlab_nope"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert client.get("/v1/models", headers={"Authorization": f"Basic {token}"}).status_code == 401
    ok = client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200


def test_the_token_name_is_the_client_on_record_and_no_token_is_logged(guarded, caplog):
    client, _, token = guarded
    caplog.set_level(logging.DEBUG)
    r = client.post("/v1/predict", files=upload(), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    client.get("/v1/models", headers={"Authorization": "Bearer cnnlab_wrong"})
    kept = DecisionStore().query()
    assert [(d.surface, d.client) for d in kept] == [("api", "ward-7")]
    assert token not in caplog.text and "cnnlab_wrong" not in caplog.text
    store_bytes = b"".join(
        p.read_bytes() for p in DecisionStore().path.parent.glob("decisions.db*")
    )
    assert token.encode() not in store_bytes and token_hash(token).encode() not in store_bytes


def test_revoking_and_adding_need_no_restart_and_a_bad_file_fails_closed(guarded):
    client, path, token = guarded
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/models", headers=auth).status_code == 200
    newer = add_token(path, "pacs")
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {newer}"}).status_code == 200
    revoke_token(path, "ward-7")
    assert client.get("/v1/models", headers=auth).status_code == 401
    path.write_text(path.read_text() + "oops\n")
    os.utime(path, ns=(1, 1))  # a change in the same nanosecond still has another size
    r = client.get("/v1/models", headers={"Authorization": f"Bearer {newer}"})
    assert r.status_code == 503 and r.json()["error"] == "tokens_unavailable"
    assert client.get("/v1/health/live").status_code == 200


def test_openapi_declares_the_bearer_scheme(guarded):
    client, _, token = guarded
    schema = client.get("/openapi.json", headers={"Authorization": f"Bearer {token}"}).json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer",
        "description": "a token from `cnnlab token add NAME --file FILE`"}  # fmt: skip
    predict = schema["paths"]["/v1/predict"]["post"]
    assert predict["security"] == [{"bearer": []}] and "401" in predict["responses"]
    assert "security" not in schema["paths"]["/v1/health/live"]["get"]
