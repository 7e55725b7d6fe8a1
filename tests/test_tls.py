"""TLS to the mail server, through real TLS servers with a certificate authority made here:
STARTTLS required with AUTH (port 587 style) and implicit TLS (port 465 style), and each way a
handshake can fail, which is one Error: line with nothing issued or sent."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trustme

from tests.conftest import Invoke
from tests.smtp import SmtpServer, Tls

FROM = {"INVITES_FROM": "Beta Team <beta@example.com>"}
USER, PASSWORD = "apikey", "s3cr€t p@ss/#word"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "company-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(names or ("127.0.0.1", "localhost"))).configure_cert(context)
    return context


@pytest.fixture
def starttls(ca: trustme.CA) -> Iterator[SmtpServer]:
    with SmtpServer(tls=Tls("starttls", server_context(ca), {USER: PASSWORD})) as server:
        yield server


@pytest.fixture
def implicit(ca: trustme.CA) -> Iterator[SmtpServer]:
    with SmtpServer(tls=Tls("implicit", server_context(ca), {USER: PASSWORD})) as server:
        yield server


def issued(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM beta_invites").fetchone()
    return int(row[0]) if row else -1


def send(invites: Invoke, url: str, *args: str, **env: str) -> Any:
    return invites("send", "--cohort", "press-x", *args, env={"SMTP_URL": url, **FROM, **env})


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_sends_over_tls_with_a_private_ca(
    invites: Invoke,
    conn: psycopg.Connection[Any],
    ca_file: str,
    starttls: SmtpServer,
    implicit: SmtpServer,
    mode: str,
) -> None:
    server = starttls if mode == "starttls" else implicit
    result = send(
        invites,
        server.url_with(USER, PASSWORD),
        "--email",
        "ada@example.org",
        INVITES_SMTP_CA_FILE=ca_file,
    )
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "sent 1, failed 0, bounced 0, skipped 0"
    assert [m["To"] for m in server.recorder.messages] == ["ada@example.org"]
    assert server.recorder.logins == [USER] * 4  # the default four connections each log in
    # No FQDN on this machine: the EHLO names the From domain, never smtplib's [127.0.0.1].
    assert set(server.recorder.helo_names) == {"example.com"}


def test_auth_login_sends_the_user_then_the_password(
    invites: Invoke, conn: psycopg.Connection[Any], ca: trustme.CA, ca_file: str
) -> None:
    tls = Tls("starttls", server_context(ca), {USER: PASSWORD}, mechanisms=("LOGIN",))
    with SmtpServer(tls=tls) as server:
        result = send(
            invites,
            server.url_with(USER, PASSWORD),
            "--email",
            "ada@example.org",
            "--connections",
            "1",
            INVITES_SMTP_CA_FILE=ca_file,
        )
        assert result.exit_code == 0, result.stderr
        assert server.recorder.logins == [USER]


def test_eight_connections_over_tls(
    invites: Invoke, conn: psycopg.Connection[Any], ca_file: str, implicit: SmtpServer
) -> None:
    emails = [arg for i in range(40) for arg in ("--email", f"p{i}@example.org")]
    result = send(
        invites,
        implicit.url_with(USER, PASSWORD),
        "--connections",
        "8",
        *emails,
        INVITES_SMTP_CA_FILE=ca_file,
        INVITES_SMTP_HELO="mail.example.net",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "sent 40, failed 0, bounced 0, skipped 0"
    received = implicit.recorder.by_recipient()
    assert len(received) == 40 and all(len(m) == 1 for m in received.values())
    assert implicit.recorder.connections == 8
    assert implicit.recorder.logins == [USER] * 8
    assert set(implicit.recorder.helo_names) == {"mail.example.net"}


def refused(invites: Invoke, conn: psycopg.Connection[Any], url: str, **env: str) -> str:
    """The one line a failed handshake gives; nothing is issued and the password is not in it."""
    result = send(invites, url, "--email", "ada@example.org", **env)
    assert result.exit_code == 1, result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert PASSWORD not in result.stderr and "s3cr" not in result.stderr
    assert issued(conn) == 0
    return str(result.stderr)


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_an_untrusted_certificate_is_one_line(
    invites: Invoke,
    conn: psycopg.Connection[Any],
    starttls: SmtpServer,
    implicit: SmtpServer,
    mode: str,
) -> None:
    server = starttls if mode == "starttls" else implicit
    scheme = "smtp" if mode == "starttls" else "smtps"
    assert refused(invites, conn, server.url_with(USER, PASSWORD)) == (
        f"Error: cannot connect to the mail server {scheme}://{USER}:***@127.0.0.1:"
        f"{server.port}: its TLS certificate is not trusted (unable to get local issuer "
        "certificate); INVITES_SMTP_CA_FILE names a private CA to trust\n"
    )
    assert server.recorder.logins == [] and server.recorder.messages == []


def test_a_certificate_for_another_name_is_one_line(
    invites: Invoke, conn: psycopg.Connection[Any], ca: trustme.CA, ca_file: str
) -> None:
    tls = Tls("starttls", server_context(ca, "mail.example.com"), {USER: PASSWORD})
    with SmtpServer(tls=tls) as server:
        message = refused(
            invites, conn, server.url_with(USER, PASSWORD), INVITES_SMTP_CA_FILE=ca_file
        )
        assert server.recorder.logins == []
    assert message == (
        f"Error: cannot connect to the mail server smtp://{USER}:***@127.0.0.1:{server.port}: "
        "its TLS certificate is for another name (IP address mismatch, certificate is not "
        "valid for '127.0.0.1')\n"
    )


def test_smtps_to_a_plain_server_is_one_line(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    with SmtpServer() as plain:
        url = plain.url.replace("smtp://", "smtps://", 1)
        message = refused(invites, conn, url)
    assert message == (
        f"Error: cannot connect to the mail server smtps://127.0.0.1:{plain.port}: the TLS "
        "handshake failed (wrong version number: is it a plain SMTP port? smtp:// uses "
        "STARTTLS)\n"
    )


def test_a_failed_handshake_is_one_line(
    invites: Invoke, conn: psycopg.Connection[Any], ca: trustme.CA, ca_file: str
) -> None:
    # An old relay that offers only a cipher without forward secrecy, which Python's client
    # refuses: the server hangs up in the handshake, before any certificate is looked at.
    context = server_context(ca)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("AES128-SHA:@SECLEVEL=0")
    with SmtpServer(tls=Tls("starttls", context)) as server:
        message = refused(invites, conn, server.url, INVITES_SMTP_CA_FILE=ca_file)
    assert message == (
        f"Error: cannot connect to the mail server smtp://127.0.0.1:{server.port}: "
        "the TLS handshake failed (the server hung up: it may accept no TLS version or "
        "cipher we offer)\n"
    )


def test_the_password_is_never_sent_without_tls(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    with SmtpServer() as plain:
        message = refused(invites, conn, plain.url_with(USER, PASSWORD))
    assert message == (
        f"Error: smtp://{USER}:***@127.0.0.1:{plain.port} does not offer STARTTLS: refusing to "
        "send the password unencrypted (use smtps:// or a server with STARTTLS)\n"
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "No such file or directory"),
        ("not a certificate\n", "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
    ],
)
def test_a_bad_ca_file_is_one_line(
    invites: Invoke,
    conn: psycopg.Connection[Any],
    starttls: SmtpServer,
    tmp_path: Path,
    content: str | None,
    reason: str,
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    message = refused(
        invites, conn, starttls.url_with(USER, PASSWORD), INVITES_SMTP_CA_FILE=str(path)
    )
    assert message == f"Error: INVITES_SMTP_CA_FILE {path}: {reason}\n"
    assert starttls.recorder.connections == 0


@pytest.mark.parametrize("helo", ["localhost", "[127.0.0.1", "mail example.com", "-x.example.com"])
def test_a_bad_helo_name_is_one_line(
    invites: Invoke, conn: psycopg.Connection[Any], starttls: SmtpServer, helo: str
) -> None:
    message = refused(invites, conn, starttls.url, INVITES_SMTP_HELO=helo)
    assert message == (
        f"Error: INVITES_SMTP_HELO: '{helo}' is not a fully qualified domain name "
        "(like mail.example.com) or an address literal (like [192.0.2.1])\n"
    )
