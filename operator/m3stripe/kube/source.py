"""The m3ter side of one integration: a long-lived source (one OAuth token per lifetime) and its check."""

from __future__ import annotations

from m3stripe.adapters.kube_api import KubeApi
from m3stripe.adapters.m3ter_source import M3terAuthError, M3terCredentials, M3terSource, M3terUnavailable
from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.kube.config import OperatorConfig
from m3stripe.kube.credentials import CachedCheck, CheckResult, read_m3ter_secret


class SourceHandle:
    """Owns the integration's M3terSource: rebuilt when the credentials change, closed with the worker."""

    def __init__(self, config: OperatorConfig) -> None:
        self._config = config
        self._cache = CachedCheck(config.credential_recheck_seconds, config.credential_retry_seconds)
        self._fingerprint: tuple[object, ...] | None = None
        self._source: M3terSource | None = None
        self._last: CheckResult | None = None

    @property
    def source(self) -> M3terSource | None:
        """The source, when its last check succeeded."""
        return self._source if self._last is not None and self._last.ok else None

    async def check(self, kube: KubeApi, namespace: str, spec: StripeIntegrationSpec) -> CheckResult:
        creds, problem, fingerprint = await read_m3ter_secret(kube, namespace, spec)
        if problem is not None or creds is None:
            self._last = problem
            return problem or CheckResult(False, "M3terSecretUnreadable", "could not read the m3ter credentials")
        if fingerprint != self._fingerprint:
            await self.close()
            self._fingerprint = fingerprint
            self._source = M3terSource(
                M3terCredentials(creds.organization_id, creds.client_id, creds.client_secret),
                base_url=self._config.m3ter_base_url,
            )
        source = self._source
        assert source is not None

        async def run() -> CheckResult:
            try:
                await source.check()
            except M3terAuthError as err:
                return CheckResult(False, "M3terAuthFailed", f"m3ter refused the credentials: {err}")
            except M3terUnavailable as err:
                return CheckResult(False, "M3terUnreachable", f"could not reach m3ter: {err}", retryable=True)
            return CheckResult(
                True, "SourceConnected", f"m3ter organization {creds.organization_id} accepted the credentials", warn=False
            )

        self._last = await self._cache.get(fingerprint, run)
        return self._last

    async def close(self) -> None:
        if self._source is not None:
            await self._source.aclose()
        self._source = None
        self._fingerprint = None
        self._cache.invalidate()
