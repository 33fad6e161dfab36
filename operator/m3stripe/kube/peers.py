"""The other StripeIntegrations that send the same m3ter Organization's Bills to the same Stripe account and mode.

Read from the Kubernetes API in every namespace, once per pass, so integrations watched by another operator shard
(another Deployment, other namespaces) count too. Who writes a Bill both select is domain.overlap's rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from m3stripe.adapters.kube_api import KubeApi, KubeApiError
from m3stripe.api.conditions import parse_rfc3339
from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.api.status import StripeIntegrationStatus, read_status
from m3stripe.domain.overlap import Overlap, Peer, Seniority, selection_digest
from m3stripe.domain.spec_validation import parse_spec

# An object without a creationTimestamp (the API server always sets one) is taken for the youngest.
_LATEST = datetime.max.replace(tzinfo=UTC)

PEERS_RBAC_HINT = (
    "grant the operator's ServiceAccount `list` on stripeintegrations.m3stripe.dev in all namespaces (the ClusterRole "
    "m3stripe-operator-peers in deploy/base)"
)


def seniority(metadata: Mapping[str, Any], namespace: str, name: str) -> Seniority:
    """(creationTimestamp, namespace, name): the older integration writes the Bills two select."""
    try:
        created = parse_rfc3339(metadata.get("creationTimestamp"))
    except ValueError:
        created = None
    return (created or _LATEST, namespace, name)


def selection_of(spec: StripeIntegrationSpec) -> str:
    return selection_digest(
        spec.accountIds,
        spec.restrictedAccountIds,
        spec.accountFilter,
        spec.onlySendBillOnApproval,
        spec.excludedLineItemTypes,
    )


async def find_overlap(
    kube: KubeApi,
    *,
    me: Seniority,
    uid: str,
    spec: StripeIntegrationSpec,
    stripe_account: str | None,
) -> Overlap:
    """This integration's peers: same m3ter Organization, same Stripe mode, the same Stripe account (or one not
    known: a restricted key that may not read its account could be on the same one, so it is counted, to be safe)."""
    try:
        items = await kube.list_integrations()
    except KubeApiError as err:
        why = f"the other StripeIntegrations could not be listed ({err})"
        forbidden = err.status in (401, 403)
        if forbidden:
            why += f"; {PEERS_RBAC_HINT}"
        return Overlap(me, (), unknown=why, forbidden=forbidden)
    peers: list[Peer] = []
    for item in items:
        meta = item.get("metadata") or {}
        if not isinstance(meta, Mapping) or meta.get("uid") == uid or meta.get("deletionTimestamp"):
            continue
        parsed = parse_spec(item.get("spec"))
        if isinstance(parsed, list):
            continue  # an unusable spec sends nothing
        other = parsed.spec
        if other.m3ter.organizationId != spec.m3ter.organizationId or other.is_test_mode != spec.is_test_mode:
            continue
        status = _read_peer_status(item.get("status"))
        account = status.stripeAccountId or None
        if account and stripe_account and account != stripe_account:
            continue
        notes = []  # each a reason it sends no Bills now, so owns none (Peer.writes, domain.overlap)
        if other.is_plan:
            notes.append("in Plan mode")
        if other.suspend:
            notes.append("suspended")
        if status.disabled:
            notes.append("disabled")
        if not status.connected:
            notes.append("not connected")
        if not account:
            notes.append("its Stripe account is not known yet")
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        created = seniority(meta, namespace, name)[0]
        peers.append(
            Peer(
                namespace,
                name,
                str(meta.get("uid") or ""),
                created,
                parsed.selector(),
                tuple(notes),
                selection_of(other),
                excluded=frozenset(other.excludedLineItemTypes),
            )
        )
    return Overlap(me, tuple(peers))


def _read_peer_status(raw: object) -> StripeIntegrationStatus:
    """The fields read of another integration's status (not its run history: cheap for many peers); what cannot
    be read is as if absent (its account unknown: counted as on the same one, to be safe)."""
    if not isinstance(raw, Mapping):
        return StripeIntegrationStatus()
    return read_status({key: raw[key] for key in ("stripeAccountId", "disabled", "connected") if key in raw})
