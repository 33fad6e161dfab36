"""Stripe-shaped API errors: ``{"error": {"type", "code", "param", "message", "doc_url"}}``."""

from __future__ import annotations

from typing import Any

DOCS = "https://stripe.com/docs/error-codes"


class StripeError(Exception):
    """An API error answered with ``status`` and Stripe's error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"{DOCS}/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        if request_id is not None and self.status != 401:
            error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        return {"error": error}


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> StripeError:
    return StripeError(400, message, param=param, code=code)


def unknown_parameter(param: str) -> StripeError:
    return StripeError(400, f"Received unknown parameter: {param}", code="parameter_unknown", param=param)


def missing_parameter(param: str) -> StripeError:
    return StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def exclusive_parameters(*params: str) -> StripeError:
    return StripeError(
        400,
        f"You may only specify one of these parameters: {', '.join(params)}.",
        code="parameters_exclusive",
        param=params[0],
    )


def empty_parameter(param: str) -> StripeError:
    return StripeError(
        400,
        f"You passed an empty string for '{param}'. We assume empty values are an attempt to unset a "
        f"parameter; however '{param}' cannot be unset. You should remove '{param}' from your request "
        "or supply a non-empty value.",
        code="parameter_invalid_empty",
        param=param,
    )


def no_such(kind: str, object_id: str, *, param: str | None, status: int = 400) -> StripeError:
    """A reference to an object that does not exist (404 when it is the URL's object, 400 as a param)."""
    return StripeError(status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def not_editable(message: str, *, param: str | None = None) -> StripeError:
    return StripeError(400, message, code="invoice_not_editable", param=param)


def unrecognized_url(method: str, path: str) -> StripeError:
    return StripeError(
        404,
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help "
        "at https://support.stripe.com/.",
    )


def redact_key(key: str) -> str:
    """Redact a key the way Stripe echoes it: keep the mode prefix and the last four characters."""
    prefix = ""
    for candidate in ("sk_test_", "sk_live_", "rk_test_", "rk_live_", "pk_test_", "pk_live_"):
        if key.startswith(candidate):
            prefix = candidate
            break
    hidden = max(len(key) - len(prefix) - 4, 0)
    return prefix + "*" * hidden + key[len(prefix) + hidden :]


def no_api_key() -> StripeError:
    return StripeError(
        401,
        "You did not provide an API key. You need to provide your API key in the Authorization header, "
        "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
        "https://stripe.com/docs/api#authentication for details, or we can help at "
        "https://support.stripe.com/.",
        headers={"WWW-Authenticate": 'Basic realm="Stripe"'},
    )


def invalid_api_key(key: str) -> StripeError:
    return StripeError(
        401,
        f"Invalid API Key provided: {redact_key(key)}",
        headers={"WWW-Authenticate": 'Basic realm="Stripe"'},
    )


def no_account_access(key: str, account: str) -> StripeError:
    return StripeError(
        403,
        f"The provided key '{redact_key(key)}' does not have access to account '{account}' (or that "
        "account does not exist). Application access may have been revoked.",
        code="account_invalid",
    )


def rate_limited(retry_after: int) -> StripeError:
    # Stripe does not ask SDKs to retry real rate limits (only lock timeouts), so no Stripe-Should-Retry.
    return StripeError(
        429,
        "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits.",
        code="rate_limit",
        headers={"Retry-After": str(retry_after)},
    )


def server_error(*, saved: bool) -> StripeError:
    """A 500; one saved under an idempotency key says retrying is pointless (the SDK honours that)."""
    return StripeError(
        500,
        "Sorry, something went wrong. We've already been notified of the problem, but if you need any "
        "help, you can reach us at https://support.stripe.com/contact.",
        type="api_error",
        headers={"Stripe-Should-Retry": "false" if saved else "true"},
    )


def idempotency_in_use(key: str) -> StripeError:
    return StripeError(
        409,
        "There is currently another in-progress request using this Idempotent Key (that probably means "
        f"you submitted twice, and the other request is still going through): {key}. Please try again "
        "later.",
        type="idempotency_error",
        code="idempotency_key_in_use",
    )


def idempotency_params_mismatch(key: str) -> StripeError:
    return StripeError(
        400,
        "Keys for idempotent requests can only be used with the same parameters they were first used "
        f"with. Try using a key other than '{key}' if you meant to execute a different request.",
        type="idempotency_error",
    )


def idempotency_endpoint_mismatch(key: str, first: str, now: str) -> StripeError:
    return StripeError(
        400,
        "Keys for idempotent requests can only be used for the same endpoint they were first used for "
        f"('{first}' vs '{now}'). Try using a key other than '{key}' if you meant to execute a different "
        "request.",
        type="idempotency_error",
    )


def idempotency_key_too_long(length: int) -> StripeError:
    return StripeError(
        400,
        f"Idempotency keys can be at most 255 characters long, but the provided key is {length} characters long.",
    )


def missing_permission(key: str, account: str, permission: str | None) -> StripeError:
    """A restricted key without the permission an endpoint needs (403, as Stripe words it).

    Wording from Stripe's answers quoted in https://github.com/stripe/stripe-node/issues/2246 (missing
    permission) and https://github.com/dj-stripe/dj-stripe/pull/1131 (GET /v1/account, which no
    restricted key may call).
    """
    head = (
        f"The provided key '{redact_key(key)}' does not have the required permissions for this endpoint "
        f"on account '{account}'."
    )
    if permission is None:
        tail = (
            "This is a restricted API key, but the required permissions are not available for use by restricted keys."
        )
    else:
        tail = f"Having the '{permission}' permission would allow this request to continue."
    return StripeError(403, f"{head} {tail}")


def invalid_api_version(version: str) -> StripeError:
    """An unknown ``Stripe-Version`` (400 "Invalid Stripe API version: ...", as in stripe/stripe-java#682)."""
    return StripeError(400, f"Invalid Stripe API version: {version}")
