"""Signing a bundle with OpenSSF's model-signing (`model_signing`), offline: an elliptic-curve
private key, or a key with its certificate (and the chain up to a CA). The signature,
bundle.sig beside the bundle's files, is a Sigstore bundle over exactly the sealed files and
manifest.json (other files of a run folder are left out), so `model_signing verify` can check
it too. `--require-signed PEM` on predict, serve, app and check verifies it before anything is
used: PEM is the signer's public key, or the CA certificate that issued the signing one.

model_signing (and Sigstore's libraries under it) is imported only when signing or verifying:
`cnnlab --help` and every other command start without it.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cnnlab.bundle.seal import (
    MANIFEST,
    SEALED_MAX_BYTES,
    SIGNATURE,
    SIGNATURE_MAX_BYTES,
    digest_inside,
)
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_path, read_capped, read_inside
from cnnlab.strict import strict_json

PEM_MAX_BYTES = 64 * 1024


def _hashing():
    """model_signing's file-by-file sha256, links refused."""
    from model_signing import hashing

    return hashing.Config().use_file_serialization(hashing_algorithm="sha256",
                                                   allow_symlinks=False)  # fmt: skip


def sign_bundle(
    folder: str | Path,
    sealed: dict[str, dict],
    key: str | Path,
    certificate: str | Path | None = None,
    chain: Iterable[str | Path] = (),
) -> Path:
    """Write bundle.sig over the sealed files and manifest.json. `sealed`: the manifest record
    the caller's load verified (`cnnlab sign` loads the bundle first). They are signed from a
    copy of exactly these files, checked against that record again, in a folder of the
    bundle's name: nothing else of a run folder (links, FIFOs, history) is walked or signed."""
    from model_signing import signing

    from cnnlab.bundle.seal import read_manifest

    folder = Path(folder)
    for pem in (key, certificate, *chain):
        if pem is not None:
            _read_pem(Path(pem))
    config = signing.Config().set_hashing_config(_hashing())
    with tempfile.TemporaryDirectory(prefix="cnnlab-sign-") as tmp:
        staged = Path(tmp) / folder.name
        staged.mkdir()
        for name in (MANIFEST, *sealed):
            shutil.copyfile(folder / name, staged / name, follow_symlinks=False)
        changed = [n for n in sealed if digest_inside(staged, n, SEALED_MAX_BYTES) != sealed[n]]
        if changed or read_manifest(staged)[0] != sealed:
            raise CnnlabError(
                f"{folder} changed while being signed ({', '.join(changed) or MANIFEST})"
            )
        try:
            if certificate is None:
                config.use_elliptic_key_signer(private_key=Path(key))
            else:
                config.use_certificate_signer(private_key=Path(key),
                                              signing_certificate=Path(certificate),
                                              certificate_chain=[Path(c) for c in chain])  # fmt: skip
            with atomic_path(folder / SIGNATURE) as out:
                config.sign(staged, out)
        except (ValueError, TypeError, OSError) as e:
            raise CnnlabError(f"cannot sign {folder} with {key}: {e}") from None
    return folder / SIGNATURE


def verify_signature(folder: Path, trusted: str | Path) -> tuple[dict[str, str], str]:
    """Verify bundle.sig with `trusted` (a PEM public key, or a CA certificate) before anything
    of the bundle is read. Returns ({file name: sha256} as signed, now authentic; what was
    verified, in words); `match_signed` then holds the files the load reads to these."""
    from model_signing import verifying

    trusted = Path(trusted)
    sig = folder / SIGNATURE
    if not sig.exists() and not sig.is_symlink():
        raise CnnlabError(f"{folder} is not signed (no {SIGNATURE}) and --require-signed asks for "
                          f"a signature that {trusted} verifies; sign it with `cnnlab sign "
                          f"{folder} --key PRIVATE.pem`")  # fmt: skip
    statement = _statement(read_inside(folder, SIGNATURE, SIGNATURE_MAX_BYTES), sig)
    signed = {str(r.get("name")): str(r.get("digest")) for r in _resources(statement)}
    kind = _read_pem(trusted)
    if kind == "private key":
        raise CnnlabError(f"{trusted} is a private key: --require-signed takes the public key "
                          "(or the CA certificate); keep the private key to the signer")  # fmt: skip
    # only the files the (now checked) signature names are hashed: the rest of a run folder
    # is not walked; `match_signed` then holds the set to exactly the bundle's files
    config = verifying.Config().set_hashing_config(_hashing()).set_ignore_unsigned_files(True)
    try:
        if kind == "certificate":
            config.use_certificate_verifier(certificate_chain=[trusted])
        else:
            config.use_elliptic_key_verifier(public_key=trusted)
        config.verify(folder, sig)
    except Exception as e:  # noqa: BLE001 - model_signing raises what its parts raise
        raise CnnlabError(f"{sig}: the signature does not verify with {trusted}: "
                          f"{_reason(e, folder, signed)}") from None  # fmt: skip
    return signed, f"{SIGNATURE} verified with {trusted.name} ({kind}): {len(signed)} files"


