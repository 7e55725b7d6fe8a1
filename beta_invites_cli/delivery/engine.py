"""Emailing invites, crash-safe: each invite is locked while its message is in flight and its
sent_at is committed right after the server accepts the message.

A run killed at any moment leaves every undelivered invite with sent_at NULL, so the same
command delivers it next time, with the same code; at most the one message in flight when the
process died can arrive twice. Concurrent runs skip each other's locked rows (SKIP LOCKED), so
nobody is emailed twice by two operators either. A message whose fate is unknown (the server
never answered the end of DATA) is recorded as `uncertain` and not sent again unless the
operator asks for it. A refusal is recorded by its class (recording.py, refusals.py): only an
address that does not exist is bounced and suppressed at once; a refusal that is the sender's
fault suppresses nobody and, repeated, pauses its receiving domain (pause.SenderPause).
Suppressed addresses are never emailed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from psycopg import sql
from psycopg.rows import class_row

from beta_invites_cli.database import act
from beta_invites_cli.delivery.channel import Letterhead
from beta_invites_cli.delivery.pause import ADVICE, AutoPause, SenderPause
from beta_invites_cli.delivery.recording import (
    DEFAULT_POLICY,
    Record,
    RefusalPolicy,
    record_failure,
    record_refusal,
    record_sent,
    without_address,
)
from beta_invites_cli.delivery.refusals import Kind, domain_of
from beta_invites_cli.delivery.selection import Pending, compose, sendable, unsent
from beta_invites_cli.delivery.shared import Shared
from beta_invites_cli.delivery.transport import DeliveryFailed, DeliveryUncertain, Transport
from beta_invites_cli.errors import InvitesError

if TYPE_CHECKING:
    import psycopg

DEFAULT_MAX_ERRORS = 10
# A server that leaves this many messages in a row without an answer is not answering at all.
MAX_UNCERTAIN_IN_A_ROW = 3


@dataclass
class DeliveryResult:
    sent: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (email, reason): for now
    bounced: list[tuple[str, str]] = field(default_factory=list)  # (email, reason): for good
    uncertain: list[tuple[str, str]] = field(default_factory=list)  # (email, reason)
    interrupted: bool = False
    aborted: str | None = None
    paused: list[str] = field(default_factory=list)  # receiving domains paused, and why
    held: int = 0  # left unsent because their domain was paused


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
    policy: RefusalPolicy = DEFAULT_POLICY,
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
        policy=policy,
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
    policy: RefusalPolicy = DEFAULT_POLICY,
    on_progress: Callable[[], None] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> DeliveryResult:
    """The engine under send, resend and remind: email the `listed` invites that still match
    `which` (with `params`) once locked, over every sender at once; `record` writes what an
    accepted message changes (by default: sent)."""
    shared = Shared(
        listed,
        limit=limit,
        rate=rate,
        pause=AutoPause(max_errors),
        sender_pause=SenderPause(policy.max_sender_refusals),
        should_stop=should_stop,
    )
    runs = [
        _Run(conns, letterhead, transport, which, params, on_progress, shared, record, on_changed)
        for conns, transport in senders
    ]
    for run in runs:
        run.policy = policy
    return _run_all(runs, shared)


def _run_all(runs: list[_Run], shared: Shared) -> DeliveryResult:
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


def _merged(results: list[DeliveryResult], shared: Shared) -> DeliveryResult:
    merged = DeliveryResult()
    for result in results:
        merged.sent += result.sent
        merged.failed += result.failed
        merged.bounced += result.bounced
        merged.uncertain += result.uncertain
        merged.aborted = merged.aborted or result.aborted
    merged.aborted = merged.aborted or shared.pause.reason
    merged.paused = shared.sender_pause.lines()
    merged.held = shared.held
    merged.interrupted = shared.interrupted
    return merged


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
        shared: Shared,
        record: Record | None = None,
        on_changed: Callable[[Pending, DeliveryResult], None] | None = None,
    ) -> None:
        self.record = record or record_sent
        self.policy = DEFAULT_POLICY
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
        if self.shared.sender_pause.is_paused(domain_of(invite.email)):
            conn.execute("ROLLBACK")  # locked ahead before its domain was paused: left unsent
            self.shared.hold()
            return True, None
        try:
            letter = compose(self.letterhead, invite)
            self.transport.deliver(letter, before_end=self.settle)
            self.settle()
        except DeliveryFailed as exc:
            self.settle()
            return self.refused(conn, invite, exc), None
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

    def refused(self, conn: psycopg.Connection[Any], invite: Pending, exc: DeliveryFailed) -> bool:
        """Record a refusal by its class, and whether the run goes on."""
        refusal = exc.refusal
        if refusal is None and not exc.permanent:
            self._record(conn, invite, "failed", str(exc))
            self.result.failed.append((invite.email, str(exc)))
            return self.pause.failed()
        recorded = record_refusal(
            conn,
            invite.id,
            invite.email,
            str(exc),
            refusal,
            policy=self.policy,
            source="send",
            sender_fault=exc.sender_fault,
        )
        conn.execute("COMMIT")
        self.on_progress()
        why = str(exc)
        if refusal is not None:
            fault = refusal.kind is Kind.SENDER_REFUSED or exc.sender_fault
            why += f" ({refusal.kind.value}{': not suppressed' if fault else ''})"
        if recorded.suppressed == "soft-bounced":
            why += f": refused on {self.policy.soft_bounce_limit} days, suppressed (soft-bounced)"
        (
            self.result.bounced if recorded.bounced or recorded.suppressed else self.result.failed
        ).append((invite.email, why))
        if exc.sender_fault:
            self.pause.stop(
                f"the mail server {self.transport.description} refused the sender at MAIL FROM:"
                f" {exc}: {ADVICE}"
            )
            return False
        if refusal is not None and refusal.kind is Kind.SENDER_REFUSED:
            where = f"the relay {self.transport.description}" if refusal.relay else None
            reply = without_address(str(exc), invite.email)
            self.shared.sender_pause.refused(
                where or domain_of(invite.email), reply, relay=where is not None
            )
            return not self.shared.sender_pause.stops_run()
        return self.pause.failed()

    def _record(
        self, conn: psycopg.Connection[Any], invite: Pending, outcome: str, reply: str
    ) -> None:
        """Keep how the attempt ended (without the address), and release the row."""
        record_failure(conn, invite.id, invite.email, outcome, reply)
        conn.execute("COMMIT")
        self.on_progress()
