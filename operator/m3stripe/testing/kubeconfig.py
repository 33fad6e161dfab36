"""Write a kubeconfig that points at an emulator, as a real cluster's would."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_kubeconfig(path: Path, server_url: str, *, namespace: str = "default") -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server_url.rstrip("/")}}],
        "users": [{"name": "emulator", "user": {"token": "emulator-token"}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
            }
        ],
        "current-context": "emulator",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
