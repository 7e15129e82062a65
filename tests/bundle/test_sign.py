"""Signed bundles (OpenSSF model-signing, a key or a certificate, no network): `cnnlab sign`
signs exactly the bundle's files, and `--require-signed` refuses a bundle whose signature is
missing, made with another key, or no longer matches any byte of those files."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from cnnlab.bundle import check_bundle, load_bundle, save_bundle
from cnnlab.cli import main
from cnnlab.data import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from tests.bundle_edit import edit_meta, reseal
from tests.conftest import digit_images

SIGNATURE = "bundle.sig"


def _pem_private(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def _pem_public(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip


def _certificate(subject: str, key, issuer: str, issuer_key, ca: bool):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                     encipher_only=False, decipher_only=False), critical=True)
    )  # fmt: skip
    from cryptography.hazmat.primitives import serialization

    cert = builder.sign(issuer_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    """Elliptic-curve keys made for this test run (never committed): a signer's, another's,
    and a small PKI (a CA and a signing certificate it issued)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    root = tmp_path_factory.mktemp("keys")
    signer, other, ca = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    files = {"private": _pem_private(signer), "public": _pem_public(signer),
             "other_public": _pem_public(other), "ca_private": _pem_private(ca),
             "ca": _certificate("cnnlab test CA", ca, "cnnlab test CA", ca, ca=True),
             "certificate": _certificate("cnnlab test signer", signer, "cnnlab test CA", ca,
                                         ca=False)}  # fmt: skip
    for name, data in files.items():
        (root / f"{name}.pem").write_bytes(data)
    return {name: root / f"{name}.pem" for name in files}


