"""Shared fixtures: the local stack of emulators and the operator process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from m3stripe.testing.stack import LocalStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    from m3stripe.testing.stack import LocalStack

    with LocalStack(Path(tmp_path_factory.mktemp("stack"))) as s:
        yield s
        # Every request the operator (and the test's seeding) sent to Stripe must keep Stripe's contract
        # for the SDK's API version: names, nesting, enums and scalar types of the SDK's params types.
        violations = s.stripe_contract_violations()
        assert not violations, f"requests to the Stripe emulator broke Stripe's contract:\n{violations}"
