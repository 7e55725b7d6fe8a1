"""URLs with credentials, as people really type them, and how to show them without the password.

People paste URLs with unencoded `@`, `/`, `#`, `?`, `%` or spaces in the password, with a
leading space, or with SQLAlchemy's `postgresql+psycopg://` scheme. Standard parsers then read
part of the password as the host or the path and put it into their error messages. Here the
credentials are split off first, by the last `@` (host names and paths never contain one), and
everything shown to a person is built from the parts with the password replaced by `***`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

MASK = "***"
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


@dataclass(frozen=True)
class CredentialUrl:
    scheme: str
    user: str | None
    password: str | None
    location: str  # host, port, path and query: everything after the credentials

    def with_credentials(self, scheme: str | None = None) -> str:
        """The URL again, with user and password percent-encoded so any parser reads them."""
        return self._render(scheme, self.password)

    def masked(self) -> str:
        return self._render(None, MASK if self.password else None)

    def _render(self, scheme: str | None, password: str | None) -> str:
        userinfo = ""
        if self.user is not None or password is not None:
            userinfo = quote(self.user or "", safe="")
            if password is not None:
                userinfo += ":" + (password if password == MASK else quote(password, safe=""))
            userinfo += "@"
        return f"{scheme or self.scheme}://{userinfo}{self.location}"


def lenient_unquote(text: str) -> str:
    """Decode %XX sequences (as UTF-8); a `%` that starts none stays a literal `%`."""
    if "%" not in text:
        return text
    data = bytearray()
    index = 0
    while index < len(text):
        match = _PERCENT.match(text, index)
        if match:
            data.append(int(match.group(1), 16))
            index = match.end()
        else:
            data += text[index].encode("utf-8", "surrogateescape")
            index += 1
    return data.decode("utf-8", "replace")


def parse(url: str) -> CredentialUrl | None:
    """Split `scheme://user:password@location`; None when the text is not a URL at all."""
    text = url.strip()
    scheme, separator, rest = text.partition("://")
    if not separator or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return None
    user: str | None = None
    password: str | None = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        name, colon, secret = userinfo.partition(":")
        user = lenient_unquote(name)
        password = lenient_unquote(secret) if colon else None
    return CredentialUrl(scheme.lower(), user, password, rest)


def mask(text: str) -> str:
    """Any URL or key=value connection string, safe to print: its password becomes ***."""
    parsed = parse(text)
    if parsed is not None:
        return parsed.masked()
    return _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + MASK, text.strip())


def password_of(text: str) -> str | None:
    parsed = parse(text)
    if parsed is not None:
        return parsed.password
    match = _KEYWORD_PASSWORD.search(text)
    return match.group(2).strip("'") if match else None


def scrub(message: str, *secrets: str | None) -> str:
    """`message` with every secret (and its percent-encoded forms) replaced by ***."""
    for secret in secrets:
        if not secret:
            continue
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            message = message.replace(form, MASK)
    return message