@pytest.fixture(scope="module")
def unsigned(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    args = {"in_channels": 1, "num_classes": 1, "widths": [4, 8]}
    model = create_model("fastnet", **args)
    pre = Preprocess(channels=1, size=[28, 28], mean=[0.13], std=[0.3])
    return save_bundle(tmp_path_factory.mktemp("bundles") / "xray", model, "fastnet", args, pre,
                       ["NORMAL", "PNEUMONIA"], class_mode="binary",
                       decision={"threshold": 0.4, "temperature": 1.5, "policy": "fixed"})  # fmt: skip


@pytest.fixture
def signed(unsigned, keys, tmp_path) -> Path:
    out = tmp_path / "signed"
    shutil.copytree(unsigned, out)
    for name in ("history.jsonl", "curves.png"):  # a run folder's other files: not signed
        (out / name).write_text("x")
    (out / "latest.jsonl").symlink_to("history.jsonl")  # nor walked: a link, a FIFO
    os.mkfifo(out / "progress.fifo")
    assert main(["sign", str(out), "--key", str(keys["private"])]) == 0
    return out


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_signed_bundle_verifies_and_covers_exactly_its_files(signed, keys):
    import base64

    envelope = json.loads((signed / SIGNATURE).read_text())["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    names = sorted(r["name"] for r in statement["predicate"]["resources"])
    assert names == ["bundle.json", "card.md", "manifest.json", "model.safetensors"]
    bundle = load_bundle(signed, require_signed=keys["public"])
    assert bundle.threshold == 0.4
    (signed / "history.jsonl").write_text("a new epoch")  # the run goes on: still verifies
    (signed / "new.png").write_bytes(b"png")
    load_bundle(signed, require_signed=keys["public"])


@pytest.mark.parametrize("name", ["bundle.json", "model.safetensors", "card.md", "manifest.json"])
def test_any_edited_byte_refuses_even_with_the_seal_recomputed(signed, keys, name):
    data = bytearray((signed / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (signed / name).write_bytes(bytes(data))
    if name != "manifest.json":
        reseal(signed)  # an attacker who recomputes the seal is still caught by the signature
    with pytest.raises(CnnlabError, match=f"signature.*does not verify.*{name}"):
        load_bundle(signed, require_signed=keys["public"])


def test_a_signature_by_another_key_refuses(signed, keys):
    with pytest.raises(CnnlabError, match="signature.*does not verify"):
        load_bundle(signed, require_signed=keys["other_public"])


def test_an_unsigned_bundle_refuses_when_a_signature_is_required(unsigned, keys):
    with pytest.raises(CnnlabError, match="not signed.*cnnlab sign"):
        load_bundle(unsigned, require_signed=keys["public"])
    load_bundle(unsigned)  # without the requirement it loads


def test_certificate_signing_round_trip(unsigned, keys, tmp_path, capsys):
    out = tmp_path / "cert"
    shutil.copytree(unsigned, out)
    code, _, err = cli(capsys, "sign", out, "--key", keys["private"], "--certificate",
                       keys["certificate"], "--chain", keys["ca"])  # fmt: skip
    assert code == 0, err
    load_bundle(out, require_signed=keys["ca"])  # the CA certificate is the root of trust
    with pytest.raises(CnnlabError, match="signature.*does not verify"):
        load_bundle(out, require_signed=keys["public"])  # a key check of a certificate signature


def test_an_edit_through_a_command_removes_the_signature_it_breaks(signed, keys):
    from cnnlab.bundle.seal import seal_bundle

    edit_meta(signed, lambda meta: meta["metrics"].update(accuracy=0.9), seal=False)
    seal_bundle(signed)  # what evaluate --record, recalibrate and ood-fit do after their edit
    assert not (signed / SIGNATURE).exists()
    with pytest.raises(CnnlabError, match="not signed"):
        load_bundle(signed, require_signed=keys["public"])


def test_sign_refuses_a_bundle_that_would_not_load(unsigned, keys, tmp_path, capsys):
    out = tmp_path / "broken"
    shutil.copytree(unsigned, out)
    edit_meta(out, lambda meta: meta["decision"].update(threshold=0.9), seal=False)
    code, _, err = cli(capsys, "sign", out, "--key", keys["private"])
    assert code == 2 and "bundle.json" in err and not (out / SIGNATURE).exists()


def test_require_signed_on_predict_serve_and_app_refuses_an_unsigned_bundle(
    unsigned, signed, keys, tmp_path, capsys
):
    from PIL import Image

    image = tmp_path / "x.png"
    Image.fromarray(digit_images(1, seed=3)[0][0]).save(image)
    for args in (["predict", unsigned, image], ["serve", unsigned], ["app", unsigned]):
        code, out, err = cli(capsys, *args, "--require-signed", keys["public"])
        assert code == 2 and "not signed" in err and "Traceback" not in err, (args, err)
    code, out, err = cli(capsys, "predict", signed, image, "--require-signed", keys["public"])
    assert code == 0 and ("PNEUMONIA" in out or "NORMAL" in out), err


def test_check_reports_the_signature(signed, keys, capsys):
    code, out, _ = cli(capsys, "check", signed)
    assert code == 0 and "signature" in out and "not verified" in out
    code, out, _ = cli(capsys, "check", signed, "--require-signed", keys["public"])
    assert code == 0 and "verified with" in out
    checks, _ = check_bundle(signed, require_signed=keys["other_public"])
    assert checks[-1].name == "signature" and not checks[-1].ok


def test_the_app_gets_the_requirement(keys, monkeypatch):
    from cnnlab.app.launch import REQUIRE_SIGNED_ENV, streamlit_command

    _, env = streamlit_command("pneumonia", require_signed=str(keys["public"]))
    assert env[REQUIRE_SIGNED_ENV] == str(keys["public"].resolve())


def test_an_onnx_file_is_not_trusted_beside_a_signed_bundle(signed, keys, tmp_path):
    from cnnlab.deploy.backends import use_backend

    bundle = load_bundle(signed, require_signed=keys["public"])
    assert bundle.signed
    (tmp_path / "any.onnx").write_bytes(b"not covered by the signature")
    with pytest.raises(CnnlabError, match="not covered by the bundle's signature"):
        use_backend(bundle, "onnx", tmp_path / "any.onnx")
