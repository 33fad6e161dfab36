"""The disablement email across failures and restarts: retried with backoff, never sent twice, with its
progress in status.notification (written before each attempt, so a new Lease holder knows what was done)."""

from __future__ import annotations

from typing import Any

from m3stripe.api import names
from m3stripe.testing.stack import LocalStack, OperatorProcess, wait_for
from tests.support.stack_world import connect, integration_spec

NS = "notify"
ORG = "org-notify"
KEY = "sk_test_51notifyAAAAAA"
USERS = ["oncall@example.com", "billing@example.com"]
ENV = {
    "M3STRIPE_NOTIFICATION_RETRY_INTERVAL": "1s",
    "M3STRIPE_LEASE_NAMESPACE": "m3stripe-system",
    "M3STRIPE_SMTP_SECURITY": "none",
}


def _start(stack: LocalStack, name: str) -> OperatorProcess:
    # One pod restarted: its emptyDir (the Lease lock file's directory) survives, so each restart resumes at once.
    (stack.workdir / "notify-pod").mkdir(exist_ok=True)
    lock_file = str(stack.workdir / "notify-pod" / "lease.lock")
    return stack.start_operator(
        "--liveness=", name=name, POD_NAME="notify-pod", M3STRIPE_LEASE_LOCK_FILE=lock_file, **ENV
    )


def _status(stack: LocalStack, name: str) -> dict[str, Any]:
    return dict(stack.kube.get_integration(NS, name).get("status") or {})


def _mails_to(stack: LocalStack, recipient: str) -> int:
    return sum(recipient in m.recipients for m in stack.smtp.messages)


def _reconciled(stack: LocalStack, name: str, token: str) -> None:
    """Wait until the operator has handled a fresh request on the integration (it reconciled it)."""
    stack.annotate(NS, name, names.ANNOTATION_RESOLVE, f"none-{token}")
    wait_for(
        lambda: _status(stack, name).get("lastHandledResolve") == f"none-{token}",
        timeout=60,
        what="the operator to reconcile",
    )


def test_the_disablement_email_is_retried_and_never_sent_twice_across_restarts(stack: LocalStack) -> None:
    stack.call(lambda: stack.stripe.add_api_key(KEY))
    connect(stack, NS, ORG, KEY, "notify")
    stack.ensure_namespace("m3stripe-system")
    for i in range(3):  # no Stripe customer for these accounts: every Bill is a missing-mapping error
        acct = stack.call(lambda i=i: stack.m3ter.add_account(ORG, name=f"N{i}", code=f"n{i}", currency="USD"))
        stack.call(
            lambda a=acct: stack.m3ter.add_bill(ORG, account_id=a, lines=[{"line_item_type": "USAGE", "subtotal": "1"}])
        )
    before = {u: _mails_to(stack, u) for u in USERS}
    stack.call(lambda: stack.smtp.fail_next(2))  # the first two deliveries fail (temporary SMTP errors)
    op = _start(stack, "first")
    try:
        stack.kube.create_integration(
            NS,
            "flaky",
            integration_spec(ORG, autoDisableThreshold=3, integrationDisabledNotificationUsers=USERS),
        )
        note = wait_for(
            lambda: (n := _status(stack, "flaky").get("notification") or {}).get("state") == "Sent" and n,
            timeout=90,
            what="the disablement email to be sent after retries",
        )
        assert note["attempts"] >= 2 and sorted(note["sentTo"]) == sorted(USERS), note
        assert {u: _mails_to(stack, u) - before[u] for u in USERS} == dict.fromkeys(USERS, 1)
        reasons = [e["reason"] for e in stack.kube.events(NS, "flaky")]
        assert "NotificationFailed" in reasons and "NotificationSent" in reasons
    finally:
        op.kill()
    # A crash and a new process: the email was recorded as sent, so nobody hears about it again.
    op = _start(stack, "second")
    try:
        _reconciled(stack, "flaky", "1")
        assert {u: _mails_to(stack, u) - before[u] for u in USERS} == dict.fromkeys(USERS, 1)
    finally:
        op.kill()
    # A process that died during an attempt left "Sending": the next one does not resend (maybe delivered).
    interrupted = {**note, "disablementId": "run-interrupted", "state": "Sending", "sentTo": []}
    stack.kube.custom.patch_namespaced_custom_object_status(
        names.GROUP, names.VERSION, NS, names.PLURAL, "flaky", {"status": {"notification": interrupted}}
    )
    op = _start(stack, "third")
    try:
        wait_for(
            lambda: (_status(stack, "flaky").get("notification") or {}).get("state") == "Unknown",
            timeout=60,
            what="the interrupted attempt to be reported, not repeated",
        )
        _reconciled(stack, "flaky", "2")
        assert "NotificationUncertain" in [e["reason"] for e in stack.kube.events(NS, "flaky")]
        assert {u: _mails_to(stack, u) - before[u] for u in USERS} == dict.fromkeys(USERS, 1)
    finally:
        op.stop()
