"""The package's layers: dependencies point one way, and only the adapters call the vendors' clients.

Read from the source (every import, also inside functions and under TYPE_CHECKING), so a lazy import cannot
hide a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "operator" / "m3stripe"

# What each layer may import from the package. `ctl` is a separate program (the day-2 commands in a person's
# shell) and `testing` holds the emulators: neither is imported by the operator.
ALLOWED = {
    "api": {"api"},
    "domain": {"api", "domain"},
    "adapters": {"api", "domain", "adapters"},
    "kube": {"api", "domain", "adapters", "kube", "metrics"},
    "metrics": {"api", "domain"},
    "ctl": {"api", "domain", "ctl"},
}
VENDOR_CLIENTS = {"stripe", "m3ter", "kubernetes", "kopf"}
# Who may call which vendor client. The CLI reads the cluster with the official client of the person's
# kubeconfig (ctl/cluster.py); kopf is the operator's framework, wired in kube/handlers.py only.
VENDOR_USERS = {
    "stripe": {"adapters"},
    "m3ter": {"adapters"},
    "kubernetes": {"adapters", "ctl"},
    "kopf": {"kube"},
}
IO_LIBRARIES = {"aiohttp", "httpx", "requests", "smtplib", "socket", "prometheus_client", "kmock", "aiosmtpd"}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield ".".join(("m3stripe", *parts)).removesuffix(".__init__"), path


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


LAYERED = [(module, path) for module, path in _modules() if _layer(module) in ALLOWED]


@pytest.mark.parametrize(("module", "path"), LAYERED, ids=[module for module, _ in LAYERED])
def test_each_module_imports_only_the_layers_below_it(module: str, path: Path) -> None:
    layer = _layer(module)
    wrong = sorted(
        name for name in _imports(path) if name.startswith("m3stripe.") and _layer(name) not in ALLOWED[layer] | {layer}
    )
    assert not wrong, f"{module} ({layer}) imports {wrong}; {layer} may import only {sorted(ALLOWED[layer])}"


@pytest.mark.parametrize(("module", "path"), LAYERED, ids=[module for module, _ in LAYERED])
def test_only_the_adapters_call_the_vendors_clients(module: str, path: Path) -> None:
    layer = _layer(module)
    wrong = sorted(
        name
        for name in _imports(path)
        if name.split(".")[0] in VENDOR_CLIENTS and layer not in VENDOR_USERS[name.split(".")[0]]
    )
    assert not wrong, f"{module} imports the vendor client(s) {wrong}; go through a port the domain owns"


def test_the_domain_does_no_io_and_names_adapters_only_in_the_ports_documentation() -> None:
    for module, path in _modules():
        if _layer(module) != "domain":
            continue
        io = sorted(name for name in _imports(path) if name.split(".")[0] in IO_LIBRARIES)
        assert not io, f"{module} imports {io}: the domain is pure rules"
        if not module.endswith(".ports"):
            assert "adapters" not in path.read_text(), f"{module} mentions the adapters"


def test_no_two_modules_of_the_package_import_each_other_even_indirectly() -> None:
    graph = {module: {name for name in _imports(path) if name.startswith("m3stripe.")} for module, path in _modules()}
    known = set(graph)
    for module in graph:  # `from m3stripe.api import names` names a module through its package
        graph[module] = {name if name in known else name.rsplit(".", 1)[0] for name in graph[module]}
    seen: set[str] = set()
    stack: list[str] = []

    def visit(module: str) -> None:
        if module in stack:
            cycle = [*stack[stack.index(module) :], module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in seen:
            return
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target != module and not module.startswith(target + "."):
                visit(target)
        stack.pop()
        seen.add(module)

    for module in sorted(graph):
        visit(module)
