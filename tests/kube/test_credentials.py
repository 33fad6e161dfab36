"""The reasons a credential check gives are the ones people and health checks are told about."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKS = [
    ROOT / "operator/m3stripe/kube/credentials.py",
    ROOT / "operator/m3stripe/kube/source.py",
    ROOT / "operator/m3stripe/adapters/stripe_client.py",
]
# Argo CD's and Flux's health checks list the reasons that are transient (Progressing, not Degraded).
HEALTH = [
    ROOT / "deploy/argocd/health.lua",
    ROOT / "deploy/argocd/argocd-cm-patch.yaml",
    ROOT / "deploy/flux/m3stripe.yaml",
]


def _reasons() -> list[tuple[str, bool]]:
    """(reason, retryable) of every failed CredentialCheck the operator builds."""
    found = []
    for path in CHECKS:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "CredentialCheck"):
                continue
            args = node.args
            if len(args) >= 2 and isinstance(args[0], ast.Constant) and args[0].value is False:
                assert isinstance(args[1], ast.Constant), f"{path.name}:{node.lineno}: reason is not a literal"
                retryable = any(
                    k.arg == "retryable" and isinstance(k.value, ast.Constant) and k.value.value for k in node.keywords
                )
                found.append((str(args[1].value), retryable))
    return sorted(set(found))


REASONS = _reasons()


def _troubleshooting() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme[readme.index("## Troubleshooting") : readme.index("## Deploy")]


def test_the_checks_give_reasons_at_all() -> None:
    assert len(REASONS) >= 15


@pytest.mark.parametrize("reason", sorted({r for r, _ in REASONS}))
def test_every_reason_a_check_gives_is_explained_in_the_readmes_troubleshooting(reason: str) -> None:
    assert f"`{reason}`" in _troubleshooting(), f"README's Troubleshooting does not explain {reason}"


@pytest.mark.parametrize("reason", sorted({r for r, retryable in REASONS if retryable}))
def test_every_transient_reason_is_progressing_for_argo_cd_and_flux(reason: str) -> None:
    for path in HEALTH:
        assert reason in path.read_text(), f"{path.relative_to(ROOT)} does not treat {reason} as transient"
