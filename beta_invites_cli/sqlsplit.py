"""Split a migration file into statements, so that an error can name the one that failed."""

from __future__ import annotations

import re
from collections.abc import Iterator

_DOLLAR_TAG = re.compile(r"\$[A-Za-z_]*\$")


def split_statements(sql: str) -> Iterator[str]:
    """Yield the statements of `sql`, honouring quotes, dollar quotes and comments."""
    start = 0
    i = 0
    n = len(sql)
    while i < n:
        char = sql[i]
        if char == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif char == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
        elif char in ("'", '"'):
            i = _skip_quoted(sql, i, char)
        elif char == "$" and (match := _DOLLAR_TAG.match(sql, i)):
            end = sql.find(match.group(), match.end())
            i = n if end == -1 else end + len(match.group())
        elif char == ";":
            statement = sql[start : i + 1]
            if _has_code(statement):
                yield statement.strip()
            i += 1
            start = i
        else:
            i += 1
    rest = sql[start:]
    if _has_code(rest):
        yield rest.strip()


def _skip_quoted(sql: str, i: int, quote: str) -> int:
    i += 1
    while i < len(sql):
        if sql[i] == quote:
            if sql.startswith(quote * 2, i):  # doubled quote inside the literal
                i += 2
                continue
            return i + 1
        i += 1
    return i


def _has_code(text: str) -> bool:
    without_comments = re.sub(r"--[^\n]*|/\*.*?\*/", "", text, flags=re.DOTALL)
    return bool(without_comments.strip(" \t\r\n;"))
