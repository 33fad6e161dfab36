"""The m3ter Service User the adapters' tests read with, and a clock they move by hand."""

from __future__ import annotations

from m3stripe.adapters.m3ter_token import M3terCredentials

ORG = "org-1"
CLIENT_ID = "client-1"
SECRET = "very-secret-value-123"
CREDS = M3terCredentials(organization_id=ORG, client_id=CLIENT_ID, client_secret=SECRET)


class FakeClock:
    """A monotonic clock that stands still until a test sets `now`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
