"""Check a Stripe API key: its mode against the destination, then one cheap authenticated call."""

from __future__ import annotations

import contextlib
import enum
from collections.abc import AsyncIterator

import aiohttp
import stripe
from stripe._api_version import _ApiVersion

from m3stripe.adapters.stripe_gateway import account_in_permission_error, scrub
from m3stripe.domain.credential_check import CredentialCheck

DEFAULT_API_BASE = "https://api.stripe.com"
# Pin the API version, so a change of the account's default version in Stripe's dashboard never
# changes what the operator sends or reads. It is exactly the version the installed SDK is generated
# for (its parameter and object types describe that version and no other): "your API calls to Stripe
# use the API version that was current when the SDK was released" (https://docs.stripe.com/sdks/set-version);
# the SDK major is pinned in pyproject.toml, so this moves only with a deliberate SDK upgrade.
STRIPE_API_VERSION: str = _ApiVersion.CURRENT


class KeyMode(enum.StrEnum):
    LIVE = "live"
    TEST = "test"


def key_mode(key: str) -> KeyMode | None:
    """The mode of a secret (sk_) or restricted (rk_) key; None for anything else."""
    for prefix, mode in (
        ("sk_live_", KeyMode.LIVE),
        ("rk_live_", KeyMode.LIVE),
        ("sk_test_", KeyMode.TEST),
        ("rk_test_", KeyMode.TEST),
    ):
        if key.startswith(prefix) and len(key) > len(prefix):
            return mode
    return None


@contextlib.asynccontextmanager
async def open_client(
    api_key: str, *, api_base: str | None, timeout: float = 30.0, max_network_retries: int = 0
) -> AsyncIterator[stripe.StripeClient]:
    """A StripeClient on the SDK's aiohttp transport, pointed at `api_base` (Stripe's own by default).

    aiohttp rather than HTTPX: the same pass costs about a fifth less CPU (benchmarks/README.md), and
    the SDK supports both (`stripe.AIOHTTPClient`). Network errors while a body is read escape the
    SDK's wrapping on this transport; StripeGateway treats them as the network errors they are.
    """
    # The SDK's telemetry, off (process-wide: the SDK has no per-client switch; "stripe.enable_telemetry = False",
    # https://github.com/stripe/stripe-python#telemetry): each request would otherwise carry the previous one's
    # latency and the host's platform string (the kernel's release) to Stripe, and it costs every request a JSON
    # encoding and a header.
    stripe.enable_telemetry = False
    http_client = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=timeout))
    try:
        yield stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base or DEFAULT_API_BASE},
            http_client=http_client,
            max_network_retries=max_network_retries,
            stripe_version=STRIPE_API_VERSION,
        )
    finally:
        await http_client.close_async()  # type: ignore[no-untyped-call]


async def check_key(api_key: str, *, test_mode: bool, api_base: str | None, timeout: float = 15.0) -> CredentialCheck:
    """Refuse a key of the wrong mode without calling Stripe; otherwise ask Stripe whether it accepts it."""
    mode = key_mode(api_key)
    destination = "StripeTestMode" if test_mode else "Stripe"
    if mode is None:
        return CredentialCheck(
            False,
            "InvalidKeyFormat",
            "the value is not a Stripe secret or restricted API key (expected it to start with sk_live_, "
            "rk_live_, sk_test_ or rk_test_); put the key from Stripe's dashboard, Developers > API keys, in the Secret",
        )
    if test_mode and mode is KeyMode.LIVE:
        return CredentialCheck(
            False,
            "KeyModeMismatch",
            f"the Secret holds a live-mode key but destination is {destination}; use a test key (sk_test_/rk_test_) "
            "or set destination: Stripe",
        )
    if not test_mode and mode is KeyMode.TEST:
        return CredentialCheck(
            False,
            "KeyModeMismatch",
            f"the Secret holds a test-mode key but destination is {destination}; use a live key (sk_live_/rk_live_) "
            "or set destination: StripeTestMode",
        )
    async with open_client(api_key, api_base=api_base, timeout=timeout) as client:
        return await _probe(client)


async def _probe(client: stripe.StripeClient) -> CredentialCheck:
    try:
        account = await client.v1.accounts.retrieve_current_async()
        return CredentialCheck(
            True, "Connected", f"Stripe accepted the key (account {account.id})", account_id=account.id
        )
    except stripe.PermissionError as err:
        # Stripe answers GET /v1/account with 403 for every restricted key ("This is a restricted API
        # key, but the required permissions are not available for use by restricted keys",
        # https://github.com/dj-stripe/dj-stripe/pull/1131); a one-item invoice list proves the key
        # works and can read invoices, which the sync needs anyway. The 403 names the account
        # ("... for this endpoint on account 'acct_...'"), which keys the account's rate limit.
        account_id = account_in_permission_error(err.user_message or str(err))
    except stripe.AuthenticationError as err:
        return CredentialCheck(
            False,
            "StripeAuthFailed",
            f"Stripe rejected the API key (HTTP {err.http_status}); the key may be revoked or mistyped; "
            "put a valid key in the Secret",
        )
    except stripe.RateLimitError:
        return CredentialCheck(
            False,
            "StripeRateLimited",
            "Stripe answered 429 to the credential check; retrying",
            retryable=True,
        )
    except stripe.APIConnectionError as err:
        return CredentialCheck(
            False, "StripeUnreachable", f"could not reach Stripe: {_first_line(err)}", retryable=True
        )
    except stripe.APIError as err:
        return CredentialCheck(
            False, "StripeUnavailable", f"Stripe answered HTTP {err.http_status}; retrying", retryable=True
        )
    except stripe.StripeError as err:
        return CredentialCheck(False, "StripeCheckFailed", f"Stripe refused the credential check: {_first_line(err)}")
    try:
        await client.v1.invoices.list_async(params={"limit": 1})
        where = f" (account {account_id})" if account_id else " (it cannot read the account id)"
        return CredentialCheck(True, "Connected", f"Stripe accepted the restricted key{where}", account_id=account_id)
    except stripe.PermissionError:
        return CredentialCheck(
            False,
            "StripePermissionDenied",
            "the restricted key may not read invoices; grant it write access to Invoices, Invoice items and "
            "Customers (read) in Stripe's dashboard",
            account_id=account_id,
        )
    except stripe.StripeError as err:
        return CredentialCheck(
            False,
            "StripeCheckFailed",
            f"Stripe refused the credential check: {_first_line(err)}",
            retryable=isinstance(err, stripe.APIConnectionError | stripe.APIError | stripe.RateLimitError),
        )


def _first_line(err: stripe.StripeError) -> str:
    text = scrub((err.user_message or str(err) or type(err).__name__).strip())
    return text.splitlines()[0][:300] if text else type(err).__name__
