"""The tests' one clock: it stands still until a test moves it.

Read as seconds (`clock()`: the Stripe emulator's `created`, the m3ter emulator's rate limits, the token manager, the
Account and currency caches, the Lease elector) or as an aware UTC datetime (`clock.utc()`: the m3ter emulator's
`dtCreated` and `dtLastModified`); moved with `advance` and `set`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Clock:
    """A clock at `start` (seconds, or an aware datetime), kept as a datetime so that moving it is exact."""

    def __init__(self, start: float | datetime = 1000.0) -> None:
        self._at = EPOCH
        self.set(start)

    def __call__(self) -> float:
        return (self._at - EPOCH).total_seconds()

    def utc(self) -> datetime:
        return self._at

    def set(self, when: float | datetime) -> None:
        self._at = when if isinstance(when, datetime) else EPOCH + timedelta(seconds=when)

    def advance(self, by: float | timedelta) -> None:
        self._at += by if isinstance(by, timedelta) else timedelta(seconds=by)
