"""Deterministic Stripe idempotency keys: a retry of the same step for the same Bill version reuses its key."""

from __future__ import annotations

import hashlib
import json
from typing import Any

MAX_KEY = 255  # Stripe's limit


def idempotency_key(organization_id: str, bill_id: str, version: int, step: str, params: Any = None) -> str:
    """Key for one write of one Bill version, from the Bill's durable identity (its m3ter Organization and id, not
    the Kubernetes object that writes it). The parameters are part of it, so a step whose inputs changed (say, the
    lines still missing after a partial attempt) gets a new key instead of Stripe's idempotency_error for reused
    keys."""
    material = json.dumps([organization_id, bill_id, version, step, params], sort_keys=True, default=str)
    digest = hashlib.sha256(material.encode()).hexdigest()[:40]
    # The step is only a readable hint: cut it, never the digest that makes the key unique.
    return f"m3stripe-{step[:64]}-{digest}"
