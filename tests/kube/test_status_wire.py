"""The status the worker writes, patch for patch: the JSON merge patches of a scenario that goes through every part
of the status (runs, open events, resolve, a plan, auto-disable and its email, re-enable, the account selection, a
progress that starts over after a restart, a field of a newer operator) are those in
`fixtures/status_patches.json`, recorded from the operator as it was when it built its status as dicts (before
issue 20's typed status): the same field names, the same fields left out, the same explicit nulls.

Volatile values (times; run, Bill, Account, event and Stripe ids; digests) are named by their first appearance, and
keys are compared sorted (JSON objects have no order). To record the file anew after an intended change of what the
operator writes: M3STRIPE_RECORD_STATUS_PATCHES=1, then review the diff.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from m3stripe.api import names
from m3stripe.domain import sync_pass
from m3stripe.kube.worker import IntegrationWorker
from tests.support.kube_world import NAME, NS, KubeWorld

GOLDEN = Path(__file__).parent / "fixtures" / "status_patches.json"
_VOLATILE = [
    ("time", re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")),
    ("run", re.compile(r"run-\d{8}T\d{6}Z-[0-9a-f]{6}")),
    ("event", re.compile(r"evt-[0-9a-f]{12}")),
    ("scope", re.compile(r"[0-9a-f]{12}\.(test|live)\.([0-9a-f]{12}|-)")),
    ("id", re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")),
    ("stripe", re.compile(r"\b(in|ii|cus|acct)_[A-Za-z0-9]+")),
]


def _named(value: Any, seen: dict[str, str]) -> Any:
    """`value` with every volatile string part replaced by a name given at its first appearance."""
    if isinstance(value, dict):
        return {k: _named(v, seen) for k, v in value.items()}
    if isinstance(value, list):
        return [_named(v, seen) for v in value]
    if not isinstance(value, str):
        return value
    for kind, pattern in _VOLATILE:

        def name(match: re.Match[str], kind: str = kind) -> str:
            if kind == "time":
                return "<time>"
            return seen.setdefault(match.group(0), f"<{kind}-{sum(n.startswith(f'<{kind}-') for n in seen.values())}>")

        value = pattern.sub(name, value)
    return value


async def _next_second() -> None:
    """Until the clock's next whole second: a pass's watermark is its start in whole seconds, so two passes within
    one second would leave it unchanged (and the patch without it) depending on how fast they ran."""
    await asyncio.sleep(1.0 - time.time() % 1.0)


async def _scenario(w: KubeWorld, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every status patch the worker sends in the scenario, in order."""
    patches: list[dict[str, Any]] = []
    send = w.runtime.kube.patch_status

    async def recorded(namespace: str, name: str, status: dict[str, Any], **kwargs: Any) -> None:
        patches.append(copy.deepcopy(status))
        await send(namespace, name, status, **kwargs)

    monkeypatch.setattr(w.runtime.kube, "patch_status", recorded)
    # No checkpoint in the middle of a pass: when one falls depends on timing (test_progress checks its JSON).
    monkeypatch.setattr(sync_pass, "CHECKPOINT_SECONDS", 3600.0)
    # Last modified well before the first pass: later passes re-read only the Bill owed a retry, so what a pass
    # that stops early (the error budget spent) met before it stopped does not depend on timing.
    w.m3ter_lag[0] = timedelta(minutes=10)
    mapped, unmapped = w.m3ter_account("mapped"), w.m3ter_account("unmapped")
    await w.customer_for(mapped)
    w.bill(mapped, "10.00")
    w.bill(unmapped, "5.00")
    w.m3ter_lag[0] = timedelta(0)
    await w.create_integration(
        accountIds=[mapped, unmapped], integrationDisabledNotificationUsers=["billing-oncall@example.com"]
    )
    await w.reconcile()  # connected; the Accounts counted; a first pass: one Bill sent, one error event
    await _next_second()
    await w.run_now()  # the event again (count 2)
    await w.annotate(names.ANNOTATION_RESOLVE, "all #1")
    await w.reconcile()
    await w.patch_spec(mode="Plan")
    await w.reconcile()  # a plan
    await w.patch_spec(mode="Send", autoDisableThreshold=1)
    await _next_second()
    await w.run_now()  # the error again: disabled, and no SMTP server to email
    await w.annotate(names.ANNOTATION_REENABLE, "1")
    await w.reconcile()
    # A restart on a status restored from an older operator's backup (the scope under its former name, `ledger`)
    # with progress made for another Organization, and a newer operator's field.
    restored = {
        "status": {
            "sync": {"scope": None, "ledger": "000000000000.test.-"},
            "fieldOfANewerOperator": {"kept": True},
        }
    }
    resource = (names.GROUP, names.VERSION, NS, names.PLURAL)
    await asyncio.to_thread(w.custom.patch_namespaced_custom_object_status, *resource, NAME, restored)
    assert w.worker is not None
    w.worker = IntegrationWorker(w.worker.integration)
    await _next_second()
    await w.run_now()  # starts over: the old watermark and sweep nulled
    return patches


async def test_the_status_patches_are_those_of_the_dict_based_operator_field_for_field(
    world: KubeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, str] = {}
    patches = [_named(p, seen) for p in await _scenario(world, monkeypatch)]
    written = json.dumps(patches, indent=1, sort_keys=True) + "\n"
    if os.environ.get("M3STRIPE_RECORD_STATUS_PATCHES"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(written, encoding="utf-8")
    assert written == GOLDEN.read_text(encoding="utf-8")
    assert world.reasons().count("SyncProgressReset") == 1 and "AutoDisabled" in world.reasons()
