"""Reading and checking the people to invite, before anything is written.

A recipients file is a CSV with an `email` column, or a plain list of one address per line,
UTF-8 with or without a BOM. Every address is validated (no DNS) and normalised: the domain
lower-cased; duplicates are compared case-insensitively and issued once.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import unicodedata
from dataclasses import dataclass, field

from beta_invites_cli.errors import InvitesError

MAX_EMAIL = 320
MAX_COHORT = 64


@dataclass(frozen=True)
class Recipient:
    email: str  # as stored: the domain lower-cased
    key: str  # for comparison: all lower-case
    where: str  # "line 4" or "--email"


@dataclass
class RecipientList:
    recipients: list[Recipient] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


def check_cohort(cohort: str) -> str:
    if not cohort:
        raise InvitesError("--cohort must not be empty")
    if len(cohort) > MAX_COHORT:
        raise InvitesError(f"--cohort is {len(cohort)} characters long; at most {MAX_COHORT}")
    if cohort != cohort.strip():
        raise InvitesError(f"--cohort {cohort!r} starts or ends with whitespace")
    for char in cohort:
        if unicodedata.category(char) == "Cc":
            raise InvitesError(f"--cohort contains the control character U+{ord(char):04X}")
    return cohort


# Plain ASCII addresses, the overwhelming majority, are checked by this strict pattern (a subset
# of what email-validator accepts); anything else goes through email-validator itself.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN = re.compile(rf"^({_ATOM}(?:\.{_ATOM})*)@((?:{_LABEL}\.)+[A-Za-z]{{2,63}})$")


def _plain_address(address: str) -> Recipient | None:
    match = _PLAIN.match(address)
    if match is None or len(address) > 254 or len(match.group(1)) > 64:
        return None
    domain = match.group(2).lower()
    if "xn--" in domain or _special_use(domain):  # IDNA and special-use names: the full check
        return None
    email = f"{match.group(1)}@{domain}"
    return Recipient(email=email, key=email.lower(), where="")


_SPECIAL_USE: frozenset[str] | None = None
_DOMAIN_OK: dict[str, bool] = {}  # recipients share a handful of domains: decide each once


def _special_use(domain: str) -> bool:
    """Names email-validator refuses (localhost, .test, ...): left to it to explain."""
    known = _DOMAIN_OK.get(domain)
    if known is not None:
        return not known
    global _SPECIAL_USE
    if _SPECIAL_USE is None:
        from email_validator import SPECIAL_USE_DOMAIN_NAMES

        _SPECIAL_USE = frozenset(SPECIAL_USE_DOMAIN_NAMES)
    labels = domain.split(".")
    special = any(".".join(labels[i:]) in _SPECIAL_USE for i in range(len(labels)))
    if len(_DOMAIN_OK) < 10_000:
        _DOMAIN_OK[domain] = not special
    return special


def normalise_email(address: str) -> Recipient | str:
    """The normalised address, or the reason it is not one."""
    if len(address) > MAX_EMAIL:
        return f"longer than {MAX_EMAIL} characters"
    plain = _plain_address(address)
    if plain is not None:
        return plain
    from email_validator import EmailNotValidError, validate_email

    try:
        valid = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc).rstrip(".")
    local, _, domain = valid.normalized.rpartition("@")
    email = f"{local}@{domain.lower()}"
    if len(email) > MAX_EMAIL:
        return f"longer than {MAX_EMAIL} characters"
    return Recipient(email=email, key=email.lower(), where="")


def decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvitesError(
            f"{source}: line {line} is not valid UTF-8 (save the file as UTF-8 and try again)"
        ) from None


def rows_of(text: str, source: str) -> list[tuple[int, str]]:
    """(line number, address) pairs from a CSV with an `email` column or a plain list."""
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if (
        "," not in first
        and ";" not in first
        and "\t" not in first
        and first.strip().lower() != "email"
    ):
        return [
            (number, line.strip())
            for number, line in enumerate(lines, start=1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    dialect: type[csv.Dialect] | csv.Dialect = csv.excel
    with contextlib.suppress(csv.Error):
        dialect = csv.Sniffer().sniff(first, delimiters=",;\t")
    reader = csv.reader(io.StringIO(text), dialect)
    header = next(reader, [])
    columns = [name.strip().lower() for name in header]
    if "email" not in columns:
        raise InvitesError(f"{source}: no `email` column in the header ({', '.join(header)})")
    index = columns.index("email")
    result = []
    for row in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        result.append((number, row[index].strip() if index < len(row) else ""))
    return result


def collect(sources: list[tuple[str, bytes]], emails: tuple[str, ...]) -> RecipientList:
    """Check every address from the files (name, content) and the --email options."""
    result = RecipientList()
    seen: dict[str, str] = {}
    entries: list[tuple[str, str]] = []
    for name, data in sources:
        text = decode(data, name)
        label = "" if name == "-" else f"{name} "
        entries += [(f"{label}line {number}", value) for number, value in rows_of(text, name)]
    entries += [("--email", value) for value in emails]
    for where, value in entries:
        checked = normalise_email(value)
        if isinstance(checked, str):
            result.problems.append(f"{where}: {value!r}: {checked}")
            continue
        if checked.key in seen:
            result.duplicates.append(
                f"{where}: {value} duplicates {seen[checked.key]}; issued once"
            )
            continue
        seen[checked.key] = where
        result.recipients.append(Recipient(checked.email, checked.key, where))
    return result
