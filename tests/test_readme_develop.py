"""README's "Develop" section describes the package as it is: every module it names exists, and the one module
of the operator over 600 lines is the one its note names."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "operator" / "m3stripe"
MAX_LINES = 600


def _develop() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("\n## Develop\n", 1)[1].split("\n## ", 1)[0]


def test_every_module_the_develop_section_names_exists() -> None:
    text = _develop()
    named = set(re.findall(r"(?<![\w./-])((?:[a-z0-9_]+/)*[a-z0-9_]+(?:\.py|/))(?![\w])", text))
    assert {"adapters/", "domain/", "m3ter_scan.py", "adapters/m3ter_client.py"} <= named  # the pattern finds them
    missing = []
    for name in sorted(named):
        top = name.split("/", 1)[0]
        if top in ("tests", "docs", "benchmarks", "operator"):
            found = (ROOT / name).exists()
        elif "/" in name:
            found = (PACKAGE / name).exists()
        else:  # a module named without its package (the drawing), or a test module at the top of tests/
            found = any(PACKAGE.rglob(name)) or (ROOT / "tests" / name).exists()
        if not found:
            missing.append(name)
    assert not missing, f"README's Develop section names what does not exist: {missing}"


def test_no_module_of_the_operator_is_over_600_lines_but_those_the_note_names() -> None:
    note = _develop().split("No module of the operator is over 600 lines but", 1)[1].split("\n\n", 1)[0]
    excused = {name for name in re.findall(r"`([a-z0-9_/]+\.py)`", note) if (PACKAGE / name).is_file()}
    long = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] != "testing"
        and len(path.read_text(encoding="utf-8").splitlines()) > MAX_LINES
    }
    assert long == excused, f"over {MAX_LINES} lines: {sorted(long)}; the README's note excuses {sorted(excused)}"
