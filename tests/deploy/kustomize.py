"""The manifests as a cluster gets them: `kubectl kustomize` (the real kustomize) of a tree, and the Kubernetes versions
the rendered objects are validated against."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

# Oldest Kubernetes minor still supported by the manifests, and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.30", "latest")


def kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with built-in kustomize) is not installed: the manifests cannot be rendered")
    return kubectl


def kustomize_build(path: Path) -> list[dict[str, Any]]:
    proc = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    # Deprecation notices ("commonLabels is deprecated", ...) count as not clean.
    assert proc.stderr.strip() == "", proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
