"""The StripeIntegration spec every benchmark runs its integrations with (no emulator imported: the operator-side
processes of the benchmarks load it too)."""

from __future__ import annotations

from typing import Any


def bench_spec(organization_id: str, requests_per_second: float, mode: str, **more: Any) -> dict[str, Any]:
    """Test mode, a threshold no benchmark reaches, invoice mode or items mode (`mode`), and `more` on top."""
    return {
        "destination": "StripeTestMode",
        "credentialRef": {"name": "stripe"},
        "m3ter": {"organizationId": organization_id, "credentialsRef": {"name": "m3ter"}},
        "requestsPerSecond": requests_per_second,
        "createStripeInvoice": mode == "invoice",
        "autoDisableThreshold": 1000,
        **more,
    }
