"""`invites history` and the timeline under `invites show`: the events that sql/997's triggers
write for every change to an invite, whoever makes it. Never an email address."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import IO, TYPE_CHECKING, Any
from uuid import UUID

from psycopg import sql
from psycopg.rows import dict_row

from beta_invites_cli import exporting
from beta_invites_cli.filters import like_pattern

if TYPE_CHECKING:
    import psycopg

KINDS = (
    "issued",
    "sent",
    "resent",
    "reminded",
    "delivery_failed",
    "delivery_uncertain",
    "bounced",
    "reclassified",
    "complained",
    "extended",
    "revoked",
    "redeemed",
    "anonymised",
)
KEYS = ("event_id", "at", "kind", "code", "cohort", "actor", "detail")
FETCH_SIZE = 5_000

# The newest `limit` matching events (all of them without a limit), oldest first.
EVENTS = sql.SQL(
    """
    SELECT * FROM (
      SELECT e.id AS event_id, {at} AS at, e.kind, i.code, {cohort} AS cohort,
             {actor} AS actor, {detail} AS detail
        FROM public.beta_invites_events e
        LEFT JOIN public.beta_invites i ON i.id = e.invite_id
       WHERE {where}
       ORDER BY e.id DESC
       LIMIT %(limit)s) AS newest
     ORDER BY event_id
    """
)


@dataclass(frozen=True)
class EventFilters:
    cohort: str | None = None  # a shell pattern
    since: date | None = None  # on or after this day
    until: date | None = None  # on or before this day
    kinds: tuple[str, ...] = ()
    invite_id: UUID | None = None

    def where(self) -> tuple[sql.Composable, dict[str, Any]]:
        conditions: list[sql.Composable] = [sql.SQL("TRUE")]
        params: dict[str, Any] = {}
        if self.cohort is not None:
            conditions.append(sql.SQL(r"i.cohort LIKE %(cohort_pattern)s ESCAPE '\'"))
            params["cohort_pattern"] = like_pattern(self.cohort)
        if self.since is not None:
            conditions.append(sql.SQL("e.at >= %(since)s::date"))
            params["since"] = self.since
        if self.until is not None:
            conditions.append(sql.SQL("e.at < %(until)s::date + 1"))
            params["until"] = self.until
        if self.kinds:
            conditions.append(sql.SQL("e.kind = ANY(%(kinds)s)"))
            params["kinds"] = list(self.kinds)
        if self.invite_id is not None:
            conditions.append(sql.SQL("e.invite_id = %(invite_id)s"))
            params["invite_id"] = self.invite_id
        return sql.SQL(" AND ").join(conditions), params


def _query(
    filters: EventFilters, limit: int | None, *, export: str | None = None
) -> tuple[sql.Composed, dict[str, Any]]:
    where, params = filters.where()
    if export == "csv":
        columns = {
            "at": exporting.ISO.format(sql.SQL("e.at")),
            "cohort": exporting.CSV_SAFE.format(sql.SQL("i.cohort")),
            "actor": exporting.CSV_SAFE.format(sql.SQL("e.actor")),
            "detail": sql.SQL("e.detail::text"),
        }
    else:
        columns = {key: sql.SQL(f"e.{key}") for key in ("at", "actor", "detail")}
        columns["cohort"] = sql.SQL("i.cohort")
        if export == "json":
            # PostgreSQL's JSON drops trailing zeros of the fraction: one shape, as in CSV.
            columns["at"] = exporting.ISO.format(sql.SQL("e.at"))
    return EVENTS.format(where=where, **columns), {**params, "limit": limit}


def events(
    conn: psycopg.Connection[Any], filters: EventFilters, *, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Matching events, oldest first, a few thousand at a time (constant memory). `conn` must
    not be in autocommit mode: a server-side cursor lives in a transaction."""
    query, params = _query(filters, limit)
    with conn.cursor(name="invites_history", row_factory=dict_row) as cursor:
        cursor.itersize = FETCH_SIZE
        cursor.execute(query, params)
        yield from cursor


def export_csv(
    conn: psycopg.Connection[Any], filters: EventFilters, out: IO[bytes], *, limit: int | None
) -> int:
    query, params = _query(filters, limit, export="csv")
    return exporting.copy_csv(conn, query, params, out)


def export_json(
    conn: psycopg.Connection[Any],
    filters: EventFilters,
    out: IO[bytes],
    *,
    limit: int | None,
    lines: bool,
) -> int:
    query, params = _query(filters, limit, export="json")
    return exporting.copy_json(conn, query, params, out, lines=lines)


def timeline(conn: psycopg.Connection[Any], invite_id: UUID) -> list[dict[str, Any]]:
    """Every event of one invite, oldest first."""
    query, params = _query(EventFilters(invite_id=invite_id), None)
    return conn.cursor(row_factory=dict_row).execute(query, params).fetchall()


def describe(detail: dict[str, Any] | None) -> str:
    """An event's detail as `key value` pairs for a terminal."""
    if not detail:
        return ""
    return ", ".join(f"{key} {value}" for key, value in detail.items() if value is not None)
