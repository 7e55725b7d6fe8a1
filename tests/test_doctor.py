"""`invites doctor` against a real DNS server on loopback (a healthy domain and broken ones) and
real SMTP servers, with and without STARTTLS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trustme

from beta_invites_cli.delivery import dkim
from tests.conftest import Invoke
from tests.dns import DnsServer, Records
from tests.smtp import SmtpServer, Tls
from tests.test_dkim import write_key
from tests.test_tls import PASSWORD, USER, server_context


def zone(domain: str, key_record: str) -> Records:
    """A domain as a careful sender sets it up (its relay's SPF included)."""
    records: Records = {
        domain: {
            "MX": [f"10 mx.{domain}"],
            "A": ["192.0.2.10"],
            "TXT": [
                "v=spf1 ip4:192.0.2.1 include:_spf.relay.example -all",
                "google-site-verification=x",
            ],
        },
        f"_dmarc.{domain}": {"TXT": [f"v=DMARC1; p=quarantine; rua=mailto:dmarc@{domain}"]},
        f"s1._domainkey.{domain}": {"TXT": [key_record]},
        "_spf.relay.example": {
            "TXT": ["v=spf1 ip4:198.51.100.0/24 include:_spf2.relay.example -all"]
        },
        "_spf2.relay.example": {"TXT": ["v=spf1 ip4:203.0.113.0/24 -all"]},
    }
    return records


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def relay(ca: trustme.CA) -> Iterator[SmtpServer]:
    with SmtpServer(tls=Tls("starttls", server_context(ca), {USER: PASSWORD})) as server:
        yield server


@pytest.fixture
def settings(ca: trustme.CA, relay: SmtpServer, tmp_path: Path) -> dict[str, str]:
    key = write_key(tmp_path / "dkim.pem", "rsa")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    return {
        "INVITES_FROM": "Beta Team <beta@healthy.example>",
        "INVITES_DKIM_KEY_FILE": str(key),
        "INVITES_DKIM_SELECTOR": "s1",
        "INVITES_UNSUBSCRIBE_URL": "https://app.healthy.example/unsubscribe?code={code}",
        "SMTP_URL": relay.url_with(USER, PASSWORD),
        "INVITES_SMTP_CA_FILE": str(tmp_path / "ca.pem"),
    }


def published(settings: dict[str, str], domain: str = "healthy.example") -> str:
    return dkim.load(settings["INVITES_DKIM_KEY_FILE"], "s1", domain).public_record()


def run(invites: Invoke, records: Records, settings: dict[str, str], *args: str) -> Any:
    with DnsServer(records) as dns:
        return invites("doctor", *args, env={**settings, "INVITES_DNS_SERVER": dns.address})


def test_a_healthy_domain_passes_every_check(
    invites: Invoke, settings: dict[str, str], relay: SmtpServer
) -> None:
    result = run(invites, zone("healthy.example", published(settings)), settings)
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "domain"],
        ["ok", "spf"],
        ["ok", "dmarc"],
        ["ok", "dkim"],
        ["ok", "relay"],
        ["ok", "unsubscribe"],
        ["ok", "complaints"],
        ["ok", "bulk-rules"],
    ]
    assert lines[1].endswith("(2 DNS lookups of 10)")  # the include, and the one inside it
    assert f"smtp://{USER}:***@127.0.0.1:{relay.port}: TLSv1." in lines[4]
    assert lines[4].endswith("certificate valid for 127.0.0.1, AUTH accepted")
    assert PASSWORD not in result.stdout + result.stderr
    assert relay.recorder.messages == []  # nothing was sent


