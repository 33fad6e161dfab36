"""Check a Stripe API key: its mode against the destination, then one cheap authenticated call."""

from __future__ import annotations

import contextlib
import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass

import stripe

DEFAULT_API_BASE = "https://api.stripe.com"
# Pin the API version the operator is written against, so a change of the account's default
# version in Stripe's dashboard never changes what the operator sends or reads.
STRIPE_API_VERSION = "2025-03-31.basil"


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


@dataclass(frozen=True)
class KeyCheck:
    """Outcome of a credential check. `reason` is a CamelCase condition reason; `message` never holds the key."""

    ok: bool
    reason: str
    message: str
    account_id: str | None = None
    retryable: bool = False


@contextlib.asynccontextmanager
async def open_client(
    api_key: str, *, api_base: str | None, timeout: float = 30.0, max_network_retries: int = 0
) -> AsyncIterator[stripe.StripeClient]:
    """A StripeClient on the async HTTPX transport, pointed at `api_base` (Stripe's own by default)."""
    http_client = stripe.HTTPXClient(timeout=timeout)
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


async def check_key(api_key: str, *, test_mode: bool, api_base: str | None, timeout: float = 15.0) -> KeyCheck:
    """Refuse a key of the wrong mode without calling Stripe; otherwise ask Stripe whether it accepts it."""
    mode = key_mode(api_key)
    destination = "StripeTestMode" if test_mode else "Stripe"
    if mode is None:
        return KeyCheck(
            False,
            "InvalidKeyFormat",
            "the value is not a Stripe secret or restricted API key (expected it to start with sk_live_, "
            "rk_live_, sk_test_ or rk_test_); put the key from Stripe's dashboard, Developers > API keys, in the Secret",
        )
    if test_mode and mode is KeyMode.LIVE:
        return KeyCheck(
            False,
            "KeyModeMismatch",
            f"the Secret holds a live-mode key but destination is {destination}; use a test key (sk_test_/rk_test_) "
            "or set destination: Stripe",
        )
    if not test_mode and mode is KeyMode.TEST:
        return KeyCheck(
            False,
            "KeyModeMismatch",
            f"the Secret holds a test-mode key but destination is {destination}; use a live key (sk_live_/rk_live_) "
            "or set destination: StripeTestMode",
        )
    async with open_client(api_key, api_base=api_base, timeout=timeout) as client:
        return await _probe(client)


async def _probe(client: stripe.StripeClient) -> KeyCheck:
    try:
        account = await client.v1.accounts.retrieve_current_async()
        return KeyCheck(True, "Connected", f"Stripe accepted the key (account {account.id})", account_id=account.id)
    except stripe.PermissionError:
        # Restricted keys often lack account read access; a one-item invoice list proves the key works
        # and that it can read invoices, which the sync needs anyway.
        pass
    except stripe.AuthenticationError as err:
        return KeyCheck(
            False,
            "StripeAuthFailed",
            f"Stripe rejected the API key (HTTP {err.http_status}); the key may be revoked or mistyped; "
            "put a valid key in the Secret",
        )
    except stripe.RateLimitError:
        return KeyCheck(
            False,
            "StripeRateLimited",
            "Stripe answered 429 to the credential check; retrying",
            retryable=True,
        )
    except stripe.APIConnectionError as err:
        return KeyCheck(False, "StripeUnreachable", f"could not reach Stripe: {_first_line(err)}", retryable=True)
    except stripe.APIError as err:
        return KeyCheck(False, "StripeUnavailable", f"Stripe answered HTTP {err.http_status}; retrying", retryable=True)
    except stripe.StripeError as err:
        return KeyCheck(False, "StripeCheckFailed", f"Stripe refused the credential check: {_first_line(err)}")
    try:
        await client.v1.invoices.list_async(params={"limit": 1})
        return KeyCheck(True, "Connected", "Stripe accepted the restricted key (it cannot read the account id)")
    except stripe.PermissionError:
        return KeyCheck(
            False,
            "StripePermissionDenied",
            "the restricted key may not read invoices; grant it write access to Invoices, Invoice items and "
            "Customers (read) in Stripe's dashboard",
        )
    except stripe.StripeError as err:
        return KeyCheck(
            False,
            "StripeCheckFailed",
            f"Stripe refused the credential check: {_first_line(err)}",
            retryable=isinstance(err, stripe.APIConnectionError | stripe.APIError | stripe.RateLimitError),
        )


def _first_line(err: stripe.StripeError) -> str:
    text = (err.user_message or str(err) or type(err).__name__).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__
