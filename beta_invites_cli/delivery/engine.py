"""Emailing invites, crash-safe: each invite is locked while its message is in flight and its
sent_at is committed right after the server accepts the message.

A run killed at any moment leaves every undelivered invite with sent_at NULL, so the same
command delivers it next time, with the same code; at most the one message in flight when the
process died can arrive twice. Concurrent runs skip each other's locked rows (SKIP LOCKED), so
nobody is emailed twice by two operators either. A message whose fate is unknown (the server
never answered the end of DATA) is recorded as `uncertain` and not sent again unless the
operator asks for it. One refused for now (4xx after the retries) is recorded as `failed` and
tried again by the next run; one refused for good (5xx) as `bounced`, never tried again, and
its address joins the suppression list. Suppressed addresses are never emailed.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from psycopg import sql
from psycopg.rows import class_row

from beta_invites_cli import suppression
from beta_invites_cli.codes import new_code
from beta_invites_cli.database import act
from beta_invites_cli.delivery.channel import Letterhead
from beta_invites_cli.delivery.message import Letter, build_letter
from beta_invites_cli.delivery.transport import DeliveryFailed, DeliveryUncertain, Transport
from beta_invites_cli.errors import InvitesError, ValidationFailed
from beta_invites_cli.host import find_many
from beta_invites_cli.lifecycle import normalised_codes, when
from beta_invites_cli.status import Status, condition
from beta_invites_cli.suppression import NOT_SUPPRESSED
from beta_invites_cli.template import signup_link

if TYPE_CHECKING:
    import psycopg

PAGE = 500
DEFAULT_MAX_ERRORS = 10
# A server that leaves this many messages in a row without an answer is not answering at all.
MAX_UNCERTAIN_IN_A_ROW = 3


@dataclass(frozen=True)
class Pending:
    """An invite whose message is to be sent."""

    id: UUID
    code: str
    email: str
    cohort: str
    expires_at: datetime
    created_at: datetime | None = None  # for paging through a cohort in issue order


@dataclass
class DeliveryResult:
    sent: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (email, reason): for now
    bounced: list[tuple[str, str]] = field(default_factory=list)  # (email, reason): for good
    uncertain: list[tuple[str, str]] = field(default_factory=list)  # (email, reason)
    interrupted: bool = False
    aborted: str | None = None


def compose(letterhead: Letterhead, invite: Pending) -> Letter:
    """The message for one invite; raises DeliveryFailed when its address cannot be written."""
    rendered = letterhead.template.render(
        code=invite.code,
        link=signup_link(letterhead.signup_url, invite.code),
        cohort=invite.cohort,
        expires_at=invite.expires_at,
        email=invite.email,
    )
    try:
        return build_letter(
            sender=letterhead.sender,
            reply_to=letterhead.reply_to,
            to=invite.email,
            subject=rendered.subject,
            body=rendered.text,
            html=rendered.html,
            name=invite.code,
            unsubscribe=letterhead.unsubscribe,
        )
    except (ValueError, UnicodeError) as exc:
        raise DeliveryFailed(f"the address cannot be put on the wire: {exc}") from None


def sendable(retry_uncertain: bool) -> sql.Composable:
    """Which invites `send` emails: unsent ones (uncertain ones only when asked), never a
    suppressed address."""
    return sql.SQL("{} AND {}").format(unsuppressed(retry_uncertain), NOT_SUPPRESSED)


def unsuppressed(retry_uncertain: bool) -> sql.Composable:
    """What `send` would email if no address were suppressed."""
    if retry_uncertain:
        return sql.SQL("({} OR {})").format(condition(Status.UNSENT), condition(Status.UNCERTAIN))
    return condition(Status.UNSENT)


@dataclass(frozen=True)
class HeldBack:
    """The invites of a cohort that `send` leaves alone on purpose."""

    bounced: int
    suppressed: dict[str, int]  # by reason

    @property
    def total(self) -> int:
        return self.bounced + sum(self.suppressed.values())

    def describe(self) -> str:
        parts = []
        if self.suppressed:
            reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(self.suppressed.items()))
            parts.append(f"{sum(self.suppressed.values())} suppressed ({reasons})")
        if self.bounced:
            parts.append(f"{self.bounced} bounced earlier")
        return "; ".join(parts)


def held_back(conn: psycopg.Connection[Any], cohort: str, retry_uncertain: bool) -> HeldBack:
    return HeldBack(
        bounced=count(conn, cohort, condition(Status.BOUNCED)),
        suppressed=suppression.skipped_by_reason(conn, cohort, unsuppressed(retry_uncertain)),
    )


def held_back_from_resend(conn: psycopg.Connection[Any], cohort: str) -> HeldBack:
    """What `resend --cohort` leaves alone: sent, live invites whose address is suppressed, and
    those that bounced."""
    return HeldBack(
        bounced=count(conn, cohort, condition(Status.BOUNCED)),
        suppressed=suppression.skipped_by_reason(conn, cohort, condition(Status.SENT)),
    )


def count(conn: psycopg.Connection[Any], cohort: str, which: sql.Composable) -> int:
    query = sql.SQL("SELECT count(*) FROM public.beta_invites WHERE cohort = %s AND {}")
    row = conn.execute(query.format(which), (cohort,)).fetchone()
    return int(row[0]) if row else 0


PAGE_QUERY = sql.SQL(
    """
    SELECT id, code, email, cohort, expires_at, created_at
      FROM public.beta_invites
     WHERE {where}
       AND (%(after_created)s::timestamptz IS NULL
            OR (created_at, id) > (%(after_created)s, %(after_id)s::uuid))
     ORDER BY created_at, id
     LIMIT %(page)s
    """
)


def unsent(
    conn: psycopg.Connection[Any], cohort: str, *, retry_uncertain: bool = False
) -> Iterator[Pending]:
    """Sendable invites of the cohort in issue order, a page at a time (keyset paging)."""
    where = sql.SQL("cohort = %(cohort)s AND {}").format(sendable(retry_uncertain))
    return candidates(conn, where, {"cohort": cohort})


def candidates(
    conn: psycopg.Connection[Any], where: sql.Composable, params: dict[str, Any]
) -> Iterator[Pending]:
    """The invites matching `where`, in issue order, a page at a time (keyset paging)."""
    query = PAGE_QUERY.format(where=where)
    last: Pending | None = None
    cursor = conn.cursor(row_factory=class_row(Pending))
    while True:
        params = {
            **params,
            "after_created": last.created_at if last else None,
            "after_id": last.id if last else None,
            "page": PAGE,
        }
        page = cursor.execute(query, params).fetchall()
        yield from page
        if len(page) < PAGE:
            return
        last = page[-1]


Connections = tuple["psycopg.Connection[Any]", "psycopg.Connection[Any]"]


def deliver_cohort(
    senders: list[tuple[Connections, Transport]],
    reader: psycopg.Connection[Any],
    cohort: str,
    letterhead: Letterhead,
    *,
    limit: int | None = None,
    rate: float | None = None,
    retry_uncertain: bool = False,
    max_errors: int = DEFAULT_MAX_ERRORS,
    on_progress: Callable[[], None] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> DeliveryResult:
    """Email every sendable invite of `cohort` (at most `limit`), `rate` per second at most,
    over every (connection, transport) pair of `senders` at once.

    All connections are in autocommit mode: `reader` walks the candidates, handed out one at a
    time to the senders; each message gets its own transaction on its sender's connection: lock
    the row (SKIP LOCKED), send, record the outcome, commit; the next invite is locked while
    a message is in flight (see _Run). So each sender has at most one message in flight, and
    the guarantees of one sender hold for any number.
    """
    return deliver(
        senders,
        unsent(reader, cohort, retry_uncertain=retry_uncertain),
        sendable(retry_uncertain),
        {},
        letterhead,
        limit=limit,
        rate=rate,
        max_errors=max_errors,
        on_progress=on_progress,
        should_stop=should_stop,
    )


def deliver(
    senders: list[tuple[Connections, Transport]],
    listed: Iterator[Pending],
    which: sql.Composable,
    params: dict[str, Any],
    letterhead: Letterhead,
    *,
    record: Record | None = None,
    on_changed: Callable[[Pending, DeliveryResult], None] | None = None,
    limit: int | None = None,
    rate: float | None = None,
    max_errors: int = DEFAULT_MAX_ERRORS,
    on_progress: Callable[[], None] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> DeliveryResult:
    """The engine under send, resend and remind: email the `listed` invites that still match
    `which` (with `params`) once locked, over every sender at once; `record` writes what an
    accepted message changes (by default: sent)."""
    shared = _Shared(
        listed, limit=limit, rate=rate, pause=AutoPause(max_errors), should_stop=should_stop
    )
    runs = [
        _Run(conns, letterhead, transport, which, params, on_progress, shared, record, on_changed)
        for conns, transport in senders
    ]
    return _run_all(runs, shared)


def _run_all(runs: list[_Run], shared: _Shared) -> DeliveryResult:
    """Each sender in its own thread (one in this thread), then their results as one."""
    if len(runs) == 1:
        runs[0].work()
    else:
        threads = [
            threading.Thread(target=run.work, name=f"sender-{i}") for i, run in enumerate(runs)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    failure = next((run.error for run in runs if run.error is not None), None)
    if failure is not None:
        raise failure
    return _merged([run.result for run in runs], shared)


def _merged(results: list[DeliveryResult], shared: _Shared) -> DeliveryResult:
    merged = DeliveryResult()
    for result in results:
        merged.sent += result.sent
        merged.failed += result.failed
        merged.bounced += result.bounced
        merged.uncertain += result.uncertain
        merged.aborted = merged.aborted or result.aborted
    merged.aborted = merged.aborted or shared.pause.reason
    merged.interrupted = shared.interrupted
    return merged


class _Shared:
    """What the senders of one run share: the candidates, the limit, the pace, the stop."""

    def __init__(
        self,
        candidates: Iterator[Pending],
        *,
        limit: int | None,
        rate: float | None,
        pause: AutoPause,
        should_stop: Callable[[], bool],
    ) -> None:
        self.lock = threading.Lock()
        self.candidates = candidates
        self.limit = limit
        self.claimed = 0
        self.pace = _Pace(rate)
        self.pause = pause
        self.should_stop = should_stop
        self.stopped = False
        self.interrupted = False
        self.uncertain_in_a_row = 0

    def next_candidate(self) -> Pending | None:
        with self.lock:
            if self.stopped or self.pause.reason is not None:
                return None
            if self.should_stop():
                self.interrupted = self.stopped = True
                return None
            candidate = next(self.candidates, None)
            if candidate is None:
                self.stopped = True
            return candidate

    def halted(self) -> bool:
        """Whether no further message may start: paused, or asked to stop (Ctrl-C). An invite
        locked ahead is then released unsent."""
        with self.lock:
            if self.pause.reason is not None:
                return True
            if self.should_stop():
                self.interrupted = self.stopped = True
            return self.interrupted

    def claim(self) -> bool:
        """Count a locked invite against --limit; False when the limit is reached."""
        with self.lock:
            if self.limit is not None and self.claimed >= self.limit:
                self.stopped = True
                return False
            self.claimed += 1
            return True

    def stop(self) -> None:
        with self.lock:
            self.stopped = True

    def unanswered(self, *, add: bool) -> int:
        """Messages in a row the server left without an answer, on any connection (an
        answered one starts the count again)."""
        with self.lock:
            self.uncertain_in_a_row = self.uncertain_in_a_row + 1 if add else 0
            return self.uncertain_in_a_row


class AutoPause:
    """Stops a run after `limit` failed deliveries in a row: a relay that refuses everything,
    or a list of dead addresses, must not burn the sender's reputation (listmonk's
    max_send_errors). What was not attempted stays unsent for the next run."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_a_row = 0
        self.reason: str | None = None
        self._lock = threading.Lock()

    def succeeded(self) -> None:
        with self._lock:
            self.in_a_row = 0

    def failed(self, result: DeliveryResult) -> bool:
        """Count one failure; False (and why, in result.aborted) when the run must stop."""
        with self._lock:
            self.in_a_row += 1
            if self.in_a_row < self.limit and self.reason is None:
                return True
            self.reason = self.reason or (
                f"{self.in_a_row} deliveries in a row failed: stopped to protect the sender's "
                "reputation; the rest stay unsent (check the failures, then run again; "
                "--max-errors sets the limit)"
            )
            result.aborted = self.reason
            return False


