"""m3ter OAuth: client-credential tokens fetched once, shared, and refreshed shortly before expiry; the Service
User's credentials, and the m3ter adapter's errors (each one of the Bill source port's).

The SDK's async client never fetches tokens itself (and the sync one fetches one per request), so
the operator owns the token lifecycle here and hands the token to the SDK as its ``token`` option.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import m3ter
from m3ter import AsyncM3ter

from m3stripe.domain.ports import BillSourceAuthError, BillSourceError, BillSourceUnavailable

log = logging.getLogger(__name__)

DEFAULT_REFRESH_MARGIN = 60.0


class M3terSourceError(BillSourceError):
    """Base class for errors talking to m3ter."""


class M3terAuthError(M3terSourceError, BillSourceAuthError):
    """m3ter refused the credentials or the token (fix the Secret; retrying will not help)."""


class M3terUnavailable(M3terSourceError, BillSourceUnavailable):
    """m3ter could not be reached or kept failing (network, 5xx, 429) after bounded retries."""


@dataclass(frozen=True)
class M3terCredentials:
    """A Service User's API credentials for one m3ter Organization; `repr` masks the secret."""

    organization_id: str
    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return (
            f"M3terCredentials(organization_id={self.organization_id!r}, client_id={self.client_id!r}, "
            "client_secret='***')"
        )


def redact(text: str, credentials: M3terCredentials) -> str:
    """``text`` without the client secret (plain or inside a Basic-auth value)."""
    # Belt and braces: a server could echo what it was sent, so scrub the secret in both the plain
    # and the Basic-auth encoding before any text reaches an exception or a log line.
    secret = credentials.client_secret
    basic = base64.b64encode(f"{credentials.client_id}:{secret}".encode()).decode()
    for needle in (basic, secret):
        if needle:
            text = text.replace(needle, "***")
    return text


def server_message(exc: m3ter.APIStatusError, limit: int = 300) -> str:
    """The message of m3ter's error body (``{"message": ...}``), cut to ``limit`` characters."""
    body = exc.body
    text = exc.response.reason_phrase or ""
    if isinstance(body, dict):
        for key in ("message", "error_description", "error"):
            if isinstance(body.get(key), str):
                text = str(body[key])
                break
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float  # clock() value after which the token is refreshed before use


class TokenManager:
    """Fetches and caches m3ter bearer tokens; ``get()`` is safe to call from many tasks at once."""

    def __init__(
        self,
        credentials: M3terCredentials,
        *,
        client: AsyncM3ter,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``client`` (its owner closes it) is the source's: one connection pool and one throttle for both."""
        self._credentials = credentials
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._client = client
        basic = base64.b64encode(f"{credentials.client_id}:{credentials.client_secret}".encode()).decode()
        # Basic auth goes in as a client default header, not per-request extra_headers: the SDK's
        # debug log prints per-request options (headers included) but never its default headers.
        self._token_client = self._client.with_options(default_headers={"Authorization": f"Basic {basic}"})
        self._token: _Token | None = None
        self._lock = asyncio.Lock()
        self._completed = 0  # fetches finished, so waiters can tell one ended while they queued
        self._last_failure: M3terSourceError | None = None
        self.tokens_fetched = 0

    @property
    def credentials(self) -> M3terCredentials:
        return self._credentials

    def _valid(self) -> str | None:
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token.value
        return None

    async def get(self) -> str:
        """A bearer token valid for at least the refresh margin (fetching one if needed)."""
        value = self._valid()
        if value is not None:
            return value
        completed_before = self._completed
        async with self._lock:
            # Whoever held the lock before us may have refreshed already: single flight.
            value = self._valid()
            if value is not None:
                return value
            failure = self._last_failure
            if failure is not None and self._completed != completed_before:
                # A fetch failed while we queued; share its outcome rather than hammering m3ter
                # with one doomed request per waiting task.
                raise type(failure)(str(failure)) from None
            try:
                self._token = await self._fetch()
            except M3terSourceError as exc:
                self._last_failure = exc
                raise
            finally:
                self._completed += 1
            self._last_failure = None
            return self._token.value

    def invalidate(self, token: str) -> None:
        """Forget ``token`` after m3ter rejected it; a newer token fetched meanwhile is kept."""
        if self._token is not None and self._token.value == token:
            self._token = None

    async def _fetch(self) -> _Token:
        creds = self._credentials
        started = self._clock()
        try:
            response = await self._token_client.authentication.get_bearer_token(grant_type="client_credentials")
        except (m3ter.AuthenticationError, m3ter.BadRequestError, m3ter.PermissionDeniedError) as exc:
            message = redact(
                f"m3ter rejected the API credentials of client_id {creds.client_id!r} for organization "
                f"{creds.organization_id!r} (HTTP {exc.status_code}: {server_message(exc)}); "
                "check the client id and secret",
                creds,
            )
            log.warning("%s", message)
            # "from None": the chained SDK error holds the request, whose headers carry the secret.
            raise M3terAuthError(message) from None
        except (m3ter.APIConnectionError, m3ter.APIStatusError) as exc:
            raise M3terUnavailable(
                redact(f"could not get an m3ter token from {self._client.base_url}: {exc}", creds)
            ) from None
        expires_in = float(response.expires_in)
        # A lifetime shorter than twice the margin would make every call refetch; refresh at half
        # life instead so short-lived tokens are still reused.
        margin = min(self._refresh_margin, expires_in / 2)
        self.tokens_fetched += 1
        log.debug("fetched m3ter token for client_id %s, expires in %ss", creds.client_id, expires_in)
        return _Token(response.access_token, started + expires_in - margin)
