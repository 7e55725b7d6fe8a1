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
from beta_invites_cli.exporting import csv_unguard

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
    if not _plain_domain(domain):
        return None
    return f"{local}@{domain}"


_SPECIAL_USE: frozenset[str] | None = None
_DOMAIN_OK: dict[str, bool] = {}  # recipients share a handful of domains: decide each once


def _plain_domain(domain: str) -> bool:
    """False for names email-validator must see: IDNA (xn--) and special-use names
    (localhost, .test, ...), which it refuses and explains."""
    known = _DOMAIN_OK.get(domain)
    if known is not None:
        return known
    global _SPECIAL_USE
    if _SPECIAL_USE is None:
        from email_validator import SPECIAL_USE_DOMAIN_NAMES

        _SPECIAL_USE = frozenset(SPECIAL_USE_DOMAIN_NAMES)
    labels = domain.split(".")
    special = any(".".join(labels[i:]) in _SPECIAL_USE for i in range(len(labels)))
    plain = not special and "xn--" not in domain
    if len(_DOMAIN_OK) < 10_000:
        _DOMAIN_OK[domain] = plain
    return plain


def normalise_many(
    values: list[tuple[int, str]],
) -> tuple[list[tuple[int, str]], list[tuple[int, str, str]]]:
    """normalise_email over (line, value) pairs: (line, address) for the valid ones and
    (line, value, reason) for the others. The plain ASCII case is inlined: it is nearly every
    address of a big list."""
    valid: list[tuple[int, str]] = []
    invalid: list[tuple[int, str, str]] = []
    match = _PLAIN.match
    known = _DOMAIN_OK
    for line, value in values:
        if value[:1] == "'":
            value = csv_unguard(value)
        found = match(value)
        if found is not None and len(value) <= 254:
            local, domain = found.groups()
            if len(local) <= 64 and domain.islower() and known.get(domain):
                valid.append((line, value))
                continue
        try:
            valid.append((line, normalise_email(value)))
        except BadAddress as exc:
            invalid.append((line, value, str(exc)))
    return valid, invalid


def normalise_email(address: str) -> str:
    """The address as stored (the domain lower-cased); BadAddress says why it is not one. A
    leading ' before = + - @ is our own CSV export's formula escape, not part of the address."""
    address = csv_unguard(address)
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


def line_chunks(stream: BinaryIO, source: str) -> Iterator[tuple[int, list[str]]]:
    """(number of the first line, lines without their line breaks), decoded a chunk at a
    time: UTF-8 (with or without a BOM), or UTF-16 with its BOM, as spreadsheets save
    "Unicode text"."""
    chunk = stream.read(CHUNK)
    utf16 = chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    encoding = "UTF-16" if utf16 else "UTF-8"
    decoder = codecs.getincrementaldecoder("utf-16" if utf16 else "utf-8-sig")()
    newline = "\n".encode(
        ("utf-16-le" if chunk.startswith(codecs.BOM_UTF16_LE) else "utf-16-be")
        if utf16
        else "utf-8"
    )
    number = 0
    pending = ""
    while True:
        try:
            pending += decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            bad = number + pending.count("\n") + chunk[: exc.start].count(newline) + 1
            raise InvitesError(
                f"{source}: line {bad} is not valid {encoding} "
                "(save the file as UTF-8 and try again)"
            ) from None
        carriage_returns = "\r" in pending
        lines = pending.split("\n")
        pending = lines.pop()
        if lines:
            if max(map(len, lines)) > MAX_LINE:
                longest = next(i for i, line in enumerate(lines) if len(line) > MAX_LINE)
                raise _too_long(source, number + longest + 1)
            if carriage_returns:
                lines = [line.removesuffix("\r") for line in lines]
            yield number + 1, lines
            number += len(lines)
        if len(pending) > MAX_LINE:
            raise _too_long(source, number + 1)
        if not chunk:
            break
        chunk = stream.read(CHUNK)
    if pending:
        yield number + 1, [pending.removesuffix("\r")]


def _numbered(chunks: Iterable[tuple[int, list[str]]]) -> Iterator[tuple[int, str]]:
    for start, lines in chunks:
        yield from enumerate(lines, start)


def _too_long(source: str, number: int) -> InvitesError:
    return InvitesError(
        f"{source}: line {number} is longer than {MAX_LINE:,} characters: "
        "not a list of email addresses"
    )


def _is_email_header(name: str) -> bool:
    return re.sub(r"[\W_]+", "", name.lower()) in EMAIL_HEADERS


def rows_of(stream: BinaryIO, source: str) -> Iterator[list[tuple[int, str]]]:
    """(line number, address) pairs from a CSV with an email column or a plain list, a chunk
    of the file at a time."""
    chunks = line_chunks(stream, source)
    first: tuple[int, str] | None = None
    after: list[str] = []
    for start, lines in chunks:
        offset = next((i for i, line in enumerate(lines) if line.strip()), None)
        if offset is not None:
            first, after = (start + offset, lines[offset]), lines[offset + 1 :]
            break
    if first is None:
        return
    rest = itertools.chain([(first[0] + 1, after)], chunks)
    text = first[1]
    if not any(d in text for d in ",;\t") and not _is_email_header(text.strip()):
        yield from _plain_list(itertools.chain([(first[0], [text])], rest))
    else:
        yield from _csv_rows(first, rest, source)


def _plain_list(chunks: Iterable[tuple[int, list[str]]]) -> Iterator[list[tuple[int, str]]]:
    for start, lines in chunks:
        yield [
            (number, value)
            for number, line in enumerate(lines, start)
            if (value := line.strip()) and not value.startswith("#")
        ]


def _csv_rows(
    first: tuple[int, str], chunks: Iterator[tuple[int, list[str]]], source: str
) -> Iterator[list[tuple[int, str]]]:
    # Spreadsheets write excel-style CSV; only the delimiter varies (`;` in many locales). The
    # header names it: the most frequent of the three.
    delimiter = max(",;\t", key=first[1].count)
    header = _record(first, _numbered(chunks), delimiter, source)
    index = next((i for i, name in enumerate(header) if _is_email_header(name)), None)
    if index is None:
        shown = excerpt(", ".join(header), 80)
        raise InvitesError(
            f"{source}: no email column in the header line {first[0]} ({shown}); "
            "name it `email` (or E-mail, Email Address)"
        )
    # A record must fit on one line (see _record), so each line is parsed on its own. In excel's
    # dialect a line without quotes or carriage returns is exactly its split, and a file with
    # one column and no delimiter is its lines.
    for start, lines in chunks:
        text = "\n".join(lines)
        if '"' in text or "\r" in text:
            yield list(_quoted_rows(enumerate(lines, start), chunks, delimiter, index, source))
        elif len(header) == 1 and delimiter not in text:
            yield [(n, value) for n, line in enumerate(lines, start) if (value := line.strip())]
        else:
            rows = []
            for number, line in enumerate(lines, start):
                if line.replace(delimiter, "").strip():
                    cells = line.split(delimiter)
                    rows.append((number, cells[index].strip() if index < len(cells) else ""))
            yield rows


def _quoted_rows(
    lines: Iterator[tuple[int, str]],
    chunks: Iterator[tuple[int, list[str]]],
    delimiter: str,
    index: int,
    source: str,
) -> Iterator[tuple[int, str]]:
    for number, line in lines:
        if '"' in line or "\r" in line:
            later = itertools.chain(lines, _numbered(chunks))
            row = _record((number, line), later, delimiter, source)
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
