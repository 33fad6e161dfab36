"""The outcome of checking a credential (a Stripe key, m3ter's client credentials): one value for every check."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CredentialCheck:
    """`reason` is a CamelCase condition reason; `message` never holds the credential."""

    ok: bool
    reason: str
    message: str
    account_id: str | None = None
    # Worth asking again soon (the service was unreachable), rather than at the next scheduled recheck.
    retryable: bool = False
    # The verified credential itself, kept in memory for the sync; never printed or compared.
    secret: str | None = field(default=None, repr=False, compare=False)
