"""Invitation emails: a subject, a text body and an HTML body, from one template file.

A template file starts with a `Subject:` line, then a blank line, then the text body; an HTML
body may follow after a line `--- html ---`. Placeholders are `{{ code }}`, `{{ link }}`,
`{{ cohort }}`, `{{ expires }}` (a date) and `{{ email }}`, with Jinja2's conditions
(`{% if link %}...{% endif %}`) and filters, in a sandbox. Every value put into the HTML body is
escaped. Templates written for earlier versions, with single braces (`{code}`; `{{` and `}}` for
literal braces), still work: a file without Jinja markup is read that way. Without an HTML body,
the HTML part is the text, escaped, with its link made clickable. Templates are checked before
any message is sent: an unknown placeholder is an error.
"""

from __future__ import annotations

import html
import re
import string
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from beta_invites_cli.errors import InvitesError, excerpt

if TYPE_CHECKING:
    import jinja2

PLACEHOLDERS = ("code", "link", "cohort", "expires", "email")
HTML_SEPARATOR = re.compile(r"(?m)^--- ?html ?---[ \t]*\n")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Template:
    subject: str  # Jinja2 source of each part
    body: str
    html: str | None
    source: str

    @property
    def placeholders(self) -> set[str]:
        names: set[str] = set()
        for part, escaped in self._parts():
            names |= _variables(part, escaped, self.source)
        return names

    def _parts(self) -> list[tuple[str, bool]]:
        parts = [(self.subject, False), (self.body, False)]
        return parts + ([(self.html, True)] if self.html is not None else [])

    def render(
        self, *, code: str, link: str | None, cohort: str, expires_at: datetime, email: str
    ) -> Rendered:
        values = {
            "code": code,
            "link": link or "",
            "cohort": cohort,
            "expires": expires_at.strftime("%Y-%m-%d"),
            "email": email,
        }
        try:
            subject = _compiled(self.subject, False).render(values)
            text = _compiled(self.body, False).render(values)
            page = _compiled(self.html, True).render(values) if self.html is not None else None
        # The operator's own template code: whatever it raises (a sandbox refusal, a range too
        # big, a division by zero) is a fault of the file, said in one line.
        except Exception as exc:
            reason = str(exc) if len(str(exc)) <= 200 else str(exc)[:200] + "..."
            raise InvitesError(f"{self.source}: cannot be filled in: {reason}") from None
        if page is None:
            page = text_as_html(text, values["link"])
        return Rendered(" ".join(subject.split()), text, page)


@cache
def _environment(escaped: bool) -> jinja2.Environment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(
        autoescape=escaped, undefined=StrictUndefined, keep_trailing_newline=True
    )


@cache
def _compiled(source: str, escaped: bool) -> jinja2.Template:
    return _environment(escaped).from_string(source)


def _variables(source: str, escaped: bool, where: str) -> set[str]:
    from jinja2 import TemplateSyntaxError, meta

    try:
        parsed = _environment(escaped).parse(source)
    except TemplateSyntaxError as exc:
        raise InvitesError(f"{where}: line {exc.lineno}: {exc.message}") from None
    names = meta.find_undeclared_variables(parsed)
    unknown = sorted(names - set(PLACEHOLDERS))
    if unknown:
        shown = ", ".join("{{ " + p + " }}" for p in PLACEHOLDERS)
        raise InvitesError(f"{where}: unknown placeholder {{{{ {unknown[0]} }}}}; use {shown}")
    return set(names)


def text_as_html(text: str, link: str) -> str:
    """A text body as a simple HTML page: escaped, paragraphs kept, the link clickable."""
    escaped = html.escape(text)
    if link:
        shown = html.escape(link)
        escaped = escaped.replace(shown, f'<a href="{shown}">{shown}</a>')
    paragraphs = [p.replace("\n", "<br>\n") for p in escaped.strip().split("\n\n")]
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html>\n<html><body style="font-family: sans-serif">\n{body}\n</body></html>\n'
    )


def _legacy(text: str, source: str) -> str:
    """A single-brace template of earlier versions as Jinja2 source."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise InvitesError(f"{source}: {exc} (write {{{{ and }}}} for literal braces)") from None
    out = []
    for literal, name, spec, conversion in parsed:
        out.append(literal.replace("{", "{{ '{' }}").replace("}", "{{ '}' }}"))
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
            names = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise InvitesError(f"{source}: unknown placeholder {shown}; use {names}")
        out.append("{{ " + name + " }}")
    return "".join(out)


def parse(text: str, source: str) -> Template:
    head, separator, rest = text.replace("\r\n", "\n").partition("\n\n")
    if not separator or not head.lower().startswith("subject:"):
        raise InvitesError(
            f"{source}: a template starts with a `Subject:` line, then a blank line, then the body"
        )
    subject = head.split(":", 1)[1].strip()
    if "\n" in subject or not subject:
        raise InvitesError(f"{source}: the subject must be one non-empty line")
    parts = HTML_SEPARATOR.split(rest, maxsplit=1)
    body, page = parts[0], (parts[1] if len(parts) > 1 else None)
    if "{{" not in text and "{%" not in text:
        subject, body = _legacy(subject, source), _legacy(body, source)
        page = _legacy(page, source) if page is not None else None
    template = Template(subject=subject, body=body, html=page, source=source)
    template.placeholders  # noqa: B018 - validates every placeholder now, before sending anything
    # Filled in once now, so a template that fails whatever the values fails before `send`
    # has issued anything.
    template.render(
        code="ABCDEFGHJKMNPQRS",
        link="https://example.com/signup?invite=ABCDEFGHJKMNPQRS",
        cohort="press-example",
        expires_at=datetime(2030, 1, 31, tzinfo=timezone.utc),
        email="ada@example.com",
    )
    return template


def load(path: Path | None, *, signup_url: str | None, kind: str = "invitation") -> Template:
    """The operator's template, or the default `kind` one (invitation or reminder), with a link
    when a signup URL is set."""
    if path is None:
        name = f"{kind}.txt" if signup_url else f"{kind}-code-only.txt"
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
    """The link every message carries: checked before anything is issued, or a typo such as
    `htps://` goes out to a whole cohort."""
    if not signup_url:
        return
    if "{code}" not in signup_url:
        raise InvitesError(f"INVITES_SIGNUP_URL must contain {{code}}: {excerpt(signup_url)}")
    try:
        parts = urlsplit(signup_url)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in signup_url)
    ):
        raise InvitesError(
            f"INVITES_SIGNUP_URL must be an http:// or https:// URL with a host and no spaces: "
            f"{excerpt(signup_url)}"
        )
