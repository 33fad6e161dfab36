"""The m3ter emulator with the adapters' Service User, and an M3terSource reading from it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.testing.m3ter_emulator import M3terEmulator
from tests.adapters.service_user import CREDS, ORG
from tests.support.world import m3ter_source


@pytest.fixture
def m3ter_options() -> dict[str, int]:
    """The emulator's token lifetime (m3ter's default, 5 hours) and the source's retries (none); a module may
    say otherwise."""
    return {"token_ttl_seconds": 18000, "max_retries": 0}


@pytest.fixture
async def emulator(m3ter_options: dict[str, int]) -> AsyncIterator[M3terEmulator]:
    async with M3terEmulator() as running:
        running.add_client(CREDS.client_id, CREDS.client_secret, ORG, m3ter_options["token_ttl_seconds"])
        yield running


@pytest.fixture
async def source(emulator: M3terEmulator, m3ter_options: dict[str, int]) -> AsyncIterator[M3terSource]:
    async with m3ter_source(CREDS, emulator.url, max_retries=m3ter_options["max_retries"]) as created:
        yield created
