"""Credential checks for one integration: the Stripe key and the m3ter API credentials.

Secrets are read by name on every pass (no list/watch on Secrets); a check against Stripe or m3ter
runs only when what it depends on changed (reference, Secret version, destination), when the last
result is old, or after a transient failure.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from m3stripe.adapters.kube_api import KubeApi, KubeApiError
from m3stripe.adapters.stripe_credentials import KeyCheck, check_key
from m3stripe.api.spec import StripeIntegrationSpec


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    reason: str
    message: str
    account_id: str | None = None
    retryable: bool = False
    # The verified credential itself, kept in memory for the sync; never printed or compared.
    secret: str | None = field(default=None, repr=False, compare=False)


@dataclass
class _Cached:
    fingerprint: tuple[object, ...]
    result: CheckResult
    at: float


class CachedCheck:
    """Re-run an expensive check only when its inputs change or its result ages out."""

    def __init__(self, recheck_seconds: float, retry_seconds: float) -> None:
        self._recheck = recheck_seconds
        self._retry = retry_seconds
        self._cached: _Cached | None = None

    async def get(self, fingerprint: tuple[object, ...], run: Callable[[], Awaitable[CheckResult]]) -> CheckResult:
        now = time.monotonic()
        cached = self._cached
        if cached is not None and cached.fingerprint == fingerprint:
            age = now - cached.at
            limit = self._retry if cached.result.retryable else self._recheck
            if age < limit:
                return cached.result
        result = await run()
        self._cached = _Cached(fingerprint, result, time.monotonic())
        return result

    def invalidate(self) -> None:
        self._cached = None


async def check_stripe_credential(
    kube: KubeApi,
    namespace: str,
    spec: StripeIntegrationSpec,
    cache: CachedCheck,
    *,
    api_base: str | None,
) -> CheckResult:
    ref = spec.credentialRef
    if ref is None:
        cache.invalidate()
        return CheckResult(
            False,
            "NotConnected",
            "no credential: set spec.credentialRef to a Secret holding the Stripe API key to connect the integration",
        )
    where = f"Secret {namespace}/{ref.name}"
    try:
        secret = await kube.read_secret(namespace, ref.name)
    except KubeApiError as err:
        return CheckResult(
            False, "SecretUnreadable", f"{err}; check the operator's RBAC (get on secrets)", retryable=True
        )
    if secret is None:
        return CheckResult(
            False,
            "SecretNotFound",
            f"{where} (spec.credentialRef.name) does not exist; create it with the Stripe API key under key {ref.key!r}",
        )
    key = secret.text(ref.key)
    if not key:
        present = ", ".join(sorted(secret.data)) or "none"
        return CheckResult(
            False,
            "SecretKeyMissing",
            f"{where} has no non-empty key {ref.key!r} (spec.credentialRef.key); keys present: {present}",
        )
    fingerprint = (ref.name, ref.key, secret.resource_version, spec.destination, hash(key))

    async def run() -> CheckResult:
        check: KeyCheck = await check_key(key, test_mode=spec.is_test_mode, api_base=api_base)
        message = check.message if check.ok else f"{where}, key {ref.key!r}: {check.message}"
        return CheckResult(
            check.ok,
            check.reason,
            message,
            check.account_id,
            check.retryable,
            secret=key if check.ok else None,
        )

    return await cache.get(fingerprint, run)


@dataclass(frozen=True)
class M3terSecret:
    """The m3ter credentials read from the referenced Secret; `repr` hides the secret."""

    organization_id: str
    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return (
            f"M3terSecret(organization_id={self.organization_id!r}, client_id={self.client_id!r}, client_secret='***')"
        )


async def read_m3ter_secret(
    kube: KubeApi, namespace: str, spec: StripeIntegrationSpec
) -> tuple[M3terSecret | None, CheckResult | None, tuple[object, ...]]:
    """The m3ter credentials, or the problem that prevents reading them, plus a fingerprint of the inputs."""
    ref = spec.m3ter.credentialsRef
    where = f"Secret {namespace}/{ref.name}"
    try:
        secret = await kube.read_secret(namespace, ref.name)
    except KubeApiError as err:
        return None, CheckResult(False, "M3terSecretUnreadable", str(err), retryable=True), ()
    if secret is None:
        return (
            None,
            CheckResult(
                False,
                "M3terSecretNotFound",
                f"{where} (spec.m3ter.credentialsRef.name) does not exist; create it with the m3ter API key id under "
                f"{ref.clientIdKey!r} and the API secret under {ref.clientSecretKey!r}",
            ),
            (),
        )
    client_id, client_secret = secret.text(ref.clientIdKey), secret.text(ref.clientSecretKey)
    missing = [k for k, v in ((ref.clientIdKey, client_id), (ref.clientSecretKey, client_secret)) if not v]
    if missing or client_id is None or client_secret is None:
        present = ", ".join(sorted(secret.data)) or "none"
        return (
            None,
            CheckResult(
                False,
                "M3terSecretKeyMissing",
                f"{where} has no non-empty key(s) {', '.join(map(repr, missing))} (spec.m3ter.credentialsRef); "
                f"keys present: {present}",
            ),
            (),
        )
    creds = M3terSecret(spec.m3ter.organizationId, client_id, client_secret)
    fingerprint = (
        ref.name,
        secret.resource_version,
        spec.m3ter.organizationId,
        hash((client_id, client_secret)),
    )
    return creds, None, fingerprint