def test_broken_domains_fail_with_the_fix_in_words(
    invites: Invoke, settings: dict[str, str], tmp_path: Path
) -> None:
    other = write_key(tmp_path / "other.pem", "rsa")
    wrong_key = dkim.load(str(other), "s1", "healthy.example").public_record()
    eleven = " ".join(f"include:_spf{i}.many.example" for i in range(11))
    records = zone("healthy.example", wrong_key)
    records["healthy.example"]["TXT"] = [f"v=spf1 {eleven} -all"]
    for i in range(11):
        records[f"_spf{i}.many.example"] = {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]}
    del records["_dmarc.healthy.example"]
    with SmtpServer() as plain:  # no STARTTLS
        broken = {**settings, "SMTP_URL": plain.url}
        del broken["INVITES_UNSUBSCRIBE_URL"]
        result = run(invites, records, broken, "--format", "json")
    assert result.exit_code == 1
    checks = {c["name"]: (c["status"], c["detail"]) for c in json.loads(result.stdout)}
    assert checks["domain"][0] == "ok"
    assert checks["spf"] == (
        "fail",
        "healthy.example SPF needs 11 DNS lookups, more than 10: receivers treat it as an error"
        " (permerror); flatten includes into ip4:/ip6: ranges",
    )
    assert checks["dmarc"][0] == "fail" and "has no DMARC record" in checks["dmarc"][1]
    assert checks["dkim"][0] == "fail"
    assert checks["dkim"][1].startswith(
        "s1._domainkey.healthy.example: the published key is not the public half of"
        " INVITES_DKIM_KEY_FILE; publish 'v=DKIM1; k=rsa; p="
    )
    assert checks["relay"] == (
        "fail",
        f"smtp://127.0.0.1:{plain.port} offers no STARTTLS: messages travel unencrypted and"
        " Gmail refuses them (5.7.29); use a relay with STARTTLS, or smtps://",
    )
    assert checks["unsubscribe"][0] == "fail"
    assert checks["bulk-rules"] == (
        "fail",
        "Gmail/Yahoo (2024) and Microsoft (2025) bulk-sender rules not met: authenticated (SPF"
        " and DKIM), aligned (DMARC), TLS, one-click unsubscribe",
    )


def test_warnings_do_not_fail_and_alignment_does(invites: Invoke, settings: dict[str, str]) -> None:
    records = zone("healthy.example", published(settings))
    records["_dmarc.healthy.example"] = {"TXT": ["v=DMARC1; p=none"]}
    result = run(invites, records, {**settings, "INVITES_UNSUBSCRIBE_URL": ""})
    warned = [line for line in result.stdout.splitlines() if line.startswith("warn")]
    assert result.exit_code == 1  # no unsubscribe at all fails
    assert [line.split()[1] for line in warned] == ["dmarc"]
    # A key signing for another organisation does not align with the From domain.
    elsewhere = {**settings, "INVITES_DKIM_DOMAIN": "relay.example"}
    records["s1._domainkey.relay.example"] = {"TXT": [published(settings, "relay.example")]}
    records["relay.example"] = {"A": ["192.0.2.20"]}
    result = run(invites, records, elsewhere, "--format", "json")
    checks = {c["name"]: (c["status"], c["detail"]) for c in json.loads(result.stdout)}
    assert checks["dmarc"] == (
        "fail",
        "DKIM signs as relay.example, which does not align (relaxed) with the From domain"
        " healthy.example: DMARC fails; set INVITES_DKIM_DOMAIN to healthy.example",
    )


def test_the_complaint_rate_is_read_and_send_refuses_past_0_3_percent(
    invites: Invoke, conn: psycopg.Connection[Any], settings: dict[str, str]
) -> None:
    conn.execute(
        "INSERT INTO beta_invites (code, email, cohort, sent_at, complained_at)"
        " SELECT translate(upper(substr(md5(i::text), 1, 16)), '01', 'XY'), 'p' || i || '@example.com',"
        " 'press-x', now() - interval '1 day', CASE WHEN i < 2 THEN now() END"
        " FROM generate_series(0, 499) AS i"
    )
    result = run(invites, zone("healthy.example", published(settings)), settings)
    assert (
        "FAIL  complaints   2 complaint(s) of 500 sent in the last 30 days (0.40%)" in result.stdout
    )
    sent = invites(
        "send --cohort press-x --email new@example.com --outbox out",
        env={"INVITES_FROM": "beta@example.com"},
    )
    assert (sent.exit_code, sent.stderr) == (
        1,
        "Error: press-x: 2 spam complaint(s) of 500 message(s) sent in the last 30 days (0.40%):"
        " at 0.3 % Gmail and Yahoo refuse a sender's mail; nothing was sent (find out why people"
        " report it; --ignore-complaint-rate sends anyway)\n",
    )
    assert conn.execute("SELECT count(*) FROM beta_invites").fetchone() == (500,)  # none issued
    anyway = invites(
        "send --cohort press-x --email new@example.com --outbox out --ignore-complaint-rate",
        env={"INVITES_FROM": "beta@example.com"},
    )
    assert anyway.exit_code == 0, anyway.stderr
    assert anyway.stderr.startswith("warning: press-x: 2 spam complaint(s) of 500")
    report = json.loads(invites("report --format json").stdout)
    (press,) = [r for r in report if r["cohort"] == "press-x"]
    assert (press["complained"], press["complaint_rate"]) == (2, 0.0040)
