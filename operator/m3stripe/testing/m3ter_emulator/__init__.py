"""An m3ter REST API emulator for tests, driven through the official ``m3ter`` SDK over real HTTP.

async with M3terEmulator() as m3ter:
    m3ter.add_client("id", "secret", "org-1", token_ttl_seconds=60)
    account = m3ter.add_account("org-1", name="Acme", code="acme", currency="USD")
    m3ter.add_bill("org-1", account_id=account, lines=[{"line_item_type": "USAGE", "subtotal": "9.5"}])
    client = AsyncM3ter(api_key="id", api_secret="secret", org_id="org-1", base_url=m3ter.url, token=...)

It answers as m3ter documents: pageSize bounds per endpoint, 403 for an expired or revoked token,
{"message": ...} error bodies, and m3ter's Config API rate limits (50 requests/s per Organization,
20,000 per 5 minutes per source IP; constructor arguments to change or turn them off).
"""

from .admin import load_fixtures
from .server import Fault, M3terEmulator, RecordedRequest
from .state import MAX_PAGE_SIZE, PAGE_SIZE_LIMITS, EmulatorError, M3terState

__all__ = [
    "MAX_PAGE_SIZE",
    "PAGE_SIZE_LIMITS",
    "EmulatorError",
    "Fault",
    "M3terEmulator",
    "M3terState",
    "RecordedRequest",
    "load_fixtures",
]