def match_signed(folder: Path, signed: dict[str, str], data: dict[str, bytes]) -> str:
    """The files the load read (manifest.json included) are exactly those signed, byte for
    byte: the bytes used are the bytes signed, whatever changed on disk meanwhile."""
    sig = folder / SIGNATURE
    if sorted(signed) != sorted(data):
        raise CnnlabError(f"{sig}: the signature does not verify as this bundle's: it covers "
                          f"{', '.join(sorted(signed))}, not {', '.join(sorted(data))}")  # fmt: skip
    changed = [n for n in sorted(data) if signed[n] != hashlib.sha256(data[n]).hexdigest()]
    if changed:
        raise CnnlabError(f"{sig}: the signature does not verify: {', '.join(changed)} changed "
                          "while the bundle was loaded")  # fmt: skip
    return f"the {len(data)} files loaded are the files signed: {', '.join(sorted(data))}"


def _resources(statement: dict) -> list[dict]:
    resources = statement.get("predicate", {}).get("resources", [])
    return [r for r in resources if isinstance(r, dict)] if isinstance(resources, list) else []


def describe_signature(folder: Path) -> str:
    """What `cnnlab check` says of a signature it was not asked to verify."""
    if not (folder / SIGNATURE).exists():
        return "not signed (`cnnlab sign` signs it; --require-signed KEY.pem requires it)"
    return f"{SIGNATURE} present, not verified (give --require-signed KEY.pem to verify it)"


def _read_pem(path: Path) -> str:
    """'certificate', 'public key' or 'private key', from the PEM's header."""
    try:
        text = read_capped(path, PEM_MAX_BYTES)
    except OSError as e:
        raise CnnlabError(f"{path} is unreadable: {e}") from None
    for marker, kind in ((b"-----BEGIN CERTIFICATE-----", "certificate"),
                         (b"PUBLIC KEY-----", "public key"), (b"PRIVATE KEY-----", "private key")):  # fmt: skip
        if marker in text:
            return kind
    raise CnnlabError(f"{path} is not a PEM key or certificate")


def _statement(data: bytes, where: Path) -> dict:
    """The in-toto statement a signature carries (what it signs), read only for its names."""
    try:
        envelope = strict_json(data.decode(), str(where))["dsseEnvelope"]
        statement = strict_json(base64.b64decode(envelope["payload"]).decode(), str(where))
    except (KeyError, TypeError, ValueError) as e:
        raise CnnlabError(f"{where} is not a model-signing signature ({e})") from None
    if not isinstance(statement, dict):
        raise CnnlabError(f"{where} is not a model-signing signature")
    return statement


def _reason(e: Exception, folder: Path, signed: dict[str, str]) -> str:
    """Which files differ from the digests the signature carries (read from it, so only
    said, never trusted), else model_signing's own reason (another key, a forged signature)."""
    changed = []
    for name, digest in signed.items():
        try:
            if digest_inside(folder, name, SEALED_MAX_BYTES)["sha256"] != digest:
                changed.append(name)
        except CnnlabError:
            changed.append(name)
    if changed:
        return ", ".join(sorted(changed)) + " changed since it was signed"
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
