"""Idempotency keys: the same write reuses its key; any change of input gets a new one."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from m3stripe.domain.idempotency_keys import MAX_KEY, idempotency_key

BASE: dict[str, Any] = {
    "organization_id": "org-1",
    "bill_id": "bill-1",
    "version": 3,
    "step": "invoice",
    "params": {"customer": "cus_1", "lines": [1, 2]},
}


def key(**changes: Any) -> str:
    args = {**BASE, **changes}
    return idempotency_key(args["organization_id"], args["bill_id"], args["version"], args["step"], args["params"])


def test_deterministic() -> None:
    assert key() == key()
    assert key().startswith("m3stripe-invoice-")


def test_dict_order_of_params_does_not_matter() -> None:
    assert key(params={"a": 1, "b": {"x": 1, "y": 2}}) == key(params={"b": {"y": 2, "x": 1}, "a": 1})


@pytest.mark.parametrize(
    "change",
    [
        {"organization_id": "org-2"},
        {"bill_id": "bill-2"},
        {"version": 4},
        {"step": "lines"},
        {"params": {"customer": "cus_1", "lines": [1]}},
        {"params": {"customer": "cus_1", "lines": [2, 1]}},
        {"params": None},
    ],
)
def test_any_input_change_changes_the_key(change: dict[str, Any]) -> None:
    assert key(**change) != key()


def test_non_json_params_are_accepted() -> None:
    assert key(params={"amount": Decimal("1.10")}) != key(params={"amount": Decimal("1.1")})


def test_at_most_255_characters() -> None:
    for step in ("invoice", "item-" + "l" * 36, "x" * 1000):
        k = key(step=step)
        assert len(k) <= MAX_KEY == 255


def test_long_step_still_distinguishes_bills() -> None:
    step = "item-" + "l" * 300  # e.g. an unusually long m3ter line id
    assert key(step=step, bill_id="bill-1") != key(step=step, bill_id="bill-2")
