"""A Stripe request that failed for good, as one of m3ter's error events: its kind, its run status, and a message
that says what to do."""

from __future__ import annotations

from m3stripe.domain.ports import Failure, LedgerError
from m3stripe.domain.runs import EventKind, RunStatus
from m3stripe.domain.tax_checks import refusal_fix


def grant(permission: str | None, fallback: str = "write access to Invoices and Invoice items") -> str:
    """What to do about a restricted key's missing permission. Stripe's 403 names it ("Having the
    'rak_invoice_write' permission would allow this request to continue")."""
    if permission:
        return (
            f"grant the restricted key the Stripe permission {permission} (Dashboard > Developers > API keys > edit "
            "the key)"
        )
    return f"grant the restricted key {fallback}"


def classify(err: LedgerError, bill_id: str) -> tuple[EventKind, RunStatus, str]:
    """The event a failed request of a Bill raises. The error's message is already free of the key and account."""
    where = f"Stripe {err.endpoint} for Bill {bill_id}"
    if err.failure is Failure.AUTH:
        return (
            EventKind.AUTHENTICATION,
            RunStatus.AUTH_FAILED,
            f"{where}: {err}; put a valid key in the credential Secret",
        )
    if err.failure is Failure.PERMISSION:
        return EventKind.AUTHENTICATION, RunStatus.AUTH_FAILED, f"{where}: {err}; {grant(err.permission)}"
    if err.failure is Failure.TRANSIENT:
        status = RunStatus.RATE_LIMIT_RETRY if err.status == 429 else RunStatus.AWAITING_RETRY
        return EventKind.PERFORM, status, f"{where}: {err}; retried on the next pass"
    code = f" ({err.code})" if err.code else ""
    message = f"{where} was refused{code}: {err}"
    fix = refusal_fix(err)
    if fix is not None:  # Stripe Tax refused the invoice or a line: a setting to fix, not a failure to retry
        return EventKind.VALIDATION, RunStatus.ERROR, f"{message}; {fix}"
    return EventKind.PERFORM, RunStatus.ERROR, message
