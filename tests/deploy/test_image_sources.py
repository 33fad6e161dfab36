"""The image recipe builds from the repository alone: the files its build stage copies are enough to build
the package and its `m3stripe` command (the part of `docker build` that can run without a Docker engine)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
