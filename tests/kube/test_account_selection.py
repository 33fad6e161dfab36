"""An account selection that keeps no Account of the Organization is a visible condition, not a healthy silence."""

from __future__ import annotations

import asyncio

from tests.support.kube_world import ORG, KubeWorld
from tests.support.status import condition


def accounts(w: KubeWorld, *countries: str) -> list[str]:
    return [
        w.m3ter.add_account(ORG, name=f"{c}{i}", code=f"{c.lower()}{i}", currency="USD", address={"country": c})
        for i, c in enumerate(countries)
    ]


async def test_a_filter_that_matches_no_account_of_the_organization_says_so_in_a_condition_and_an_event(
    w: KubeWorld,
) -> None:
    accounts(w, "UK", "UK", "US")
    uk = await w.apply("uk", accountFilter='address.country == "United Kingdom"')
    status = await uk.reconcile()
    selected = condition(status, "AccountsSelected")
    assert (selected["status"], selected["reason"]) == ("False", "NoAccountSelected")
    assert "spec.accountFilter 'address.country == \"United Kingdom\"'" in selected["message"]
    assert "none of the Organization's 3 Account(s)" in selected["message"]
    assert status["accountSelection"]["accounts"] == 3 and status["accountSelection"]["selected"] == 0
    assert condition(status, "Ready")["status"] == "True"  # healthy otherwise, and now visibly sending nothing
    assert uk.reasons().count("NoAccountSelected") == 1
    status = await uk.run_now()  # counted once per generation (and daily): no second event
    assert uk.reasons().count("NoAccountSelected") == 1
    assert condition(status, "AccountsSelected")["status"] == "False"


async def test_a_filter_that_matches_some_accounts_counts_them_and_a_spec_change_counts_again(w: KubeWorld) -> None:
    accounts(w, "UK", "US", "US")
    uk = await w.apply("uk", accountFilter='address.country == "UK"')
    status = await uk.reconcile()
    selected = condition(status, "AccountsSelected")
    assert (selected["status"], selected["reason"]) == ("True", "AccountsSelected")
    assert "keep(s) 1 of the Organization's 3 Account(s)" in selected["message"]
    resource = ("m3stripe.dev", "v1alpha1", uk.namespace, "stripeintegrations")
    patch = {"spec": {"accountFilter": 'address.country == "FR"'}}
    await asyncio.to_thread(w.custom.patch_namespaced_custom_object, *resource, uk.name, patch)
    status = await uk.reconcile()
    assert condition(status, "AccountsSelected")["reason"] == "NoAccountSelected"


async def test_account_ids_naming_no_account_of_the_organization_are_no_account_selected(w: KubeWorld) -> None:
    accounts(w, "UK")
    typo = await w.apply("typo", accountIds=["acc-that-does-not-exist"])
    status = await typo.reconcile()
    selected = condition(status, "AccountsSelected")
    assert selected["status"] == "False" and "spec.accountIds (1)" in selected["message"]


async def test_without_account_ids_and_filter_every_account_is_selected_and_nothing_is_counted(w: KubeWorld) -> None:
    accounts(w, "UK")
    everything = await w.apply("all")
    status = await everything.reconcile()
    assert condition(status, "AccountsSelected")["reason"] == "AllAccounts" and "accountSelection" not in status
