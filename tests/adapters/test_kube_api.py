"""The Kubernetes API client the operator builds: what KUBECONFIG points at, with room for many integrations."""

from __future__ import annotations

from pathlib import Path

import pytest

from m3stripe.adapters.kube_api import API_CONNECTIONS, load_api_client

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def test_the_client_keeps_enough_connections_for_many_integrations_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config"
    path.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(path))
    api = load_api_client()
    try:
        assert api.configuration.host == "http://127.0.0.1:1"
        assert api.configuration.connection_pool_maxsize == API_CONNECTIONS
        assert api.rest_client.pool_manager.connection_pool_kw["maxsize"] == API_CONNECTIONS
    finally:
        api.close()
