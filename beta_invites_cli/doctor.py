"""Is the sending domain fit to send a cohort? DNS, DKIM, the relay, one-click unsubscribe and
the complaint rate, checked before the first message of a launch; nothing is sent or written.

Each check is `ok`, `warn` or `fail`, with what to do in words. The bulk-sender rules of Gmail
and Yahoo (February 2024) and Microsoft (May 2025) are summed up last: authenticated (SPF and
DKIM), aligned with the From domain (DMARC), TLS, one-click unsubscribe, and complaints below
0.1 %. The organisational domain is taken as the last two labels (no public suffix list):
`mail.example.co.uk` is compared as `co.uk`, a warning at worst.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import dns.exception
import dns.resolver

from beta_invites_cli.delivery.dkim import Signer
from beta_invites_cli.delivery.smtp import Deadlines, SmtpConfig, SmtpTransport
from beta_invites_cli.errors import InvitesError

OK, WARN, FAIL = "ok", "warn", "fail"
MAX_SPF_LOOKUPS = 10  # RFC 7208 section 4.6.4
RELAY_TIMEOUT = 15  # seconds for each SMTP step: a doctor should not hang
_SPF_LOOKUP_TERMS = re.compile(r"^[+?~-]?(include|a|mx|ptr|exists)(?=$|[:/])|^redirect=", re.I)
_SPF_TERM = re.compile(
    r"^[+?~-]?(all|include:\S+|a(:\S+)?(/\d+)?|mx(:\S+)?(/\d+)?|ptr(:\S+)?|ip4:[\d./]+"
    r"|ip6:[0-9a-f:./]+|exists:\S+)$|^(redirect|exp)=\S+$|^[a-z][\w.-]*=\S*$",
    re.I,
)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str  # what was found, and what to do when it is not ok


class Dns:
    """TXT, MX and A look-ups through dnspython; INVITES_DNS_SERVER names the resolver."""

    def __init__(self, server: str | None = None, timeout: float = 5.0) -> None:
        self.resolver = dns.resolver.Resolver(configure=server is None)
        if server is not None:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise InvitesError(f"INVITES_DNS_SERVER must be host:port, not {server!r}")
            self.resolver.nameservers = [host.strip("[]")]
            self.resolver.port = int(port)
        self.resolver.lifetime = timeout

    def records(self, name: str, kind: str) -> list[str]:
        """The records of `name` (TXT strings joined); [] when there are none."""
        try:
            answer = self.resolver.resolve(name, kind)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise InvitesError(
                f"DNS did not answer for {name} {kind} ({exc.__class__.__name__})"
            ) from None
        if kind == "TXT":
            return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
        return [r.to_text() for r in answer]


@dataclass(frozen=True)
class Setup:
    """What the doctor looks at: the settings, read and checked as `send` reads them."""

    from_domain: str
    dkim: Signer | None
    smtp: SmtpConfig | None
    unsubscribe_url: str | None
    unsubscribe_mailto: str | None


def examine(
    setup: Setup, lookups: Dns, complaint_rate: Callable[[], tuple[int, int]] | None
) -> list[Check]:
    """Every check, in order; the last sums up the bulk-sender rules."""
    checks = [
        _guarded("domain", lambda: _domain(setup.from_domain, lookups)),
        _guarded("spf", lambda: _spf(setup.from_domain, lookups)),
        _guarded("dmarc", lambda: _dmarc(setup, lookups)),
        _guarded("dkim", lambda: _dkim(setup, lookups)),
        _relay(setup.smtp),
        _unsubscribe(setup),
        _complaints(complaint_rate),
    ]
    checks.append(_bulk_rules(checks))
    return checks


def _guarded(name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except InvitesError as exc:
        return Check(name, FAIL, str(exc))


def _domain(domain: str, lookups: Dns) -> Check:
    mx = lookups.records(domain, "MX")
    if mx:
        return Check("domain", OK, f"{domain} has MX {', '.join(sorted(mx))}")
    if lookups.records(domain, "A") or lookups.records(domain, "AAAA"):
        return Check("domain", OK, f"{domain} has no MX but an address (mail goes there)")
    return Check(
        "domain",
        FAIL,
        f"{domain} has no MX and no address: replies and bounces cannot arrive, and receivers "
        "refuse mail from a domain that cannot receive; publish an MX record",
    )


def _spf(domain: str, lookups: Dns) -> Check:
    records = [r for r in lookups.records(domain, "TXT") if r.lower().startswith("v=spf1")]
    if not records:
        return Check(
            "spf",
            FAIL,
            f"{domain} has no SPF record: publish one, e.g. `v=spf1 include:<your relay's SPF> -all`",
        )
    if len(records) > 1:
        return Check(
            "spf", FAIL, f"{domain} has {len(records)} SPF records: merge them into one (RFC 7208)"
        )
    record = records[0]
    bad = [t for t in record.split()[1:] if not _SPF_TERM.match(t)]
    if bad:
        return Check("spf", FAIL, f"{domain} SPF is not valid: {' '.join(bad)!r} in {record!r}")
    count = _spf_lookups(record, lookups, seen={domain})
    if count > MAX_SPF_LOOKUPS:
        return Check(
            "spf",
            FAIL,
            f"{domain} SPF needs {count} DNS lookups, more than {MAX_SPF_LOOKUPS}: receivers "
            "treat it as an error (permerror); flatten includes into ip4:/ip6: ranges",
        )
    if re.search(r"(^|\s)\+?all\b", record):
        return Check(
            "spf",
            WARN,
            f"{domain} SPF ends in +all: anyone may send as you; end it in -all or ~all",
        )
    return Check("spf", OK, f"{record} ({count} DNS lookups of {MAX_SPF_LOOKUPS})")


def _spf_lookups(record: str, lookups: Dns, seen: set[str], depth: int = 0) -> int:
    count = 0
    for term in record.split()[1:]:
        if not _SPF_LOOKUP_TERMS.match(term):
            continue
        count += 1
        target = None
        if term.lower().lstrip("+?~-").startswith("include:"):
            target = term.split(":", 1)[1]
        elif term.lower().startswith("redirect="):
            target = term.split("=", 1)[1]
        if target and target not in seen and depth < MAX_SPF_LOOKUPS:
            seen.add(target)
            inner = [r for r in lookups.records(target, "TXT") if r.lower().startswith("v=spf1")]
            if inner:
                count += _spf_lookups(inner[0], lookups, seen, depth + 1)
    return count


def organisational(domain: str) -> str:
    return ".".join(domain.lower().rstrip(".").split(".")[-2:])


def _tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        key, _, value = part.strip().partition("=")
        if key:
            tags[key.strip().lower()] = value.strip()
    return tags


def _dmarc(setup: Setup, lookups: Dns) -> Check:
    domain = setup.from_domain
    found = None
    for where in dict.fromkeys([domain, organisational(domain)]):
        records = [r for r in lookups.records(f"_dmarc.{where}", "TXT") if r.startswith("v=DMARC1")]
        if records:
            found = (where, records[0])
            break
    if found is None:
        return Check(
            "dmarc",
            FAIL,
            f"_dmarc.{domain} has no DMARC record: Gmail and Yahoo require one of bulk senders; "
            f'publish e.g. "v=DMARC1; p=none; rua=mailto:dmarc@{organisational(domain)}", then tighten it',
        )
    where, record = found
    tags = _tags(record)
    policy = tags.get("p", "")
    if policy not in ("none", "quarantine", "reject"):
        return Check(
            "dmarc", FAIL, f"_dmarc.{where}: p={policy!r} is not none, quarantine or reject"
        )
    if setup.dkim is not None and not _aligned(setup.dkim.domain, domain, tags.get("adkim", "r")):
        mode = "strict" if tags.get("adkim") == "s" else "relaxed"
        return Check(
            "dmarc",
            FAIL,
            f"DKIM signs as {setup.dkim.domain}, which does not align ({mode}) with the From "
            f"domain {domain}: DMARC fails; set INVITES_DKIM_DOMAIN to {domain}",
        )
    if policy == "none":
        return Check(
            "dmarc",
            WARN,
            f"_dmarc.{where}: p=none (monitoring only: enough for Gmail and Yahoo, but it protects "
            "nobody); move to p=quarantine once reports show your mail passing",
        )
    return Check("dmarc", OK, f"_dmarc.{where}: p={policy}, DKIM aligned with {domain}")


def _aligned(signing: str, from_domain: str, mode: str) -> bool:
    if mode == "s":
        return signing.lower() == from_domain.lower()
    return organisational(signing) == organisational(from_domain)


def _dkim(setup: Setup, lookups: Dns) -> Check:
    signer = setup.dkim
    if signer is None:
        return Check(
            "dkim",
            FAIL,
            "messages are not signed: set INVITES_DKIM_KEY_FILE and INVITES_DKIM_SELECTOR "
            "(README: DKIM); Gmail, Yahoo and Microsoft refuse unauthenticated bulk mail (5.7.26)",
        )
    name = f"{signer.selector}._domainkey.{signer.domain}"
    records = [r for r in lookups.records(name, "TXT") if "p=" in r]
    expected = _tags(signer.public_record())
    if not records:
        return Check("dkim", FAIL, f"{name} has no DKIM record: publish {signer.public_record()!r}")
    published = _tags(records[0])
    key = re.sub(r"\s+", "", published.get("p", ""))
    if not key:
        return Check(
            "dkim",
            FAIL,
            f"{name}: the key is revoked (empty p=); publish {signer.public_record()!r}",
        )
    if published.get("k", "rsa") != expected["k"] or _decoded(key) != _decoded(expected["p"]):
        return Check(
            "dkim",
            FAIL,
            f"{name}: the published key is not the public half of INVITES_DKIM_KEY_FILE; "
            f"publish {signer.public_record()!r}",
        )
    return Check(
        "dkim", OK, f"{name} publishes the key of INVITES_DKIM_KEY_FILE ({signer.algorithm})"
    )


def _decoded(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return b""


def _relay(config: SmtpConfig | None) -> Check:
    if config is None:
        return Check(
            "relay", WARN, "SMTP_URL is not set: messages go to an outbox; nothing to check"
        )
    transport = SmtpTransport(config, deadlines=Deadlines.capped(RELAY_TIMEOUT))
    try:
        transport.connect()
        tls = transport.tls_version()
    except InvitesError as exc:
        return Check("relay", FAIL, str(exc))
    finally:
        transport.close()
    login = ", AUTH accepted" if config.username else ""
    if tls is None:
        return Check(
            "relay",
            FAIL,
            f"{config.describe()} offers no STARTTLS: messages travel unencrypted and Gmail "
            "refuses them (5.7.29); use a relay with STARTTLS, or smtps://",
        )
    return Check(
        "relay", OK, f"{config.describe()}: {tls}, certificate valid for {config.host}{login}"
    )


def _unsubscribe(setup: Setup) -> Check:
    if setup.unsubscribe_url:
        return Check(
            "unsubscribe", OK, "one-click unsubscribe (RFC 8058) at INVITES_UNSUBSCRIBE_URL"
        )
    if setup.unsubscribe_mailto:
        return Check(
            "unsubscribe",
            WARN,
            "only a mailto: unsubscribe: Gmail and Yahoo want one-click (RFC 8058); set "
            "INVITES_UNSUBSCRIBE_URL to an https endpoint",
        )
    return Check(
        "unsubscribe",
        FAIL,
        "no List-Unsubscribe: Gmail and Yahoo require one-click unsubscribe of bulk senders; set "
        "INVITES_UNSUBSCRIBE_URL (https, with {code})",
    )


def _complaints(rate: Callable[[], tuple[int, int]] | None) -> Check:
    if rate is None:
        return Check("complaints", WARN, "no database: the complaint rate is unknown")
    try:
        complained, sent = rate()
    except InvitesError as exc:
        return Check("complaints", WARN, f"the complaint rate is unknown: {exc}")
    if sent == 0:
        return Check("complaints", OK, "nothing sent in the last 30 days")
    share = complained / sent
    text = f"{complained} complaint(s) of {sent} sent in the last 30 days ({share:.2%})"
    if share >= 0.003:
        return Check(
            "complaints", FAIL, f"{text}: at 0.3 % Gmail and Yahoo refuse mail; send stops too"
        )
    if share >= 0.001:
        return Check("complaints", WARN, f"{text}: keep it under 0.1 %")
    return Check("complaints", OK, text)


def _bulk_rules(checks: list[Check]) -> Check:
    by_name = {c.name: c for c in checks}
    wanted = {
        "authenticated (SPF and DKIM)": ("spf", "dkim"),
        "aligned (DMARC)": ("dmarc",),
        "TLS": ("relay",),
        "one-click unsubscribe": ("unsubscribe",),
        "complaints under 0.1 %": ("complaints",),
    }
    missing = [
        rule for rule, names in wanted.items() if any(by_name[n].status == FAIL for n in names)
    ]
    if missing:
        return Check(
            "bulk-rules",
            FAIL,
            f"Gmail/Yahoo (2024) and Microsoft (2025) bulk-sender rules not met: {', '.join(missing)}",
        )
    return Check(
        "bulk-rules",
        OK,
        "Gmail/Yahoo (2024) and Microsoft (2025) bulk-sender rules met: " + ", ".join(wanted),
    )


def as_records(checks: list[Check]) -> list[dict[str, Any]]:
    return [asdict(c) for c in checks]
