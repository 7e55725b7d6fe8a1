"""`invites remind`: one reminder per step to each sent invite nobody has redeemed yet.

A step is `before-expiry 3d` (due three days before the invite expires) or `after-sent 7d`
(due a week after the invitation was accepted by the mail server). Each step reaches an invite
at most once; a before-expiry step once per expiry date, so an invite extended after its
reminder is reminded again before its new date. The messages go through the delivery engine
of `send`, with all its guarantees: the invite is locked while its reminder is in flight, the
condition is checked again under the lock, and the reminder is recorded
(public.beta_invites_reminders, a `reminded` event, and beta_invites.reminded_at, which makes a
concurrent run that locks the invite next see it) in the same transaction, right after the
server accepted it. Never within a day of the invitation or of another reminder: two
messages a few minutes apart read as spam.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from psycopg import sql

from beta_invites_cli.delivery import engine, selection
from beta_invites_cli.delivery.channel import Letterhead
from beta_invites_cli.delivery.recording import DEFAULT_POLICY, RefusalPolicy
from beta_invites_cli.filters import COHORT_MATCHES, like_pattern
from beta_invites_cli.status import Status, condition
from beta_invites_cli.suppression import NOT_SUPPRESSED

if TYPE_CHECKING:
    import psycopg

    from beta_invites_cli.delivery.transport import Transport

BEFORE_EXPIRY = "before-expiry"
AFTER_SENT = "after-sent"
QUIET = timedelta(days=1)


def duration_text(duration: timedelta) -> str:
    """In the largest whole unit up to days: 72h and 3d are both 3d, 2w is 14d, 90m stays 90m
    (a step's name in the history)."""
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Step:
    kind: str  # BEFORE_EXPIRY or AFTER_SENT
    offset: timedelta

    @property
    def name(self) -> str:
        return f"{self.kind} {duration_text(self.offset)}"


# Whether step s (from the unnest below) is due for the invite, and not done yet.
_STEP_DUE = sql.SQL(
    """
    ((s.kind = 'before-expiry' AND now() >= beta_invites.expires_at - s.offset_by
      AND NOT EXISTS (SELECT 1 FROM public.beta_invites_reminders r
                       WHERE r.invite_id = beta_invites.id AND r.step = s.name
                         AND r.about_expiry = beta_invites.expires_at))
     OR (s.kind = 'after-sent' AND now() >= beta_invites.sent_at + s.offset_by
      AND NOT EXISTS (SELECT 1 FROM public.beta_invites_reminders r
                       WHERE r.invite_id = beta_invites.id AND r.step = s.name)))
    """
)
_STEPS = sql.SQL(
    "unnest(%(step_kinds)s::text[], %(step_offsets)s::interval[], %(step_names)s::text[])"
    " AS s(kind, offset_by, name)"
)

# Invites with a step due, quiet or not.
_STEP_DUE_FOR = sql.SQL(
    """
    {cohort} AND {sent} AND {not_suppressed}
    AND beta_invites.delivery_outcome IS DISTINCT FROM 'uncertain'
    AND EXISTS (SELECT 1 FROM {steps} WHERE {due})
    """
).format(
    cohort=COHORT_MATCHES,
    sent=condition(Status.SENT),
    not_suppressed=NOT_SUPPRESSED,
    steps=_STEPS,
    due=_STEP_DUE,
)
# Nobody is reminded within a day of the invitation or of another reminder.
_QUIET_OVER = sql.SQL(
    """
    now() >= beta_invites.sent_at + %(quiet)s
    AND (beta_invites.reminded_at IS NULL OR beta_invites.reminded_at <= now() - %(quiet)s)
    """
)
REMINDABLE = sql.SQL("{} AND {}").format(_STEP_DUE_FOR, _QUIET_OVER)

RECORD = sql.SQL(
    """
    WITH reminded AS (
      UPDATE public.beta_invites SET reminded_at = now() WHERE id = %(id)s)
    INSERT INTO public.beta_invites_reminders (invite_id, step, about_expiry, message_id)
    SELECT beta_invites.id, s.name, beta_invites.expires_at, %(message_id)s
      FROM public.beta_invites, {steps}
     WHERE beta_invites.id = %(id)s AND {due}
    """
).format(steps=_STEPS, due=_STEP_DUE)


def parameters(cohort_pattern: str, steps: list[Step]) -> dict[str, Any]:
    return {
        "cohort_pattern": like_pattern(cohort_pattern),
        "quiet": QUIET,
        "step_kinds": [step.kind for step in steps],
        "step_offsets": [step.offset for step in steps],
        "step_names": [step.name for step in steps],
    }


@dataclass(frozen=True)
class Due:
    now: int  # how many invites a reminder run would email now
    held: int  # and how many more have a step due, but were invited or reminded within a day


def due(conn: psycopg.Connection[Any], cohort_pattern: str, steps: list[Step]) -> Due:
    query = sql.SQL(
        "SELECT count(*) FILTER (WHERE {quiet}), count(*) FILTER (WHERE NOT ({quiet}))"
        "  FROM public.beta_invites WHERE {due}"
    ).format(quiet=_QUIET_OVER, due=_STEP_DUE_FOR)
    row = conn.execute(query, parameters(cohort_pattern, steps)).fetchone()
    return Due(int(row[0]), int(row[1])) if row else Due(0, 0)


def listed(
    conn: psycopg.Connection[Any], cohort_pattern: str, steps: list[Step]
) -> Iterator[selection.Pending]:
    return selection.candidates(conn, REMINDABLE, parameters(cohort_pattern, steps))


def remind(
    senders: list[tuple[engine.Connections, Transport]],
    reader: psycopg.Connection[Any],
    cohort_pattern: str,
    steps: list[Step],
    letterhead: Letterhead,
    *,
    limit: int | None = None,
    rate: float | None = None,
    max_errors: int = engine.DEFAULT_MAX_ERRORS,
    policy: RefusalPolicy = DEFAULT_POLICY,
    on_progress: Callable[[], None] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> engine.DeliveryResult:
    """Email every invite due a reminder; each is recorded for every step it was due."""
    params = parameters(cohort_pattern, steps)

    def record(conn: psycopg.Connection[Any], invite_id: UUID, message_id: str) -> None:
        conn.execute(RECORD, {**params, "id": invite_id, "message_id": message_id})

    return engine.deliver(
        senders,
        selection.candidates(reader, REMINDABLE, params),
        REMINDABLE,
        params,
        letterhead,
        record=record,
        limit=limit,
        rate=rate,
        max_errors=max_errors,
        policy=policy,
        on_progress=on_progress,
        should_stop=should_stop,
    )
