"""What the senders of one run share: the candidates, the limit, the pace, the pauses, the stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from beta_invites_cli.delivery.pause import AutoPause, SenderPause
from beta_invites_cli.delivery.refusals import domain_of
from beta_invites_cli.delivery.selection import Pending


class Shared:
    """What the senders of one run share: the candidates, the limit, the pace, the stop."""

    def __init__(
        self,
        candidates: Iterator[Pending],
        *,
        limit: int | None,
        rate: float | None,
        pause: AutoPause,
        sender_pause: SenderPause,
        should_stop: Callable[[], bool],
    ) -> None:
        self.lock = threading.Lock()
        self.candidates = candidates
        self.limit = limit
        self.claimed = 0
        self.pace = Pace(rate)
        self.pause = pause
        self.sender_pause = sender_pause
        self.held = 0
        self.should_stop = should_stop
        self.stopped = False
        self.interrupted = False
        self.uncertain_in_a_row = 0

    def next_candidate(self) -> Pending | None:
        with self.lock:
            if self.stopped or self._paused():
                return None
            if self.should_stop():
                self.interrupted = self.stopped = True
                return None
            while (candidate := next(self.candidates, None)) is not None:
                if not self.sender_pause.is_paused(domain_of(candidate.email)):
                    return candidate
                self.held += 1  # its domain refuses us: left unsent for the next run
            self.stopped = True
            return None

    def hold(self) -> None:
        with self.lock:
            self.held += 1

    def _paused(self) -> bool:
        return self.pause.reason is not None or self.sender_pause.stops_run()

    def halted(self) -> bool:
        """Whether no further message may start: paused, or asked to stop (Ctrl-C). An invite
        locked ahead is then released unsent."""
        with self.lock:
            if self._paused():
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


class Pace:
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
