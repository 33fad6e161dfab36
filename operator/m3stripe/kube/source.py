"""The m3ter side of integrations: long-lived sources (one OAuth token per lifetime) and their checks.

Integrations that use the same m3ter credentials share one source, hence one token and one check.
"""

from __future__ import annotations

from dataclasses import dataclass

from m3stripe.adapters.kube_api import KubeApi
from m3stripe.adapters.m3ter_client import M3terRateLimits
from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.adapters.m3ter_token import M3terAuthError, M3terCredentials, M3terUnavailable
from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.credential_check import CredentialCheck
from m3stripe.kube.config import OperatorConfig
from m3stripe.kube.credentials import CachedCheck, read_m3ter_secret


@dataclass
class _Shared:
    source: M3terSource
    check: CachedCheck
    users: int = 0


class SourceRegistry:
    """Reference-counted M3terSources keyed by the credentials' fingerprint.

    m3ter rate-limits an Organization, whoever the caller, and a source IP; so every source of the
    process shares one :class:`M3terRateLimits`, which budgets per Organization id.
    """

    def __init__(self, config: OperatorConfig) -> None:
        self._config = config
        self._shared: dict[tuple[object, ...], _Shared] = {}
        self.rate_limits = M3terRateLimits(organization_rate=config.m3ter.requests_per_second)

    def acquire(self, fingerprint: tuple[object, ...], creds: M3terCredentials) -> _Shared:
        shared = self._shared.get(fingerprint)
        if shared is None:
            source = M3terSource(
                creds,
                base_url=self._config.m3ter.base_url,
                rate_limits=self.rate_limits,
            )
            check = CachedCheck(self._config.credentials.recheck_seconds, self._config.credentials.retry_seconds)
            shared = self._shared[fingerprint] = _Shared(source, check)
        shared.users += 1
        return shared

    async def release(self, fingerprint: tuple[object, ...]) -> None:
        shared = self._shared.get(fingerprint)
        if shared is None:
            return
        shared.users -= 1
        if shared.users <= 0:
            del self._shared[fingerprint]
            await shared.source.aclose()


class SourceHandle:
    """One integration's use of a shared source: switches sources when the credentials change."""

    def __init__(self, config: OperatorConfig, registry: SourceRegistry) -> None:
        self._config = config
        self._registry = registry
        self._fingerprint: tuple[object, ...] | None = None
        self._shared: _Shared | None = None
        self._last: CredentialCheck | None = None

    @property
    def source(self) -> M3terSource | None:
        """The source, when its last check succeeded."""
        ok = self._shared is not None and self._last is not None and self._last.ok
        return self._shared.source if ok and self._shared is not None else None

    async def check(self, kube: KubeApi, namespace: str, spec: StripeIntegrationSpec) -> CredentialCheck:
        creds, problem, fingerprint = await read_m3ter_secret(kube, namespace, spec)
        if problem is not None or creds is None:
            self._last = problem
            return problem or CredentialCheck(False, "M3terSecretUnreadable", "could not read the m3ter credentials")
        if fingerprint != self._fingerprint or self._shared is None:
            await self.close()
            self._fingerprint = fingerprint
            self._shared = self._registry.acquire(fingerprint, creds)
        source = self._shared.source

        async def run() -> CredentialCheck:
            try:
                await source.check()
            except M3terAuthError as err:
                return CredentialCheck(False, "M3terAuthFailed", f"m3ter refused the credentials: {err}")
            except M3terUnavailable as err:
                return CredentialCheck(False, "M3terUnreachable", f"could not reach m3ter: {err}", retryable=True)
            return CredentialCheck(
                True,
                "SourceConnected",
                f"m3ter organization {creds.organization_id} accepted the credentials",
            )

        self._last = await self._shared.check.get(fingerprint, run)
        return self._last

    async def close(self) -> None:
        if self._fingerprint is not None and self._shared is not None:
            await self._registry.release(self._fingerprint)
        self._shared = None
        self._fingerprint = None
