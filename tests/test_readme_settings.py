"""README's list of operator settings is the one the settings object renders, and every setting a document names
exists."""

from __future__ import annotations

import re
from pathlib import Path

from m3stripe.cli import SETTINGS_BEGIN, SETTINGS_END
from m3stripe.kube.config import settings_table, variables

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = ".venv/bin/m3stripe settings --markdown --update README.md"


def test_the_readmes_settings_table_is_the_one_the_settings_object_renders() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(SETTINGS_BEGIN) == 1 and readme.count(SETTINGS_END) == 1, "the settings markers are gone"
    table = readme.split(SETTINGS_BEGIN + "\n", 1)[1].split(SETTINGS_END, 1)[0]
    assert table == settings_table(), f"README.md's settings table is stale; regenerate it: {REGENERATE}"


def test_every_variable_the_operator_reads_is_in_the_readmes_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split(SETTINGS_BEGIN, 1)[1].split(SETTINGS_END, 1)[0]
    assert set(re.findall(r"^\| `([A-Z0-9_]+)` \|", table, re.MULTILINE)) == variables()


def test_every_setting_the_documents_and_manifests_name_exists() -> None:
    """A renamed or removed variable must not live on in a runbook, a manifest or the README's prose."""
    documents = [ROOT / "README.md", ROOT / "benchmarks" / "README.md"]
    documents += [p for p in (ROOT / "docs").rglob("*") if p.is_file()]
    documents += [p for p in (ROOT / "deploy").rglob("*") if p.is_file()]
    unknown = set()
    for path in documents:
        for name in re.findall(r"\bM3STRIPE_[A-Z0-9_]*", path.read_text(encoding="utf-8")):
            # `M3STRIPE_SMTP_*` and `M3STRIPE_LEASE_NAME`, `_NAMESPACE`, ...: a prefix names a group of settings.
            known = any(v.startswith(name) for v in variables()) if name.endswith("_") else name in variables()
            if not known:
                unknown.add(f"{path.relative_to(ROOT)}: {name}")
    assert not unknown, sorted(unknown)
