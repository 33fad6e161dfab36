"""The worker's world (tests.support.kube_world), as `world` and, for the tests of several integrations, `w`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.kube_world import KubeWorld, open_kube_world


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[KubeWorld]:
    async with open_kube_world(tmp_path) as opened:
        yield opened


@pytest.fixture
def w(world: KubeWorld) -> KubeWorld:
    return world
