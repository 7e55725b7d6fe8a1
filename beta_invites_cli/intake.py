"""Checked input for issuing: every recipient read and checked before anything is written.

`prepare` reads the whole input (spreadsheets, CSV, one address a line, --email) and spills the
valid addresses, each with a fresh code, to an anonymous temporary file, so a million people
cost a few megabytes of memory and the file vanishes even if the process is killed. Issuing
(issuing.py) and the waitlist (waitlist.py) load that file with COPY.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO, BinaryIO
from uuid import UUID

from beta_invites_cli.codes import new_codes
from beta_invites_cli.emailkey import key as email_key
from beta_invites_cli.errors import InvitesError, ValidationFailed, excerpt
from beta_invites_cli.recipients import check_cohort, normalise_many, rows_of

KEPT = 1_000  # problems, duplicates and skips kept to show; the rest are counted
EMAIL_OPTION = "--email"


class InvalidRecipients(ValidationFailed):
    """Some addresses are not addresses; nothing was issued."""

    def __init__(self, problems: list[str], count: int) -> None:
        super().__init__(problems)
        self.count = count


class Spill:
    """The checked recipients, as COPY text rows `ord, source, line, email, key, code` in an
    anonymous temporary file (nothing to clean up, whatever happens to the process). The key
    (emailkey.key, what migration 995's function computes) is worked out here, where it costs
    a tenth of what the SQL function costs per row."""

    def __init__(self) -> None:
        # Closed by close(): the request that owns it outlives this constructor.
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="invites-recipients-")  # noqa: SIM115
        self.size = 0
        self.count = 0

    def append(self, source: int, rows: list[tuple[int, str]]) -> None:
        """(line, email) rows of one source; each gets the next position and a fresh code."""
        start = self.count
        codes = new_codes(len(rows))
        text = "".join(
            f"{start + i}\t{source}\t{line}\t{email}\t{email_key(email)}\t{code}\n"
            for i, ((line, email), code) in enumerate(zip(rows, codes, strict=True))
        )
        if "\\" in text:  # COPY's text format reads a backslash as an escape
            text = text.replace("\\", "\\\\")
        self.write(text.encode("utf-8"), len(rows))

    def write(self, data: bytes, count: int) -> None:
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as exc:
            raise InvitesError(
                f"cannot keep the recipients in a temporary file ({exc.strerror}): "
                f"set TMPDIR to a directory with room for about {self.size * 2 // 1024 + 1} KiB"
            ) from None
        self.size += len(data)
        self.count += count

    def blocks(self, size: int = 1 << 18) -> Iterator[bytes]:
        """The rows, read with pread: several transactions may load one spill at once."""
        descriptor = self._file.fileno()
        for offset in range(0, self.size, size):
            yield os.pread(descriptor, size, offset)

    def rows(self) -> Iterator[list[list[str]]]:
        """The rows, split into their fields (COPY text), a block at a time."""
        rest = b""
        for block in self.blocks():
            block = rest + block
            cut = block.rfind(b"\n") + 1
            rest = block[cut:]
            yield [line.split("\t") for line in block[:cut].decode("utf-8").split("\n")[:-1]]

    def close(self) -> None:
        self._file.close()


def copy_text(value: str) -> str:
    """`value` as a field of COPY's text format (addresses and labels never need it, but a
    backslash would otherwise be read as an escape)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\\", "\\\\").replace("\t", "\\t")
        value = value.replace("\n", "\\n").replace("\r", "\\r")
    return value


def from_copy_text(value: str) -> str:
    if "\\" not in value:
        return value
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r"}.get(m[1], m[1]), value)


@dataclass
class IssueRequest:
    """Checked input for issuing: the recipients, and the options that apply to all of them."""

    cohort: str
    spill: Spill
    labels: list[str]  # how each source is named in messages, by its number
    expires_in: timedelta | None
    sent_by: UUID | None
    problems: list[str] = field(default_factory=list)  # the first KEPT
    invalid: int = 0

    @property
    def given(self) -> int:
        """How many addresses the request named, valid or not (duplicates included)."""
        return self.spill.count + self.invalid

    def place(self, source: int, line: int) -> str:
        label = self.labels[source]
        return label if label == EMAIL_OPTION else f"{label}line {line}"

    def close(self) -> None:
        self.spill.close()

    def __enter__(self) -> IssueRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def prepare(
    cohort: str,
    sources: Sequence[tuple[str, BinaryIO]],
    addresses: Sequence[tuple[str, str]],
    *,
    expires_in: timedelta | None,
    sent_by: UUID | None,
    skip_invalid: bool,
) -> IssueRequest:
    """Read and check every recipient before anything is written: one line per problem.

    `sources` are (name, file) pairs; `addresses` are (where, address) pairs given one by one
    (`where` is the option that named them)."""
    labels = ["" if name == "-" else f"{name} " for name, _ in sources]
    labels.append(EMAIL_OPTION)
    request = IssueRequest(check_cohort(cohort), Spill(), labels, expires_in, sent_by)
    try:
        _check_all(request, sources, addresses)
    except BaseException:
        request.close()
        raise
    if request.invalid and not skip_invalid:
        request.close()
        raise InvalidRecipients(request.problems, request.invalid)
    return request


def _check_all(
    request: IssueRequest,
    sources: Sequence[tuple[str, BinaryIO]],
    addresses: Sequence[tuple[str, str]],
) -> None:
    def chunks() -> Iterator[tuple[int, list[tuple[int, str]]]]:
        for source, (name, stream) in enumerate(sources):
            for rows in rows_of(stream, name):
                yield source, rows
        yield len(sources), [(position, value) for position, (_, value) in enumerate(addresses, 1)]

    for source, rows in chunks():
        valid, invalid = normalise_many(rows)
        for line, value, reason in invalid:
            request.invalid += 1
            if len(request.problems) < KEPT:
                request.problems.append(
                    f"{request.place(source, line)}: {excerpt(value)}: {reason}"
                )
        if valid:
            request.spill.append(source, valid)
