"""When a run stops sending: failures in a row (AutoPause), refusals that are the sender's
fault (SenderPause)."""

from __future__ import annotations

import threading
from dataclasses import dataclass


class AutoPause:
    """Stops a run after `limit` failed deliveries in a row: a relay that refuses everything,
    or a list of dead addresses, must not burn the sender's reputation (listmonk's
    max_send_errors). What was not attempted stays unsent for the next run. Sender refusals
    are SenderPause's: they neither count here nor break a run of failures."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_a_row = 0
        self.reason: str | None = None
        self._lock = threading.Lock()

    def succeeded(self) -> None:
        with self._lock:
            self.in_a_row = 0

    def failed(self) -> bool:
        """Count one failure; False (and why, in reason) when the run must stop."""
        with self._lock:
            self.in_a_row += 1
            if self.in_a_row < self.limit and self.reason is None:
                return True
            self.reason = self.reason or (
                f"{self.in_a_row} deliveries in a row failed: stopped to protect the sender's "
                "reputation; the rest stay unsent (check the failures, then run again; "
                "--max-errors sets the limit)"
            )
            return False

    def stop(self, reason: str) -> None:
        with self._lock:
            self.reason = self.reason or reason


@dataclass
class _Count:
    refusals: int
    first_reply: str


ADVICE = (
    "not the recipients' fault; nothing suppressed. Check the sending domain (invites doctor), "
    "then run again."
)


class SenderPause:
    """Refusals that are the sender's fault, counted per receiving domain however many messages
    to other domains succeed in between: `limit` of them pause that domain for the rest of the
    run. Two paused domains, or a relay paused for refusing us itself (relay denied, no login),
    stop the whole run (`stops_run`)."""

    DOMAINS_TO_STOP = 2

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, _Count] = {}
        self._paused: dict[str, str] = {}  # domain or relay -> the line that says why
        self._relays: set[str] = set()
        self._lock = threading.Lock()

    def refused(self, where: str, reply: str, *, relay: bool = False) -> None:
        """Count one refusal by `where`: a receiving domain, or (`relay`) the relay itself."""
        with self._lock:
            count = self._counts.setdefault(where, _Count(0, reply))
            count.refusals += 1
            if count.refusals >= self.limit and where not in self._paused:
                self._paused[where] = (
                    f'{where}: paused after {count.refusals} refusals "{count.first_reply}": '
                    f"{ADVICE}"
                )
                if relay:
                    self._relays.add(where)

    def is_paused(self, domain: str) -> bool:
        with self._lock:
            return domain in self._paused

    def stops_run(self) -> bool:
        with self._lock:
            return bool(self._relays) or len(self._paused) >= self.DOMAINS_TO_STOP

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._paused.values())
