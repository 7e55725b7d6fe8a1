"""Whose fault a refusal is: one table of rules for SMTP replies and bounce reports alike.

A mail server that refuses a message says why in two codes: the basic reply code (550) and,
usually, an RFC 3463 enhanced status (5.7.26). The enhanced status is read first; when it names
no rule (or there is none), the text is; then the basic code. What the class decides:

  recipient-gone   the address does not exist: the invite is bounced, the address suppressed;
  soft             the mailbox is full or the refusal is for now: tried again by a later run,
                   and suppressed (soft-bounced) after soft refusals on INVITES_SOFT_BOUNCE_LIMIT
                   different days;
  sender-refused   our domain, our relay or our reputation is at fault: never suppressed, and it
                   pauses the receiving domain for the rest of the run (SenderPause);
  unclassified     a 5xx that says nothing we know: failed the first time; a second one for the
                   same address on another day bounces it.

The text rules put the sender's fault first: a reply that says both "user unknown" and
"blocked" does not suppress anyone. PostgreSQL's public.beta_invites_refusal_kind(reply)
(migration 9990) applies the same rules to kept replies; a test holds the two together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    RECIPIENT_GONE = "recipient-gone"
    SOFT = "soft"
    SENDER_REFUSED = "sender-refused"
    UNCLASSIFIED = "unclassified"


KINDS = tuple(kind.value for kind in Kind)


@dataclass(frozen=True)
class Rule:
    kind: Kind
    shown: str  # what it matches, for the README's table
    means: str
    examples: tuple[str, ...]  # replies the rule is for (the tests run every one)
    enhanced: str | None = None  # a pattern on the enhanced status (whole match)
    text: str | None = None  # a pattern searched in the reply text (case-insensitive)
    basic: str | None = None  # a pattern on the basic code (whole match)


# In order: the first rule whose enhanced status matches; else the first whose text matches;
# else the first whose basic code matches. A 5xx that none matches is unclassified.
RULES: tuple[Rule, ...] = (
    Rule(
        Kind.RECIPIENT_GONE,
        "5.1.1, 5.1.2, 5.1.3, 5.1.6, 5.1.10, 5.2.1",
        "no such address, or the mailbox is disabled",
        ("550 5.1.1 <recipient>: Recipient address rejected: User unknown", "5.1.10", "5.2.1"),
        enhanced=r"5\.1\.(1|2|3|6|10)|5\.2\.1",
    ),
    Rule(
        Kind.SOFT,
        "5.2.2",
        "mailbox full",
        ("552 5.2.2 Mailbox full", "5.2.2"),
        enhanced=r"5\.2\.2",
    ),
    Rule(
        Kind.SENDER_REFUSED,
        "4.7.x",
        "policy, authentication (SPF/DKIM/DMARC), reputation or rate, for now",
        ("421 4.7.28 Our system has detected an unusual rate of unsolicited mail",),
        enhanced=r"4\.7\.\d{1,3}",
    ),
    Rule(
        Kind.SOFT,
        "any other 4.x.x",
        "any other refusal for now",
        ("452 4.2.2 The email account is over quota", "451 4.3.0 Try again later"),
        enhanced=r"4\.\d{1,3}\.\d{1,3}",
    ),
    Rule(
        Kind.SENDER_REFUSED,
        "5.7.x",
        "security or policy: relay denied, unauthenticated (5.7.26), no PTR (5.7.25),"
        " reputation (5.7.28), no TLS (5.7.29), authentication required (5.7.0)",
        (
            "550 5.7.26 This mail is unauthenticated, which poses a security risk to the sender",
            "550 5.7.25 The IP address sending this message does not have a PTR record",
            "550 5.7.28 Our system has detected an unusual rate of unsolicited mail",
            "530 5.7.29 Encryption required",
            "554 5.7.1 <recipient>: Relay access denied",
            "530 5.7.0 Authentication required",
        ),
        enhanced=r"5\.7\.\d{1,3}",
    ),
    Rule(
        Kind.SENDER_REFUSED,
        "5.3.x, 5.4.x, 5.6.x",
        "the receiving system or the network (5.3.x, 5.4.x), the message itself (5.6.x)",
        ("554 5.3.4 Message too big for system", "554 5.4.4 Unable to route", "5.6.0"),
        enhanced=r"5\.[346]\.\d{1,3}",
    ),
    Rule(
        Kind.SENDER_REFUSED,
        'text: "spam", "block", "blacklist", "policy", "relay", "authenticat", "reputation", "dmarc", "spf", "dkim", "not authorized", "rate limit", "too many", "starttls", "encryption required"',
        "no known code, but the text blames the sender",
        (
            "554 Message rejected as spam",
            "550 Sender blocked: listed on a blocklist",
            "550 Rejected by policy",
            "554 Relaying denied",
            "535 Authentication credentials invalid",
            "550 DMARC policy violation",
        ),
        text=r"spam|block|black ?list|policy|relay|authenticat|reputation|dmarc|\bspf\b|dkim"
        r"|not authori[sz]ed|rate limit|too many|starttls|encryption required",
    ),
    Rule(
        Kind.RECIPIENT_GONE,
        'text: "user unknown", "unknown user/recipient", "no such user/mailbox/recipient/address", "mailbox not found/does not exist/is disabled", "address does not exist", "account disabled"',
        "no known code, but the text says the address does not exist",
        (
            "550 User unknown",
            "550 No such user here",
            "550 Mailbox not found",
            "550 Requested action not taken: mailbox does not exist",
            "550 Unknown recipient",
        ),
        text=r"user unknown|unknown (user|recipient)|no such (user|mailbox|recipient|address)"
        r"|mailbox (not found|does not exist|is disabled)|address does not exist"
        r"|account (is )?disabled",
    ),
    Rule(
        Kind.SOFT,
        'text: "mailbox full", "over quota", "quota exceeded", "insufficient storage"',
        "no known code, but the text says the mailbox is full",
        ("552 Mailbox full", "552 Quota exceeded"),
        text=r"mailbox (is )?full|over quota|quota exceeded|insufficient storage",
    ),
    Rule(
        Kind.SENDER_REFUSED,
        "530, 535",
        "authentication required or failed (530, 535)",
        ("530 Must issue a STARTTLS command first", "535 Incorrect credentials"),
        basic=r"53[05]",
    ),
    Rule(
        Kind.SOFT,
        "any other 4xx",
        "any refusal for now",
        ("452 Too busy", "421 Closing"),
        basic=r"4\d\d",
    ),
)

# The basic code opens the reply; in a kept bounce report it follows the Status field and the
# diagnostic type ("5.0.0 smtp; 550 5.7.1 ...").
_BASIC = re.compile(r"^\s*(?:[245]\.\d{1,3}\.\d{1,3}\s+)?(?:[\w-]+;\s*)?([245]\d\d)(?:[\s-]|$)")
_ENHANCED = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
# An enhanced status that says more than "other" (x.0.0), which Exim writes in Status: while
# its Diagnostic-Code has the real one.
_SPECIFIC = re.compile(r"(?<![\d.])([245]\.(?:[1-9]\d{0,2}\.\d{1,3}|0\.[1-9]\d{0,2}))(?![\d.])")
# Addresses a server echoes are not words of its reason (blockchain@ is not "blocked").
_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")
# Refusals by the relay itself, the same whichever the recipient: they stop the whole run.
_RELAY = re.compile(
    r"relay(ing)? (access )?(denied|not permitted|prohibited)|authentication (required|failed)"
    r"|must authenticate|credentials invalid|incorrect credentials",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Refusal:
    kind: Kind
    code: str  # the codes as read: "550 5.7.26", "5.1.1", "421"
    relay: bool  # our relay refused us, whatever the recipient (relay denied, no login)

    def describe(self) -> str:
        return f"{self.code} {self.kind.value}".strip()


def classify(reply: str, status: str | None = None) -> Refusal | None:
    """Read a refusal: an SMTP reply ("550 5.7.26 ..."), or a DSN's Diagnostic-Code with its
    Status field (`status`). None when it is not a refusal (no 4xx or 5xx code at all)."""
    basic_match = _BASIC.match(reply)
    basic = basic_match.group(1) if basic_match else None
    found = (
        _SPECIFIC.search(status or "")
        or _SPECIFIC.search(reply)
        or _ENHANCED.search(status or "")
        or _ENHANCED.search(reply)
    )
    enhanced = found.group(1) if found else None
    if basic is None and enhanced is None:
        return None
    if (basic or enhanced or "2").startswith("2"):
        return None
    code = " ".join(c for c in (basic, enhanced) if c)
    kind = _kind(_ADDRESS.sub(" ", reply), basic, enhanced)
    if kind is None:
        return None
    relay = kind is Kind.SENDER_REFUSED and (
        bool(_RELAY.search(reply)) or basic in ("530", "535") or enhanced in ("5.7.0", "5.7.8")
    )
    return Refusal(kind, code, relay)


def _kind(reply: str, basic: str | None, enhanced: str | None) -> Kind | None:
    if enhanced is not None:
        for rule in RULES:
            if rule.enhanced is not None and re.fullmatch(rule.enhanced, enhanced):
                return rule.kind
    for rule in RULES:
        if rule.text is not None and re.search(rule.text, reply, re.IGNORECASE):
            return rule.kind
    if basic is not None:
        for rule in RULES:
            if rule.basic is not None and re.fullmatch(rule.basic, basic):
                return rule.kind
    if (basic or enhanced or "").startswith("5"):
        return Kind.UNCLASSIFIED
    return None


def domain_of(address: str) -> str:
    """The receiving domain a refusal is counted against: lower-cased, in its IDNA form."""
    domain = address.rpartition("@")[2].rstrip(".").lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain
