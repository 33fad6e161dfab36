"""The m3ter Service User the adapters' tests read with."""

from __future__ import annotations

from m3stripe.adapters.m3ter_token import M3terCredentials

ORG = "org-1"
CLIENT_ID = "client-1"
SECRET = "very-secret-value-123"
CREDS = M3terCredentials(organization_id=ORG, client_id=CLIENT_ID, client_secret=SECRET)
