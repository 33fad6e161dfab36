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
