"""DKIM: what the mail server received verifies with dkimpy (an implementation that is not
ours), fed the public key through its DNS hook; the outbox's files are signed the same way."""

from __future__ import annotations

import subprocess
from email import message_from_bytes
from pathlib import Path
from typing import Any

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from beta_invites_cli.delivery import dkim
from tests.conftest import Invoke
from tests.smtp import SmtpServer

FROM = {"INVITES_FROM": "Beta Team <beta@example.com>"}


def write_key(path: Path, kind: str, bits: int = 2048) -> Path:
    key: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=bits)
        if kind == "rsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def record_for(key_file: Path) -> bytes:
    """The TXT record the README says to publish, as DNS would serve it."""
    return dkim.load(str(key_file), "s1", "example.com").public_record().encode()


def verifies(raw: bytes, record: bytes) -> bool:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.example.com."
        return record

    return bool(dkimpy.verify(raw, dnsfunc=dnsfunc))


TEMPLATE = """Subject: Your invitation to the beta for people who read very long subject lines, {{ cohort }} édition

Hi!
.A line that starts with a dot (the wire doubles it).
..and one with two.
Trailing spaces here:   \t
Your code is {{ code }}: {{ link }}



"""


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_every_message_the_server_received_verifies(
    invites: Invoke, tmp_path: Path, kind: str
) -> None:
    key = write_key(tmp_path / "dkim.pem", kind)
    (tmp_path / "invite.txt").write_text(TEMPLATE)
    env = {
        **FROM,
        "INVITES_DKIM_KEY_FILE": str(key),
        "INVITES_DKIM_SELECTOR": "s1",
        "INVITES_SIGNUP_URL": "https://app.example.com/join?code={code}",
        "INVITES_UNSUBSCRIBE_URL": "https://app.example.com/unsubscribe?code={code}",
        "INVITES_UNSUBSCRIBE_MAILTO": "unsubscribe@example.com",
        "INVITES_REPLY_TO": "Équipe Beta <team@example.com>",
    }
    with SmtpServer(smtputf8=True) as server:
        result = invites(
            "send --cohort press-x --template invite.txt --email ada@example.org"
            " --email zoë@bücher.example --email grace@example.net",
            env={"SMTP_URL": server.url, **env},
        )
        assert result.exit_code == 0, result.stderr
        received = list(server.recorder.raw)
    assert len(received) == 3
    record = record_for(key)
    assert [verifies(raw, record) for raw in received] == [True, True, True]
    signature = message_from_bytes(received[0])["DKIM-Signature"]
    tags = dict(
        part.strip().split("=", 1)
        for part in " ".join(signature.split()).split(";")
        if part.strip()
    )
    assert tags["a"] == f"{kind}-sha256" and tags["c"] == "relaxed/relaxed"
    assert tags["d"] == "example.com" and tags["s"] == "s1"
    assert tags["h"].lower().split(":") == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "reply-to",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "from",
    ]
    # The check can fail: one changed byte of the body, or a header added under the signature.
    tampered = received[0].replace(b"Hi!", b"Hi.")
    assert not verifies(tampered, record)
    added = b"From: someone@else.example\r\n" + received[0]
    assert not verifies(added, record)


def test_the_outbox_files_are_signed_too(invites: Invoke, tmp_path: Path) -> None:
    key = write_key(tmp_path / "dkim.pem", "rsa", 1024)
    env = {**FROM, "INVITES_DKIM_KEY_FILE": str(key), "INVITES_DKIM_SELECTOR": "s1"}
    result = invites("send --cohort c --outbox out --email ada@example.org", env=env)
    assert result.exit_code == 0, result.stderr
    (eml,) = (tmp_path / "out").glob("*.eml")
    assert verifies(eml.read_bytes(), record_for(key))


def test_the_readme_openssl_commands_make_a_key_that_verifies(
    invites: Invoke, tmp_path: Path
) -> None:
    """The key and the TXT record as the README makes them, with openssl alone."""
    subprocess.run(
        [
            "openssl",
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "dkim.pem",
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    public = subprocess.run(
        "openssl pkey -in dkim.pem -pubout -outform DER | openssl base64 -A",
        shell=True,
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    record = f"v=DKIM1; k=rsa; p={public}".encode()
    assert record == record_for(tmp_path / "dkim.pem")
    env = {**FROM, "INVITES_DKIM_KEY_FILE": "dkim.pem", "INVITES_DKIM_SELECTOR": "s1"}
    with SmtpServer() as server:
        assert invites("send --cohort c --email a@example.org", env={"SMTP_URL": server.url, **env})
        (raw,) = server.recorder.raw
    assert verifies(raw, record)


def test_bad_dkim_settings_are_one_error_before_anything(invites: Invoke, tmp_path: Path) -> None:
    write_key(tmp_path / "ok.pem", "rsa", 1024)
    subprocess.run(
        ["openssl", "genrsa", "-out", "small.pem", "768"],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (tmp_path / "public.pem").write_bytes(
        serialization.load_pem_private_key((tmp_path / "ok.pem").read_bytes(), None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    cases = [
        (
            {"INVITES_DKIM_KEY_FILE": "missing.pem", "INVITES_DKIM_SELECTOR": "s1"},
            "INVITES_DKIM_KEY_FILE: cannot read missing.pem: No such file or directory",
        ),
        (
            {"INVITES_DKIM_KEY_FILE": "ok.pem"},
            "INVITES_DKIM_KEY_FILE is set but INVITES_DKIM_SELECTOR is not",
        ),
        (
            {"INVITES_DKIM_SELECTOR": "s1"},
            "INVITES_DKIM_SELECTOR is set but INVITES_DKIM_KEY_FILE is not",
        ),
        (
            {"INVITES_DKIM_KEY_FILE": "public.pem", "INVITES_DKIM_SELECTOR": "s1"},
            "INVITES_DKIM_KEY_FILE: public.pem: it is not a PEM private key",
        ),
        (
            {"INVITES_DKIM_KEY_FILE": "small.pem", "INVITES_DKIM_SELECTOR": "s1"},
            "INVITES_DKIM_KEY_FILE: small.pem: an RSA key of 768 bits; receivers ignore signatures"
            " by keys under 1024 bits (use 2048)",
        ),
        (
            {"INVITES_DKIM_KEY_FILE": "ok.pem", "INVITES_DKIM_SELECTOR": "s 1"},
            "INVITES_DKIM_SELECTOR: 's 1' is not a DNS label",
        ),
    ]
    with SmtpServer() as server:
        for settings, message in cases:
            result = invites(
                "send --cohort c --email a@example.org",
                env={"SMTP_URL": server.url, **FROM, **settings},
            )
            assert (result.exit_code, result.stderr) == (1, f"Error: {message}\n"), settings
        assert server.recorder.raw == []
    assert invites("list --format csv").stdout.count("\n") == 1  # the header: nothing issued
