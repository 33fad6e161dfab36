"""Prometheus' own programs (Debian's prometheus package ships both): found, or the test skipped (failed under CI,
whose .ci/run installs them)."""

from __future__ import annotations

import os

import pytest

from m3stripe.testing.prometheus import find_binary


def prometheus_tool(name: str) -> str:
    """The path of `prometheus` or `promtool`."""
    binary = find_binary(name)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: .ci/run installs Debian's prometheus package")
        pytest.skip(f"{name} is not installed (Debian: apt-get install prometheus)")
    return binary
