"""The package's architecture: the import-linter contracts of pyproject.toml hold, and each of them bites.

`lint-imports` (.ci/run runs it) reads every import of the package: relative ones, lazy ones inside functions and
those under TYPE_CHECKING. Each contract is shown to fail on one import against it, added to a copy of the
package. The one rule about text rather than imports is checked here directly.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "operator" / "m3stripe"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _contract_ids() -> list[str]:
    return [contract["id"] for contract in _pyproject()["tool"]["importlinter"]["contracts"]]


def _copy(tmp_path: Path) -> Path:
    """A copy of the package and of the contracts, importable from ``tmp_path`` only."""
    shutil.copytree(PACKAGE, tmp_path / "m3stripe", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path / "m3stripe"


def _lint(where: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    # lint-imports reads ./pyproject.toml and finds the package on the path: the copy comes before the installed one.
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *(f"--contract={contract}" for contract in contracts)],
        cwd=where,
        env={**os.environ, "PYTHONPATH": str(where), "NO_COLOR": "1", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_every_contract(tmp_path: Path) -> None:
    _copy(tmp_path)
    result = _lint(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(_contract_ids())} kept, 0 broken." in result.stdout


# (contract, module of the package, code added to it, what the report must name). Each is one import against
# one contract; several are relative, lazy or under TYPE_CHECKING, which must count like any other import.
VIOLATIONS = [
    ("layers", "domain/billing.py", "def _late():\n    from ..adapters import kube_api\n", "m3stripe.domain.billing"),
    (
        "layers",
        "api/names.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from m3stripe.domain import runs\n",
        "m3stripe.api.names",
    ),
    ("layers", "metrics.py", "from m3stripe.kube import config\n", "m3stripe.metrics"),
    ("layers", "adapters/kube_api.py", "from m3stripe import metrics\n", "m3stripe.adapters.kube_api"),
    ("layers", "newcomer.py", "", "m3stripe.newcomer"),  # a top-level module without its place in the layers
    ("ctl", "ctl/views.py", "from m3stripe.adapters import kube_api\n", "m3stripe.ctl.views"),
    ("ctl", "ctl/render.py", "def _late():\n    from .. import metrics\n", "m3stripe.ctl.render"),
    ("no-emulators", "kube/config.py", "from m3stripe.testing import stack\n", "m3stripe.kube.config"),
    (
        "no-emulators",
        "adapters/mailer.py",
        "def _late():\n    from ..testing import smtp\n",
        "m3stripe.adapters.mailer",
    ),
    ("testing-extra", "cli.py", "import kmock\n", "m3stripe.cli"),
    ("testing-extra", "kube/handlers.py", "def _late():\n    import jsonpatch\n", "m3stripe.kube.handlers"),
    (
        "emulators-api-only",
        "testing/m3ter_emulator/state.py",
        "from m3stripe.domain.billing import LINE_ITEM_TYPES as _TYPES\n",
        "m3stripe.testing.m3ter_emulator.state",
    ),
    (
        "emulators-api-only",
        "testing/crd_validation.py",
        "from ..domain.spec_validation import SpecProblem\n",
        "m3stripe.testing.crd_validation",
    ),
    ("adapters-independent", "adapters/mailer.py", "from . import stripe_gateway\n", "m3stripe.adapters.mailer"),
    (
        "adapters-independent",
        "adapters/m3ter_scan.py",
        "from . import stripe_gateway\n",
        "m3stripe.adapters.m3ter_scan",
    ),
    (
        "adapters-independent",
        "adapters/stripe_ledger.py",
        "def _late():\n    from m3stripe.adapters import m3ter_token\n",
        "m3stripe.adapters.stripe_ledger",
    ),
    (
        "m3ter-adapter",
        "adapters/m3ter_scan.py",
        "from .m3ter_client import search_page\n",
        "m3stripe.adapters.m3ter_scan",
    ),
    (
        "m3ter-adapter",
        "adapters/m3ter_models.py",
        "def _late():\n    from m3stripe.adapters import m3ter_source\n",
        "m3stripe.adapters.m3ter_models",
    ),
    ("sdk-stripe-m3ter", "kube/worker.py", "import stripe\n", "m3stripe.kube.worker"),
    ("sdk-stripe-m3ter", "domain/money.py", "def _late():\n    import m3ter.types\n", "m3stripe.domain.money"),
    ("sdk-kubernetes", "kube/worker.py", "from kubernetes import client\n", "m3stripe.kube.worker"),
    ("sdk-kopf", "adapters/kube_api.py", "import kopf\n", "m3stripe.adapters.kube_api"),
    ("sdk-kopf", "ctl/commands.py", "def _late():\n    import kopf\n", "m3stripe.ctl.commands"),
    ("domain-pure", "domain/money.py", "import socket\n", "m3stripe.domain.money"),
    ("domain-pure", "domain/runs.py", "def _late():\n    import aiohttp\n", "m3stripe.domain.runs"),
    ("domain-pure", "domain/sweep.py", "import prometheus_client\n", "m3stripe.domain.sweep"),
    ("acyclic", "domain/billing.py", "def _late():\n    from . import ports\n", "m3stripe.domain"),
    ("acyclic", "kube/config.py", "def _late():\n    from m3stripe.kube import worker\n", "m3stripe.kube"),
]


def test_every_contract_is_shown_to_bite() -> None:
    assert {contract for contract, *_ in VIOLATIONS} == set(_contract_ids())


@pytest.mark.parametrize(
    ("contract", "module", "code", "named"),
    VIOLATIONS,
    ids=[f"{contract}:{module}" for contract, module, *_ in VIOLATIONS],
)
def test_an_import_against_a_contract_breaks_it(
    tmp_path: Path, contract: str, module: str, code: str, named: str
) -> None:
    path = _copy(tmp_path) / module
    path.write_text((path.read_text(encoding="utf-8") if path.exists() else "") + "\n" + code, encoding="utf-8")
    result = _lint(tmp_path, contract)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 1 broken." in result.stdout, result.stdout
    assert named in result.stdout.split("Broken contracts")[1], result.stdout


def test_the_testing_extra_contract_names_every_package_of_the_testing_extra() -> None:
    project = _pyproject()
    [contract] = [c for c in project["tool"]["importlinter"]["contracts"] if c["id"] == "testing-extra"]
    extra = {
        re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower()
        for r in project["project"]["optional-dependencies"]["testing"]
    }
    assert set(contract["forbidden_modules"]) == extra


def test_the_domain_names_the_adapters_only_in_the_ports_documentation() -> None:
    # About text, not imports, so no import contract can say it: the domain's modules (docstrings and comments
    # included) do not even mention the adapters, except ports.py, which says which adapter implements each port.
    for path in sorted((PACKAGE / "domain").rglob("*.py")):
        if path.name != "ports.py":
            assert "adapters" not in path.read_text(encoding="utf-8"), f"{path.relative_to(PACKAGE)} mentions adapters"