class _Pace:
    """At most `rate` messages per second."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next_at = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Wait for this message's slot; senders on several connections share the rate."""
        if not self.interval:
            return
        with self._lock:
            slot = max(self.next_at, time.monotonic())
            self.next_at = slot + self.interval
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)


@dataclass(frozen=True)
class _Locked:
    """What a lock step found on one connection: the invite now held there (None: none is
    left), and the listed invites it skipped because they changed meanwhile."""

    conn: psycopg.Connection[Any]
    invite: Pending | None
    changed: list[Pending]


class _Run:
    """One sender of a `send` run: its connections, the invite in flight, and the tally.

    A sender has two database connections, each with its own worker thread, and alternates
    between them. While invite k's message is in flight on one connection, the other commits
    invite k-1 as sent (an fsync) and then locks invite k+1, in the background: neither the
    commit nor the next lock waits in line with the SMTP exchange. The commit of k-1 is awaited
    just before the end of k's DATA, so at any moment at most one accepted message lacks its
    committed sent_at, as with one connection.

    Behind a pooler in transaction mode every open transaction holds a server connection, so
    the order matters: the next lock is only started once the one before it was obtained, and
    a sender only ever waits for a lock while all it holds is a transaction that is committing.
    So senders can never hold all the pool's connections while each waits for another."""

    def __init__(
        self,
        conns: tuple[psycopg.Connection[Any], psycopg.Connection[Any]],
        letterhead: Letterhead,
        transport: Transport,
        which: sql.Composable,
        params: dict[str, Any],
        on_progress: Callable[[], None],
        shared: _Shared,
        record: Record | None = None,
        on_changed: Callable[[Pending, DeliveryResult], None] | None = None,
    ) -> None:
        self.record = record or _record_sent
        self.params = params
        self.on_changed = on_changed
        self.conns = conns
        self.letterhead = letterhead
        self.transport = transport
        self.lock_query = sql.SQL(
            """
            SELECT id, code, email, cohort, expires_at
              FROM public.beta_invites
             WHERE id = %(id)s AND {which}
               FOR UPDATE SKIP LOCKED
            """
        ).format(which=which)
        self.on_progress = on_progress
        self.result = DeliveryResult()
        self.committing: Future[None] | None = None  # the accepted message's sent_at
        self.locking: Future[_Locked] | None = None  # the next invite, on the other connection
        # One worker per connection: a commit on one never waits behind a lock on the other.
        self.workers = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit") for _ in conns
        ]
        self.shared = shared
        self.pause = shared.pause
        self.error: BaseException | None = None  # raised in a sender thread, re-raised by the run

    def worker(self, conn: psycopg.Connection[Any]) -> ThreadPoolExecutor:
        return self.workers[0 if conn is self.conns[0] else 1]

    def other(self, conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
        return self.conns[1] if conn is self.conns[0] else self.conns[0]

    def work(self) -> None:
        """Send until the candidates run out or the run stops; every accepted message is
        committed, and nothing is left locked, whatever happens."""
        try:
            locked = self.taken(self.lock(self.conns[0]))
            self.locking = self.worker(self.conns[1]).submit(self.lock, self.conns[1])
            while (invite := locked.invite) is not None:
                if self.shared.halted():
                    break  # locked, not started: released below, left for the next run
                self.shared.pace.wait()
                go_on, message_id = self.attempt(locked.conn, invite)
                if not go_on:
                    break
                conn = locked.conn
                if message_id is not None:
                    self.committing = self.worker(conn).submit(
                        self.commit, conn, invite.id, message_id
                    )
                assert self.locking is not None
                locked, self.locking = self.taken(self.locking.result()), None
                if locked.invite is not None:
                    # The one after: on the connection just freed, once its commit is done.
                    self.locking = self.worker(conn).submit(self.lock, conn)
            self.settle()
        except BaseException as exc:  # handed to the thread that runs the senders
            self.error = exc
            self.shared.stop()
        finally:
            self.shared.stop()  # a lock still running takes no other invite
            with contextlib.suppress(Exception):  # reported above, if anything went wrong
                self.settle()
            if self.locking is not None:
                with contextlib.suppress(Exception):
                    self.taken(self.locking.result())
            for worker in self.workers:
                worker.shutdown()
            for conn in self.conns:
                idle = conn.info.transaction_status == conn.info.transaction_status.IDLE
                if not conn.closed and not idle:
                    with contextlib.suppress(Exception):  # a broken connection rolls back
                        conn.execute("ROLLBACK")

    def lock(self, conn: psycopg.Connection[Any]) -> _Locked:
        """Lock the next candidate on `conn`, in a transaction held while its message is in
        flight, so a concurrent sender skips it. The condition is checked again under the
        lock: an invite revoked, redeemed or anonymised since it was listed is not sent."""
        changed: list[Pending] = []
        while (candidate := self.shared.next_candidate()) is not None:
            with conn.pipeline():
                conn.execute("BEGIN")
                act(conn)
                cursor = conn.cursor(row_factory=class_row(Pending))
                row = cursor.execute(self.lock_query, {**self.params, "id": candidate.id})
                invite = row.fetchone()
            if invite is None:
                # Another sender has it, or it was redeemed, revoked or sent meanwhile.
                conn.execute("ROLLBACK")
                changed.append(candidate)
                continue
            if not self.shared.claim():
                conn.execute("ROLLBACK")
                break
            return _Locked(conn, invite, changed)
        return _Locked(conn, None, changed)

    def taken(self, locked: _Locked) -> _Locked:
        """Account for what a lock step skipped."""
        if self.on_changed is not None:
            for listed in locked.changed:
                self.on_changed(listed, self.result)
        return locked

    def commit(self, conn: psycopg.Connection[Any], invite_id: UUID, message_id: str) -> None:
        """Record an accepted message and commit the transaction that held its invite."""
        with conn.pipeline():
            self.record(conn, invite_id, message_id)
            conn.execute("COMMIT")

    def settle(self) -> None:
        """Wait for the sent_at commit in flight, if any, and count it."""
        if self.committing is None:
            return
        committing, self.committing = self.committing, None
        committing.result()
        self.result.sent += 1
        self.on_progress()

    def attempt(self, conn: psycopg.Connection[Any], invite: Pending) -> tuple[bool, str | None]:
        """Send one message held on `conn`: whether to go on, and the Message-ID when the
        server accepted it (its sent_at is then committed in the background)."""
        try:
            letter = compose(self.letterhead, invite)
            self.transport.deliver(letter, before_end=self.settle)
            self.settle()
        except DeliveryFailed as exc:
            self.settle()
            if exc.permanent:
                record_bounce(conn, invite, exc)
                conn.execute("COMMIT")
                self.on_progress()
                self.result.bounced.append((invite.email, str(exc)))
            else:
                self._record(conn, invite, "failed", str(exc))
                self.result.failed.append((invite.email, str(exc)))
            return self.pause.failed(self.result), None
        except DeliveryUncertain as exc:
            self.settle()
            self._record(conn, invite, "uncertain", str(exc))
            self.result.uncertain.append((invite.email, str(exc)))
            in_a_row = self.shared.unanswered(add=True)
            if in_a_row >= MAX_UNCERTAIN_IN_A_ROW:
                self.result.aborted = (
                    f"the mail server {self.transport.description} left "
                    f"{in_a_row} messages in a row without an answer: stopped"
                )
                return False, None
            return True, None
        except InvitesError as exc:  # the mail server cannot be reached at all
            self.settle()
            conn.execute("ROLLBACK")
            self.result.aborted = str(exc)
            return False, None
        self.shared.unanswered(add=False)
        self.pause.succeeded()
        return True, letter.message_id

    def _record(
        self, conn: psycopg.Connection[Any], invite: Pending, outcome: str, reply: str
    ) -> None:
        """Keep how the attempt ended (without the address), and release the row."""
        conn.execute(
            """
            UPDATE public.beta_invites
               SET delivery_outcome = %s, delivery_outcome_at = now(), delivery_reply = %s
             WHERE id = %s
            """,
            (outcome, without_address(reply, invite.email), invite.id),
        )
        conn.execute("COMMIT")
        self.on_progress()


# Writes what an accepted message changes, in the transaction that holds its invite.
Record = Callable[["psycopg.Connection[Any]", UUID, str], None]


def _record_sent(conn: psycopg.Connection[Any], invite_id: UUID, message_id: str) -> None:
    conn.execute(
        """
        UPDATE public.beta_invites
           SET sent_at = now(), message_id = %s, delivery_outcome = NULL,
               delivery_outcome_at = NULL, delivery_reply = NULL
         WHERE id = %s
        """,
        (message_id, invite_id),
    )


def record_bounce(conn: psycopg.Connection[Any], invite: Pending, exc: DeliveryFailed) -> None:
    """A refusal for good: the invite is `bounced` (not sent again) and, when the server refused
    the address itself, the address is suppressed. In the caller's transaction."""
    reply = without_address(str(exc), invite.email)
    conn.execute(
        """
        UPDATE public.beta_invites
           SET delivery_outcome = 'bounced', delivery_outcome_at = now(), delivery_reply = %s
         WHERE id = %s
        """,
        (reply, invite.id),
    )
    if exc.bounce:
        suppression.add(conn, [invite.email], reason="bounced", source="send", detail=reply)


def without_address(reply: str, email: str) -> str:
    """A server reply with the recipient's address taken out: it is kept after the sweep."""
    local = email.rpartition("@")[0]
    # With its angle brackets, when the server wrote them (<ada@example.com>), so that the
    # reply reads `<recipient>`, not `<<recipient>>`.
    pattern = r"<?" + re.escape(local) + r"@[^\s>\]\)\"',;]+>?"
    return re.sub(pattern, "<recipient>", reply, flags=re.IGNORECASE)[:1000]


@dataclass(frozen=True)
class Refusal:
    """Why resend refused a named code."""

    code: str
    why: str
    status: Status | None  # None: not a code we issued
    cohort: str | None


class NotResendable(ValidationFailed):
    """Named codes resend refused; nothing was sent."""

    def __init__(self, refusals: list[Refusal]) -> None:
        self.refusals = refusals
        super().__init__([f"{r.code} {r.why}" for r in refusals] + ["nothing was resent"])


def resendable(
    conn: psycopg.Connection[Any], *, codes: tuple[str, ...] = (), cohort: str | None = None
) -> list[Pending]:
    """The sent, live invites to email again; named codes that cannot be resent are refused."""
    if cohort is not None:
        query = sql.SQL(
            """
            SELECT id, code, email, cohort, expires_at FROM public.beta_invites
             WHERE cohort = %s AND {sent} AND {not_suppressed}
             ORDER BY created_at, id
            """
        ).format(sent=condition(Status.SENT), not_suppressed=NOT_SUPPRESSED)
        return conn.cursor(row_factory=class_row(Pending)).execute(query, (cohort,)).fetchall()
    wanted = normalised_codes(codes, outcome="nothing was resent")
    found = find_many(conn, wanted)
    refusals: list[Refusal] = []
    result = []
    for code in wanted:
        invite = found.get(code)
        if invite is None:
            refusals.append(Refusal(code, "is not an invite code we issued", None, None))
            continue
        status = Status(invite.status)
        why = {
            Status.REDEEMED: f"was redeemed at {when(invite.used_at)}: not resent",
            Status.REVOKED: f"was revoked at {when(invite.revoked_at)}: not resent",
            Status.EXPIRED: f"expired at {when(invite.expires_at)}: not resent",
            Status.UNCERTAIN: "may not have received its first message yet",
            Status.UNSENT: "has not been sent yet",
            Status.BOUNCED: "bounced: its address refused the message for good; not resent",
        }.get(status)
        if why is None and invite.email is not None:
            ((_, entry),) = suppression.check(conn, [invite.email])
            if entry is not None:
                why = f"its address is suppressed ({entry.reason}): not resent"
        if why is not None:
            refusals.append(Refusal(code, why, status, invite.cohort))
        else:
            result.append(
                Pending(invite.id, invite.code, invite.email, invite.cohort, invite.expires_at)
            )
    if refusals:
        raise NotResendable(refusals)
    return result


def resend(
    senders: list[tuple[Connections, Transport]],
    invites: list[Pending],
    letterhead: Letterhead,
    *,
    max_errors: int = DEFAULT_MAX_ERRORS,
    on_progress: Callable[[], None] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> DeliveryResult:
    """Email sent invites again, over every sender at once. Each is locked and re-checked while
    its message is in flight, so an invite revoked, redeemed, anonymised or suppressed
    meanwhile is not mailed; the new Message-ID is kept for bounce reports."""
    which = sql.SQL("{} AND {}").format(condition(Status.SENT), NOT_SUPPRESSED)
    return deliver(
        senders,
        iter(invites),
        which,
        {},
        letterhead,
        record=_record_resent,
        on_changed=_changed_meanwhile,
        max_errors=max_errors,
        on_progress=on_progress,
        should_stop=should_stop,
    )


def _record_resent(conn: psycopg.Connection[Any], invite_id: UUID, message_id: str) -> None:
    conn.execute(
        "UPDATE public.beta_invites SET message_id = %s WHERE id = %s", (message_id, invite_id)
    )


def _changed_meanwhile(listed: Pending, result: DeliveryResult) -> None:
    why = "changed meanwhile (redeemed, revoked, expired, suppressed or being sent): not resent"
    result.failed.append((listed.email, why))


@dataclass(frozen=True)
class Preview:
    """What `send --dry-run` shows: the first message, and how many would go out."""

    first: Letter | None
    problem: str | None  # why the first message cannot be written
    would_issue: int
    would_skip: int
    would_send: int


def preview(
    conn: psycopg.Connection[Any],
    cohort: str,
    letterhead: Letterhead,
    first_new: Any,
    new: int,
    skipped: int,
    *,
    limit: int | None,
    retry_uncertain: bool,
) -> Preview:
    """`new` invites a real run would issue first (not issued: a dry run), the first of them
    `first_new`."""
    total = count(conn, cohort, sendable(retry_uncertain)) + new
    total = min(total, limit) if limit else total
    first = next(unsent(conn, cohort, retry_uncertain=retry_uncertain), None)
    if first is None and first_new is not None:
        # Not issued yet: preview with a code drawn just for the preview.
        first = Pending(UUID(int=0), new_code(), first_new.email, cohort, first_new.expires_at)
    letter = problem = None
    if first is not None:
        try:
            letter = compose(letterhead, first)
        except DeliveryFailed as exc:
            problem = str(exc)
    return Preview(letter, problem, new, skipped, total)
