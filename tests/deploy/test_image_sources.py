"""The image recipe builds from the repository alone: the files its build stage copies are enough to build
the package and its `m3stripe` command (the part of `docker build` that can run without a Docker engine).
The image carries only what the operator runs on: the emulators' dependencies are the `testing` extra."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTING_EXTRA = ("kmock", "jsonpatch", "aiosmtpd")

# Run before anything else in a child interpreter: kmock and aiosmtpd import as if not installed, as in the
# image. jsonpatch stays importable: kopf requires it, so the image has it (the import contract `testing-extra`
# in pyproject.toml covers our code).
_BLOCK_TESTING_EXTRA = """
import sys

class _NotInstalled:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in ("kmock", "aiosmtpd"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled)
"""


def _without_testing_extra(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_TESTING_EXTRA + code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def _copied_sources() -> list[str]:
    build_stage = (ROOT / "Dockerfile").read_text(encoding="utf-8").split("FROM ")[1]
    sources: list[str] = []
    for match in re.finditer(r"^COPY (?!--from)(.+)$", build_stage, flags=re.MULTILINE):
        *srcs, _dest = match.group(1).split()
        sources.extend(srcs)
    return sources


def test_the_build_stage_copies_suffice_to_build_the_package(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    sources = _copied_sources()
    assert {"pyproject.toml", "README.md", "operator"} <= set(sources)
    for src in sources:
        path = ROOT / src
        if path.is_dir():
            shutil.copytree(path, context / src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, context / src)
    out = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(out),
            str(context),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = out.glob("m3ter_stripe_operator-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "m3stripe = m3stripe.cli:main" in archive.read(entry_points).decode()
    assert "m3stripe/kube/handlers.py" in names and "m3stripe/testing/stack.py" in names
    assert not any(n.startswith("operator/") for n in names), "`operator` must never be importable"


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def test_the_emulators_dependencies_are_the_testing_extra_not_core_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    testing = {_requirement_name(r) for r in project["optional-dependencies"]["testing"]}
    assert not core & set(TESTING_EXTRA)
    assert set(TESTING_EXTRA) <= testing


def test_the_image_installs_the_core_package_without_extras() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    installs = re.findall(r"pip install ([^&\n]*)", dockerfile)
    assert installs, "the Dockerfile installs the package with pip"
    for install in installs:
        assert "[" not in install, f"the image installs an extra: pip install {install}"
        assert "." in install.split(), f"the image installs the package from its sources: pip install {install}"


def test_the_operator_and_the_day2_commands_import_without_the_testing_extra() -> None:
    # Every module but the emulators and the demo: what `m3stripe run` and `kubectl m3stripe` may reach.
    result = _without_testing_extra(
        """
import importlib, pkgutil
import m3stripe, m3stripe.cli, m3stripe.kube.handlers, m3stripe.ctl.commands
for module in pkgutil.walk_packages(m3stripe.__path__, "m3stripe."):
    if not module.name.startswith(("m3stripe.testing", "m3stripe.demo", "m3stripe.__main__")):
        importlib.import_module(module.name)
try:
    import kmock
except ModuleNotFoundError:
    print("imported, with kmock blocked")
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported, with kmock blocked"


def test_the_demo_without_the_testing_extra_says_which_extra_to_install() -> None:
    result = _without_testing_extra("from m3stripe.cli import main\nsys.exit(main(['demo']))")
    assert result.returncode == 2, result.stderr
    assert "the demo needs the emulators' dependencies: pip install 'm3ter-stripe-operator[testing]'" in result.stderr
    assert "Traceback" not in result.stderr
