"""Idempotency keys as https://docs.stripe.com/api/idempotent_requests describes them.

A key (scoped to one account and mode) saves the status and body of the first request whose
endpoint began executing, including a 500 raised after that point; later requests with the key get
that response back with ``Idempotent-Replayed: true``, or an ``idempotency_error`` when they are for
another endpoint or other parameters. Requests that fail validation, authentication or rate
limiting, or that an injected fault refuses before the endpoint (faults.py), are not saved. A write
refused for a lock another write holds saves that 429 by default (locks.py). The key is claimed as
its request arrives (app.py), so one that arrives while the first is still in flight, its latency
included, gets a 409.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import (
    idempotency_endpoint_mismatch,
    idempotency_in_use,
    idempotency_key_too_long,
    idempotency_params_mismatch,
)

MAX_KEY_LENGTH = 255
KEY_TTL_SECONDS = 24 * 3600


def fingerprint(params: Any) -> str:
    """Parameters compared as decoded data, so field order in the form body does not matter."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


@dataclass
class Saved:
    endpoint: str
    params: str
    status: int
    body: bytes
    headers: dict[str, str]
    request_id: str
    created: float


@dataclass
class InFlight:
    endpoint: str
    params: str


class IdempotencyStore:
    """Saved results and in-flight markers of one account's keys."""

    def __init__(self) -> None:
        self.saved: dict[str, Saved] = {}
        self.in_flight: dict[str, InFlight] = {}

    def begin(self, key: str, endpoint: str, params: str, now: float) -> Saved | None:
        """Claim ``key`` for a new request, or return the response to replay; raises on misuse."""
        if len(key) > MAX_KEY_LENGTH:
            raise idempotency_key_too_long(len(key))
        if key in self.in_flight:
            raise idempotency_in_use(key)
        saved = self.saved.get(key)
        if saved is not None and now - saved.created > KEY_TTL_SECONDS:
            # Keys are pruned after 24 hours; a reused key then starts a new request.
            del self.saved[key]
            saved = None
        if saved is not None:
            if saved.endpoint != endpoint:
                raise idempotency_endpoint_mismatch(key, saved.endpoint, endpoint)
            if saved.params != params:
                raise idempotency_params_mismatch(key)
            return saved
        self.in_flight[key] = InFlight(endpoint, params)
        return None

    def release(self, key: str) -> None:
        """Forget an in-flight claim whose request ended without a saved result."""
        self.in_flight.pop(key, None)

    def save(self, key: str, *, status: int, body: bytes, headers: dict[str, str], request_id: str, now: float) -> None:
        claim = self.in_flight.pop(key, None)
        if claim is None:
            return
        self.saved[key] = Saved(claim.endpoint, claim.params, status, body, headers, request_id, now)
