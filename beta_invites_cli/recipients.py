"""Reading and checking the people to invite, before anything is written.

A recipients file is a CSV with an email column (`email`, `E-mail`, `Email Address`, ...;
comma, semicolon or tab), or a plain list of one address per line, UTF-8 with or without a BOM.
It is read a line at a time, so a huge or malformed file costs little memory and its errors
quote only a short excerpt. Malformed CSV stops everything, naming the line: a record may not
run over several lines, because a stray quote would otherwise swallow the rest of the file.
Every address is validated (no DNS) and normalised (the domain lower-cased). Nothing here keeps
a recipient in memory: the caller streams them on (issuing spills them to disk), so a list of a
million people costs what one line costs.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from beta_invites_cli.errors import InvitesError, excerpt

MAX_EMAIL = 320
MAX_COHORT = 64
MAX_LINE = 65_536  # characters; a longer line is not a list of people
CHUNK = 1 << 16

# Header spellings that name the address column, compared without case, spaces or punctuation.
EMAIL_HEADERS = frozenset(
    {
        "email",
        "emailaddress",
        "emailaddresses",
        "mail",
        "mailaddress",
        "emailadresse",
        "adresseemail",
        "adressemail",
        "courriel",
        "correo",
        "correoelectronico",
    }
)


class BadAddress(ValueError):
    """Not an email address; the message says why."""


def check_cohort(cohort: str) -> str:
    """A cohort label as the seed allows it: 1-64 characters, no control characters."""
    if not cohort:
        raise InvitesError("must not be empty")
    if len(cohort) > MAX_COHORT:
        raise InvitesError(f"is {len(cohort)} characters long; at most {MAX_COHORT}")
    if cohort != cohort.strip():
        raise InvitesError(f"{cohort!r} starts or ends with whitespace")
    for char in cohort:
        if unicodedata.category(char) == "Cc":
            raise InvitesError(f"contains the control character U+{ord(char):04X}")
    return cohort


# Plain ASCII addresses, the overwhelming majority, are checked by this strict pattern (a subset
# of what email-validator accepts); anything else goes through email-validator itself.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN = re.compile(rf"^({_ATOM}(?:\.{_ATOM})*)@((?:{_LABEL}\.)+[A-Za-z]{{2,63}})$")


def _plain_address(address: str) -> str | None:
    match = _PLAIN.match(address)
    if match is None or len(address) > 254 or len(match.group(1)) > 64:
        return None
    local, domain = match.groups()
    if not domain.islower():
        domain = domain.lower()
    if "xn--" in domain or _special_use(domain):  # IDNA and special-use names: the full check
        return None
    return f"{local}@{domain}"


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


def normalise_email(address: str) -> str:
    """The address as stored (the domain lower-cased); BadAddress says why it is not one."""
    if len(address) > MAX_EMAIL:
        raise BadAddress(f"longer than {MAX_EMAIL} characters")
    plain = _plain_address(address)
    if plain is not None:
        return plain
    from email_validator import EmailNotValidError, validate_email

    try:
        valid = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise BadAddress(str(exc).rstrip(".")) from None
    local, _, domain = valid.normalized.rpartition("@")
    email = f"{local}@{domain.lower()}"
    if len(email) > MAX_EMAIL:
        raise BadAddress(f"longer than {MAX_EMAIL} characters")
    return email


def lines_of(stream: BinaryIO, source: str) -> Iterator[tuple[int, str]]:
    """(line number, text without its line break), decoded as UTF-8 a chunk at a time."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    number = 0
    pending = ""
    while True:
        chunk = stream.read(CHUNK)
        try:
            pending += decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            bad = number + pending.count("\n") + chunk[: exc.start].count(b"\n") + 1
            raise InvitesError(
                f"{source}: line {bad} is not valid UTF-8 (save the file as UTF-8 and try again)"
            ) from None
        *complete, pending = pending.split("\n")
        for line in complete:
            number += 1
            if len(line) > MAX_LINE:
                raise _too_long(source, number)
            yield number, line.removesuffix("\r")
        if len(pending) > MAX_LINE:
            raise _too_long(source, number + 1)
        if not chunk:
            break
    if pending:
        yield number + 1, pending.removesuffix("\r")


def _too_long(source: str, number: int) -> InvitesError:
    return InvitesError(
        f"{source}: line {number} is longer than {MAX_LINE:,} characters: "
        "not a list of email addresses"
    )


def _is_email_header(name: str) -> bool:
    return re.sub(r"[\W_]+", "", name.lower()) in EMAIL_HEADERS


def rows_of(stream: BinaryIO, source: str) -> Iterator[tuple[int, str]]:
    """(line number, address) pairs from a CSV with an email column or a plain list."""
    lines = lines_of(stream, source)
    first: tuple[int, str] | None = None
    for number, line in lines:
        if line.strip():
            first = (number, line)
            break
    if first is None:
        return
    number, text = first
    if not any(d in text for d in ",;\t") and not _is_email_header(text.strip()):
        yield from _plain_list(first, lines)
    else:
        yield from _csv_rows(first, lines, source)


def _plain_list(
    first: tuple[int, str], lines: Iterable[tuple[int, str]]
) -> Iterator[tuple[int, str]]:
    for number, line in itertools.chain([first], lines):
        if line.strip() and not line.lstrip().startswith("#"):
            yield number, line.strip()


def _csv_rows(
    first: tuple[int, str], lines: Iterator[tuple[int, str]], source: str
) -> Iterator[tuple[int, str]]:
    # Spreadsheets write excel-style CSV; only the delimiter varies (`;` in many locales). The
    # header names it: the most frequent of the three.
    delimiter = max(",;\t", key=first[1].count)
    header = _record(first, lines, delimiter, source)
    index = next((i for i, name in enumerate(header) if _is_email_header(name)), None)
    if index is None:
        shown = excerpt(", ".join(header), 80)
        raise InvitesError(
            f"{source}: no email column in the header line {first[0]} ({shown}); "
            "name it `email` (or E-mail, Email Address)"
        )
    # A record must fit on one line (see _record), so each line is parsed on its own; a line
    # without quotes or carriage returns is, in excel's dialect, exactly its split.
    for number, line in lines:
        if '"' in line or "\r" in line:
            row = _record((number, line), lines, delimiter, source)
        elif not line.replace(delimiter, "").strip():
            continue
        else:
            row = line.split(delimiter)
        if any(cell.strip() for cell in row):
            yield number, row[index].strip() if index < len(row) else ""


def _record(
    first: tuple[int, str], lines: Iterator[tuple[int, str]], delimiter: str, source: str
) -> list[str]:
    """The record that starts on `first`, which must end there: a quote left open would
    otherwise swallow the lines after it. The lines it runs on to are read only to name them."""
    number, line = first
    try:
        return next(csv.reader([line + "\n"], csv.excel, delimiter=delimiter, strict=True))
    except csv.Error as exc:
        if "unexpected end of data" not in str(exc):
            raise InvitesError(f"{source}: line {number}: malformed CSV: {exc}") from None
    numbers = [number]

    def feed() -> Iterator[str]:
        yield line + "\n"
        for later, text in lines:
            numbers.append(later)
            yield text + "\n"

    try:
        next(csv.reader(feed(), csv.excel, delimiter=delimiter, strict=True))
    except csv.Error:
        raise InvitesError(
            f"{source}: line {number}: malformed CSV: "
            "a quote opened here is never closed (a stray quote?)"
        ) from None
    raise InvitesError(
        f"{source}: line {number}: a quoted field runs on to line {numbers[-1]}; a stray quote? "
        "(a record must fit on one line)"
    )
