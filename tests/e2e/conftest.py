"""Fixtures of the modules that give each test its own m3ter organization: they read the module's Stripe `KEY`."""

from __future__ import annotations

from typing import Any

import pytest

from m3stripe.testing.stack import LocalStack
from tests.support.stack_world import Org


@pytest.fixture(scope="module")
def stripe(stack: LocalStack, request: pytest.FixtureRequest) -> Any:
    """The stripe SDK with the module's KEY."""
    return stack.stripe_client(request.module.KEY)


@pytest.fixture
def org(stack: LocalStack, request: pytest.FixtureRequest) -> Org:
    """This test's own m3ter organization and namespace (named after the module), with the module's KEY."""
    return Org(stack, request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"), request.module.KEY)
