"""Credential checks for one integration: the Stripe key and the m3ter API credentials.

Secrets are read by name on every pass (no list/watch on Secrets); a check against Stripe or m3ter
runs only when what it depends on changed (reference, Secret version, destination), when the last
result is old, or after a transient failure.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from m3stripe.adapters.kube_api import KubeApi, KubeApiError
from m3stripe.adapters.m3ter_token import M3terCredentials
from m3stripe.adapters.stripe_client import check_key
from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.credential_check import CredentialCheck

# Stripe's docs give no key alphabet or length; a Stripe security engineer describes live keys as
# `(sk|rk)_live_[0-9a-z]{10,128}`, case-insensitive (https://gitlab.com/gitlab-org/gitlab/-/issues/458019).
# 1 KiB leaves room for a future format and still refuses a pasted file or certificate.
MAX_KEY_BYTES = 1024


def key_format_problem(raw: bytes) -> str | None:
    """What makes these Secret bytes unusable as a Stripe key, without naming the key; None when fine.

    The key travels in an HTTP header (`Authorization: Bearer <key>`, the stripe SDK's
    `_api_requestor.py`): CR, LF and NUL are never allowed in a field value (RFC 9110, section 5.5), httpx
    encodes header values as ASCII (`httpx/_models.py`, `_normalize_header_value`), and Stripe's keys are
    a prefix and letters and digits (see MAX_KEY_BYTES). Such a key can never work: refused here, not retried.
    Surrounding whitespace is dropped first, as `Secret.text` does (`echo | base64`).
    """
    value = raw.strip()
    if len(value) > MAX_KEY_BYTES:
        return (
            f"the value is {len(value)} bytes long; a Stripe API key is about 100 characters (at most "
            f"{MAX_KEY_BYTES} accepted): check that the Secret holds the key itself, not a file"
        )
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "the value is binary data, not text; put the key itself (sk_.../rk_...) in the Secret"
    for position, char in enumerate(text):
        if char in "\r\n":
            return f"the value contains a line break at position {position + 1}; a Stripe API key is one line"
        if not char.isascii():
            return (
                f"the value contains a non-ASCII character at position {position + 1}; a Stripe API key is "
                "ASCII letters, digits and underscores (was it copied from a formatted document?)"
            )
        if char.isspace() or not char.isprintable():
            return (
                f"the value contains whitespace or a control character at position {position + 1}; a Stripe API "
                "key has none"
            )
    return None


@dataclass
class _Cached:
    fingerprint: tuple[object, ...]
    result: CredentialCheck
    at: float


class CachedCheck:
    """Re-run an expensive check only when its inputs change or its result ages out."""

    def __init__(self, recheck_seconds: float, retry_seconds: float) -> None:
        self._recheck = recheck_seconds
        self._retry = retry_seconds
        self._cached: _Cached | None = None

    async def get(
        self, fingerprint: tuple[object, ...], run: Callable[[], Awaitable[CredentialCheck]]
    ) -> CredentialCheck:
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
) -> CredentialCheck:
    ref = spec.credentialRef
    if ref is None:
        cache.invalidate()
        return CredentialCheck(
            False,
            "NotConnected",
            "no credential: set spec.credentialRef to a Secret holding the Stripe API key to connect the integration",
        )
    where = f"Secret {namespace}/{ref.name}"
    try:
        secret = await kube.read_secret(namespace, ref.name)
    except KubeApiError as err:
        return CredentialCheck(
            False, "SecretUnreadable", f"{err}; check the operator's RBAC (get on secrets)", retryable=True
        )
    if secret is None:
        return CredentialCheck(
            False,
            "SecretNotFound",
            f"{where} (spec.credentialRef.name) does not exist; create it with the Stripe API key under key {ref.key!r}",
        )
    key = secret.text(ref.key)
    if not key:
        present = ", ".join(sorted(secret.data)) or "none"
        return CredentialCheck(
            False,
            "SecretKeyMissing",
            f"{where} has no non-empty key {ref.key!r} (spec.credentialRef.key); keys present: {present}",
        )
    problem = key_format_problem(secret.data.get(ref.key) or b"")
    if problem is not None:
        cache.invalidate()
        return CredentialCheck(False, "InvalidKeyFormat", f"{where}, key {ref.key!r}: {problem}")
    fingerprint = (ref.name, ref.key, secret.resource_version, spec.destination, hash(key))

    async def run() -> CredentialCheck:
        check = await check_key(key, test_mode=spec.is_test_mode, api_base=api_base)
        if not check.ok:
            return dataclasses.replace(check, message=f"{where}, key {ref.key!r}: {check.message}")
        return dataclasses.replace(check, secret=key)

    return await cache.get(fingerprint, run)


async def read_m3ter_secret(
    kube: KubeApi, namespace: str, spec: StripeIntegrationSpec
) -> tuple[M3terCredentials | None, CredentialCheck | None, tuple[object, ...]]:
    """The m3ter credentials, or the problem that prevents reading them, plus a fingerprint of the inputs."""
    ref = spec.m3ter.credentialsRef
    where = f"Secret {namespace}/{ref.name}"
    try:
        secret = await kube.read_secret(namespace, ref.name)
    except KubeApiError as err:
        return None, CredentialCheck(False, "M3terSecretUnreadable", str(err), retryable=True), ()
    if secret is None:
        return (
            None,
            CredentialCheck(
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
            CredentialCheck(
                False,
                "M3terSecretKeyMissing",
                f"{where} has no non-empty key(s) {', '.join(map(repr, missing))} (spec.m3ter.credentialsRef); "
                f"keys present: {present}",
            ),
            (),
        )
    creds = M3terCredentials(spec.m3ter.organizationId, client_id, client_secret)
    fingerprint = (
        ref.name,
        secret.resource_version,
        spec.m3ter.organizationId,
        hash((client_id, client_secret)),
    )
    return creds, None, fingerprint
