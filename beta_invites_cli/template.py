"""Invitation emails: a subject and a plain-text body with placeholders.

A template file starts with a `Subject:` line, then a blank line, then the body. Placeholders
are `{code}`, `{link}`, `{cohort}`, `{expires}` (a date) and `{email}`; `{{` and `}}` are literal
braces. Templates are checked before any message is sent.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from beta_invites_cli.errors import InvitesError

PLACEHOLDERS = ("code", "link", "cohort", "expires", "email")


@dataclass(frozen=True)
class Template:
    subject: str
    body: str
    source: str

    @property
    def placeholders(self) -> set[str]:
        return _fields(self.subject, self.source) | _fields(self.body, self.source)

    def render(
        self, *, code: str, link: str | None, cohort: str, expires_at: datetime, email: str
    ) -> tuple[str, str]:
        values = {
            "code": code,
            "link": link or "",
            "cohort": cohort,
            "expires": expires_at.strftime("%Y-%m-%d"),
            "email": email,
        }
        return self.subject.format_map(values), self.body.format_map(values)


def _fields(text: str, source: str) -> set[str]:
    names = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise InvitesError(f"{source}: {exc} (write {{{{ and }}}} for literal braces)") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            shown = (
                "{"
                + name
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
            raise InvitesError(
                f"{source}: unknown placeholder {shown}; use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
            )
        names.add(name)
    return names


def parse(text: str, source: str) -> Template:
    head, separator, body = text.replace("\r\n", "\n").partition("\n\n")
    if not separator or not head.lower().startswith("subject:"):
        raise InvitesError(
            f"{source}: a template starts with a `Subject:` line, then a blank line, then the body"
        )
    subject = head.split(":", 1)[1].strip()
    if "\n" in subject or not subject:
        raise InvitesError(f"{source}: the subject must be one non-empty line")
    template = Template(subject=subject, body=body, source=source)
    template.placeholders  # noqa: B018 - validates every placeholder now, before sending anything
    return template


def load(path: Path | None, *, signup_url: str | None) -> Template:
    """The operator's template, or the default one (with a link when a signup URL is set)."""
    if path is None:
        name = "invitation.txt" if signup_url else "invitation-code-only.txt"
        text = (
            resources.files("beta_invites_cli")
            .joinpath("templates")
            .joinpath(name)
            .read_text("utf-8")
        )
        return parse(text, f"default template {name}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise InvitesError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvitesError(f"{path}: not UTF-8 text") from None
    template = parse(text, str(path))
    if "link" in template.placeholders and not signup_url:
        raise InvitesError(f"{path} uses {{link}} but INVITES_SIGNUP_URL is not set")
    return template


def signup_link(signup_url: str | None, code: str) -> str | None:
    return signup_url.replace("{code}", code) if signup_url else None


def check_signup_url(signup_url: str | None) -> None:
    if signup_url and "{code}" not in signup_url:
        raise InvitesError(f"INVITES_SIGNUP_URL must contain {{code}}: {signup_url}")
