"""End to end over HTTP: the operator process against the Kubernetes, Stripe and m3ter emulators.

Each scenario runs in its own namespace against one operator process, which also shows that one
integration's trouble does not affect another's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from m3stripe.testing.stack import LocalStack, OperatorProcess, wait_for
from tests.support.stack_world import integration_spec

TEST_KEY = "sk_test_51emulatorAAAA"
OTHER_TEST_KEY = "sk_test_51emulatorBBBB"
LIVE_KEY = "sk_live_51emulatorCCCC"
M3TER_ORG = "org-e2e"
M3TER_ID, M3TER_SECRET = "m3ter-client", "m3ter-secret-value"


@pytest.fixture(scope="module")
def operator(stack: LocalStack) -> Iterator[OperatorProcess]:
    stack.call(lambda: stack.stripe.add_api_key(TEST_KEY))
    stack.call(lambda: stack.stripe.add_api_key(OTHER_TEST_KEY))
    stack.call(lambda: stack.stripe.add_api_key(LIVE_KEY))
    stack.call(lambda: stack.m3ter.add_client(M3TER_ID, M3TER_SECRET, M3TER_ORG))
    with stack.operator(M3STRIPE_SYNC="false") as op:
        yield op
    output = op.output()
    for secret in (TEST_KEY, OTHER_TEST_KEY, LIVE_KEY, M3TER_SECRET):
        assert secret not in output, "a secret value reached the operator's log"


def namespace(stack: LocalStack) -> str:
    ns = f"e2e-{uuid.uuid4().hex[:8]}"
    stack.ensure_namespace(ns)
    stack.kube.put_secret(ns, "m3ter", {"clientId": M3TER_ID, "clientSecret": M3TER_SECRET})
    return ns


def spec(**overrides: Any) -> dict[str, Any]:
    return integration_spec(M3TER_ORG, every=None, **overrides)


def integration(stack: LocalStack, name: str, stripe_secret: dict[str, str], **overrides: Any) -> str:
    """A new namespace with the m3ter Secret, the Secret `stripe` holding `stripe_secret`, and the integration
    `name` of `spec(**overrides)`; returns the namespace."""
    ns = namespace(stack)
    stack.kube.put_secret(ns, "stripe", stripe_secret)
    stack.kube.create_integration(ns, name, spec(**overrides))
    return ns


def ready(stack: LocalStack, ns: str, name: str, *, status: str, reason: str, timeout: float = 30) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = stack.kube.get_integration(ns, name)
        cond = _cond(obj, "Ready")
        if cond and cond["status"] == status and cond["reason"] == reason:
            return obj
        return None

    return wait_for(check, timeout=timeout, what=f"{ns}/{name} Ready={status} reason={reason}")


def _cond(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or ():
        if c["type"] == type_:
            return dict(c)
    return None


def test_create_becomes_ready_and_connected(stack: LocalStack, operator: OperatorProcess) -> None:
    ns = integration(stack, "billing", {"apiKey": TEST_KEY})
    obj = ready(stack, ns, "billing", status="True", reason="Ready")
    status = obj["status"]
    assert status["connected"] is True
    assert status["disabled"] is False
    assert status["consecutiveErrors"] == 0
    assert status["integrationId"] == obj["metadata"]["uid"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["stripeAccountId"].startswith("acct_")
    for type_ in ("Ready", "Connected", "SourceConnected"):
        cond = _cond(obj, type_)
        assert cond is not None and cond["status"] == "True", type_
        assert cond["observedGeneration"] == obj["metadata"]["generation"]
        assert cond["lastTransitionTime"]
    assert _cond(obj, "Stalled") is None  # abnormal-true: present only while true
    # kopf posts events in the background, after the status write: wait for it rather than race it.
    wait_for(
        lambda: any(e["reason"] == "Connected" and e["type"] == "Normal" for e in stack.kube.events(ns, "billing")),
        what="the Connected event",
    )


def test_status_does_not_churn(stack: LocalStack, operator: OperatorProcess) -> None:
    ns = integration(stack, "quiet", {"apiKey": TEST_KEY})
    ready(stack, ns, "quiet", status="True", reason="Ready")
    first = stack.kube.get_integration(ns, "quiet")
    # Several secret-poll intervals (1s in tests) pass: nothing changes, so nothing is written.
    import time

    time.sleep(4)
    later = stack.kube.get_integration(ns, "quiet")
    assert later["status"] == first["status"]
    assert later["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_missing_secret_then_created_later_connects_without_restart(
    stack: LocalStack, operator: OperatorProcess
) -> None:
    ns = namespace(stack)
    stack.kube.create_integration(ns, "late", spec())
    obj = ready(stack, ns, "late", status="False", reason="SecretNotFound")
    cond = _cond(obj, "Connected")
    assert cond is not None and cond["status"] == "False" and cond["reason"] == "SecretNotFound"
    assert f"Secret {ns}/stripe" in cond["message"] and "spec.credentialRef.name" in cond["message"]
    assert obj["status"]["connected"] is False
    wait_for(
        lambda: any(e["reason"] == "SecretNotFound" and e["type"] == "Warning" for e in stack.kube.events(ns, "late")),
        what="a Warning event for the missing Secret",
    )
    pid = operator.process.pid
    stack.kube.put_secret(ns, "stripe", {"apiKey": TEST_KEY})
    obj = ready(stack, ns, "late", status="True", reason="Ready")
    assert obj["status"]["connected"] is True
    assert operator.process.pid == pid and operator.running


def test_secret_without_the_key(stack: LocalStack, operator: OperatorProcess) -> None:
    ns = integration(stack, "nokey", {"token": TEST_KEY})
    obj = ready(stack, ns, "nokey", status="False", reason="SecretKeyMissing")
    message = _cond(obj, "Ready")["message"]  # type: ignore[index]
    assert "'apiKey'" in message and "token" in message and TEST_KEY not in message


def test_rotation_to_an_invalid_key_disconnects_and_back(stack: LocalStack, operator: OperatorProcess) -> None:
    ns = integration(stack, "rotated", {"apiKey": TEST_KEY})
    ready(stack, ns, "rotated", status="True", reason="Ready")
    stack.kube.put_secret(ns, "stripe", {"apiKey": "sk_test_revokedOrMistyped9999"})
    obj = ready(stack, ns, "rotated", status="False", reason="StripeAuthFailed")
    assert obj["status"]["connected"] is False
    assert "9999" not in str(obj["status"])  # not even the tail of a key in status
    wait_for(
        lambda: any(e["reason"] == "Disconnected" and e["type"] == "Warning" for e in stack.kube.events(ns, "rotated")),
        what="a Disconnected warning",
    )
    stack.kube.put_secret(ns, "stripe", {"apiKey": OTHER_TEST_KEY})
    ready(stack, ns, "rotated", status="True", reason="Ready")


def test_live_key_on_test_mode_destination_is_refused(stack: LocalStack, operator: OperatorProcess) -> None:
    ns = integration(stack, "mismatch", {"apiKey": LIVE_KEY})
    obj = ready(stack, ns, "mismatch", status="False", reason="KeyModeMismatch")
    message = _cond(obj, "Connected")["message"]  # type: ignore[index]
    assert "live-mode key" in message and "StripeTestMode" in message
    # The same key is fine once the destination says Stripe (live).
    stack.kube.patch_integration(ns, "mismatch", {"spec": {"destination": "Stripe"}})
    obj = ready(stack, ns, "mismatch", status="True", reason="Ready")
    assert obj["status"]["observedGeneration"] == 2


def test_test_key_on_live_destination_is_refused(stack: LocalStack, operator: OperatorProcess) -> None:
    ns = integration(stack, "mismatch2", {"apiKey": TEST_KEY}, destination="Stripe")
    obj = ready(stack, ns, "mismatch2", status="False", reason="KeyModeMismatch")
    assert "test-mode key" in _cond(obj, "Connected")["message"]  # type: ignore[index]


def test_removing_the_reference_disconnects_and_pointing_elsewhere_updates(
    stack: LocalStack, operator: OperatorProcess
) -> None:
    ns = namespace(stack)
    stack.kube.put_secret(ns, "stripe", {"apiKey": TEST_KEY})
    stack.kube.put_secret(ns, "stripe-b", {"key": OTHER_TEST_KEY})
    stack.kube.create_integration(ns, "toggle", spec())
    first = ready(stack, ns, "toggle", status="True", reason="Ready")
    stack.kube.patch_integration(ns, "toggle", {"spec": {"credentialRef": None}})
    obj = ready(stack, ns, "toggle", status="False", reason="NotConnected")
    assert obj["status"]["connected"] is False
    assert "spec.credentialRef" in _cond(obj, "Connected")["message"]  # type: ignore[index]
    stack.kube.patch_integration(ns, "toggle", {"spec": {"credentialRef": {"name": "stripe-b", "key": "key"}}})
    obj = ready(stack, ns, "toggle", status="True", reason="Ready")
    assert obj["status"]["stripeAccountId"] != first["status"]["stripeAccountId"]


def test_invalid_filter_expression_reports_its_position(stack: LocalStack, operator: OperatorProcess) -> None:
    ns = integration(stack, "badfilter", {"apiKey": TEST_KEY}, accountFilter="customFields != null AND = = UK")
    stack.kube.create_integration(ns, "neighbour", spec())
    obj = ready(stack, ns, "badfilter", status="False", reason="InvalidSpec")
    stalled = _cond(obj, "Stalled")
    assert stalled is not None and stalled["status"] == "True"
    message = _cond(obj, "Ready")["message"]  # type: ignore[index]
    assert "spec.accountFilter" in message and "column 26" in message
    assert obj["status"]["observedGeneration"] == 1
    # The other integration in the same namespace is unaffected.
    ready(stack, ns, "neighbour", status="True", reason="Ready")
    wait_for(
        lambda: any(
            e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in stack.kube.events(ns, "badfilter")
        ),
        what="an InvalidSpec warning",
    )
    # Fixing it clears Stalled.
    stack.kube.patch_integration(ns, "badfilter", {"spec": {"accountFilter": 'address.country == "UK"'}})
    obj = ready(stack, ns, "badfilter", status="True", reason="Ready")
    assert _cond(obj, "Stalled") is None


def test_unknown_fields_and_values_name_the_field(stack: LocalStack, operator: OperatorProcess) -> None:
    ns = namespace(stack)
    stack.kube.put_secret(ns, "stripe", {"apiKey": TEST_KEY})
    stack.kube.create_integration(
        ns,
        "typos",
        spec(
            sortLineItemsBy="Alphabetical",
            excludedLineItemTypes=["USAGE", "TIP"],
            createStripeInvoce=True,
            accountIds=["a1"],
            restrictedAccountIds=["a1"],
        ),
    )
    obj = ready(stack, ns, "typos", status="False", reason="InvalidSpec")
    message = _cond(obj, "Ready")["message"]  # type: ignore[index]
    assert "spec.sortLineItemsBy" in message and "'Alphabetical'" in message
    assert "spec.excludedLineItemTypes[1]" in message and "'TIP'" in message
    assert "spec.createStripeInvoce: unknown field" in message


def test_conflicting_lists_are_reported(stack: LocalStack, operator: OperatorProcess) -> None:
    ns = integration(stack, "overlap", {"apiKey": TEST_KEY}, accountIds=["a1", "a2"], restrictedAccountIds=["a2"])
    obj = ready(stack, ns, "overlap", status="False", reason="InvalidSpec")
    message = _cond(obj, "Ready")["message"]  # type: ignore[index]
    assert "spec.restrictedAccountIds" in message and "a2" in message


def test_bad_m3ter_credentials_are_reported(stack: LocalStack, operator: OperatorProcess) -> None:
    ns = namespace(stack)
    stack.kube.put_secret(ns, "stripe", {"apiKey": TEST_KEY})
    stack.kube.put_secret(ns, "m3ter", {"clientId": M3TER_ID, "clientSecret": "wrong"})
    stack.kube.create_integration(ns, "source", spec())
    obj = ready(stack, ns, "source", status="False", reason="M3terAuthFailed")
    assert obj["status"]["connected"] is True  # Stripe is fine; the m3ter side is not
    assert "wrong" not in str(obj["status"])


def test_suspend_is_reported(stack: LocalStack, operator: OperatorProcess) -> None:
    ns = integration(stack, "paused", {"apiKey": TEST_KEY}, suspend=True)
    ready(stack, ns, "paused", status="False", reason="Suspended")
    stack.kube.patch_integration(ns, "paused", {"spec": {"suspend": False}})
    ready(stack, ns, "paused", status="True", reason="Ready")


def test_many_integrations_each_get_the_right_status(stack: LocalStack, operator: OperatorProcess) -> None:
    ns = namespace(stack)
    stack.kube.put_secret(ns, "stripe", {"apiKey": TEST_KEY})
    stack.kube.put_secret(ns, "live", {"apiKey": LIVE_KEY})
    count = 200
    expected: dict[str, str] = {}
    for i in range(count):
        name = f"bulk-{i:03d}"
        if i % 10 == 3:
            stack.kube.create_integration(ns, name, spec(credentialRef={"name": "live"}))
            expected[name] = "KeyModeMismatch"
        elif i % 10 == 7:
            stack.kube.create_integration(ns, name, spec(credentialRef=None))
            expected[name] = "NotConnected"
        else:
            stack.kube.create_integration(ns, name, spec())
            expected[name] = "Ready"

    def all_settled() -> bool:
        items = {o["metadata"]["name"]: o for o in stack.kube.list_integrations(ns)}
        return all(
            (_cond(items[n], "Ready") or {}).get("reason") == reason
            and (items[n].get("status") or {}).get("observedGeneration") == 1
            for n, reason in expected.items()
        )

    wait_for(all_settled, timeout=120, interval=1, what=f"{count} integrations to settle")
    for obj in stack.kube.list_integrations(ns):
        name = obj["metadata"]["name"]
        assert obj["status"]["connected"] is (expected[name] == "Ready"), name
        assert obj["status"]["integrationId"] == obj["metadata"]["uid"]
