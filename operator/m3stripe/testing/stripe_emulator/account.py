"""``GET /v1/account`` and ``GET /v1/balance``: cheap calls that prove a key works."""

from __future__ import annotations

from typing import Any

from .common import Ctx
from .params import Schema
from .state import Obj

RETRIEVE = Schema()
BALANCE = Schema()


def retrieve(ctx: Ctx, params: dict[str, Any]) -> Obj:
    profile = ctx.account
    return {
        "id": profile.id,
        "object": "account",
        "business_profile": {
            "mcc": None,
            "name": profile.business_name,
            "support_email": profile.email,
            "support_phone": None,
            "support_url": None,
            "url": None,
        },
        "business_type": None,
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "controller": {"type": "account"},
        "country": profile.country,
        "created": profile.created,
        "default_currency": profile.default_currency,
        "details_submitted": True,
        "email": profile.email,
        "metadata": {},
        "payouts_enabled": True,
        "settings": {
            "dashboard": {"display_name": profile.business_name, "timezone": "Etc/UTC"},
            "invoices": {"default_account_tax_ids": None, "hosted_payment_method_save": "offer"},
        },
        "type": "standard",
    }


def balance(ctx: Ctx, params: dict[str, Any]) -> Obj:
    """Paid invoices' amounts show up as pending funds, per currency."""
    pending = ctx.state.paid_by_currency
    currencies = sorted(pending) or [ctx.account.default_currency]
    return {
        "object": "balance",
        "available": [{"amount": 0, "currency": c, "source_types": {"card": 0}} for c in currencies],
        "livemode": ctx.livemode,
        "pending": [
            {"amount": pending.get(c, 0), "currency": c, "source_types": {"card": pending.get(c, 0)}}
            for c in currencies
        ],
    }
