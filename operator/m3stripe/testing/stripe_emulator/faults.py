"""Scripted and random faults: the network and server failures an integration must survive."""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass


class Fault(enum.Enum):
    """What goes wrong with a request.

    ``SERVER_ERROR`` answers 500 ``api_error`` before the endpoint runs: nothing is written and
    nothing is saved under the idempotency key, so a retry with the same key runs for real.
    ``SERVER_ERROR_SAVED`` is the other documented case, a 500 after execution began: nothing is
    written, but the 500 is saved and replayed to every retry with the same key.
    ``RATE_LIMIT`` answers 429 ``rate_limit`` (never saved under the key).
    ``TIMEOUT`` holds the request for ``delay_seconds`` with its idempotency key in flight, then
    performs the write and answers if the client is still there (the write happens either way).
    ``DROP_BEFORE_WRITE`` closes the connection without doing anything.
    ``DROP_AFTER_WRITE`` performs the write, saves the result under the key, then closes the
    connection without answering: the client sees a network error and a retry gets the replay.
    """

    SERVER_ERROR = "server_error"
    SERVER_ERROR_SAVED = "server_error_saved"
    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    DROP_BEFORE_WRITE = "drop_before_write"
    DROP_AFTER_WRITE = "drop_after_write"


DEFAULT_TIMEOUT_SECONDS = 5.0


@dataclass
class FaultRule:
    fault: Fault
    method: str | None = None
    path_prefix: str | None = None
    account: str | None = None
    remaining: int | None = 1
    delay_seconds: float = DEFAULT_TIMEOUT_SECONDS

    def matches(self, method: str, path: str, account: str) -> bool:
        return (
            (self.method is None or self.method == method)
            and (self.path_prefix is None or path.startswith(self.path_prefix))
            and (self.account is None or self.account == account)
        )


@dataclass
class RandomFaults:
    probabilities: dict[Fault, float]
    rng: random.Random
    method: str | None = None
    path_prefix: str | None = None
    delay_seconds: float = DEFAULT_TIMEOUT_SECONDS


@dataclass(frozen=True)
class Triggered:
    fault: Fault
    delay_seconds: float


class FaultPlan:
    """Scripted rules first (in the order injected), then the random chaos table."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self.chaos: RandomFaults | None = None
        self.fired: dict[Fault, int] = {}

    def add(self, rule: FaultRule) -> None:
        if rule.remaining is not None and rule.remaining < 1:
            raise ValueError("times must be at least 1 (or None for every matching request)")
        self.rules.append(rule)

    def set_random(
        self,
        probabilities: Mapping[Fault, float],
        *,
        seed: int | None,
        method: str | None,
        path_prefix: str | None,
        delay_seconds: float,
    ) -> None:
        total = sum(probabilities.values())
        if any(p < 0 for p in probabilities.values()) or total > 1:
            raise ValueError("fault probabilities must be non-negative and add up to at most 1")
        self.chaos = RandomFaults(dict(probabilities), random.Random(seed), method, path_prefix, delay_seconds)

    def clear(self) -> None:
        self.rules.clear()
        self.chaos = None

    def pick(self, method: str, path: str, account: str) -> Triggered | None:
        for rule in self.rules:
            if rule.matches(method, path, account):
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self.rules.remove(rule)
                return self._fire(rule.fault, rule.delay_seconds)
        chaos = self.chaos
        if chaos is None:
            return None
        if (chaos.method is not None and chaos.method != method) or (
            chaos.path_prefix is not None and not path.startswith(chaos.path_prefix)
        ):
            return None
        draw = chaos.rng.random()
        for fault, probability in chaos.probabilities.items():
            if draw < probability:
                return self._fire(fault, chaos.delay_seconds)
            draw -= probability
        return None

    def _fire(self, fault: Fault, delay: float) -> Triggered:
        self.fired[fault] = self.fired.get(fault, 0) + 1
        return Triggered(fault, delay)
