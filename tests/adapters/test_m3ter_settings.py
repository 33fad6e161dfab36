"""The operator's m3ter rate-limit setting (M3STRIPE_M3TER_REQUESTS_PER_SECOND)."""

from __future__ import annotations

import pytest

from m3stripe.kube.config import OperatorConfig


def test_the_m3ter_budget_defaults_under_m3ters_50_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("M3STRIPE_M3TER_REQUESTS_PER_SECOND", raising=False)
    assert OperatorConfig.from_env().m3ter_requests_per_second == 40.0


def test_the_m3ter_budget_can_be_split_between_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M3STRIPE_M3TER_REQUESTS_PER_SECOND", "12.5")
    assert OperatorConfig.from_env().m3ter_requests_per_second == 12.5


@pytest.mark.parametrize("raw", ["0", "-3", "fast", "nan", "inf"])
def test_a_bad_m3ter_budget_stops_the_operator_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("M3STRIPE_M3TER_REQUESTS_PER_SECOND", raw)
    with pytest.raises(SystemExit, match="M3STRIPE_M3TER_REQUESTS_PER_SECOND: expected a positive number"):
        OperatorConfig.from_env()
