"""The StripeIntegration status: the single source of truth for the CRD's status schema.

Conditions follow metav1.Condition; `Ready` summarises, `Stalled` appears only while true (kstatus's
abnormal-true polarity), and `observedGeneration` sits at the top level where kstatus reads it.
Counters here are best-effort, as the Kubernetes API conventions say of status: Stripe itself is the
ledger of what was sent.
"""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
CONDITION_TYPE_PATTERN = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"


class ConditionType(enum.StrEnum):
    READY = "Ready"
    CONNECTED = "Connected"
    SOURCE_CONNECTED = "SourceConnected"
    SYNCED = "Synced"
    STALLED = "Stalled"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Condition(_Model):
    """One observation of the integration's state (metav1.Condition)."""

    type: str = Field(max_length=316, pattern=CONDITION_TYPE_PATTERN, description="Type of the condition, CamelCase.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observedGeneration: int | None = Field(
        default=None, ge=0, description="The metadata.generation this condition was computed from."
    )
    lastTransitionTime: str = Field(
        description="When status last changed (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=REASON_PATTERN,
        description="Machine-readable CamelCase reason for the condition's last transition.",
    )
    message: str = Field(max_length=32768, description="Human-readable details and what to do about them.")


class LastSync(_Model):
    """Summary of the last sync run; the full history is kept elsewhere, bounded."""

    runId: str | None = Field(default=None, description="Identifier of the run.")
    status: str | None = Field(
        default=None, description="m3ter run status of the run: COMPLETE, ERROR, AWAITING_RETRY, AUTH_FAILED, ..."
    )
    startTime: str | None = Field(default=None, description="When the run started (RFC 3339).")
    completionTime: str | None = Field(default=None, description="When the run ended (RFC 3339).")
    billsSent: int = Field(default=0, ge=0, description="Bills sent to Stripe in this run.")
    billsSkipped: int = Field(default=0, ge=0, description="Bills read but not selected or already in Stripe.")
    billsFailed: int = Field(default=0, ge=0, description="Bills that produced an error event in this run.")
    message: str | None = Field(default=None, max_length=32768, description="One-line summary of the run.")


class StripeIntegrationStatus(_Model):
    """Observed state of the integration, written only by the operator."""

    observedGeneration: int | None = Field(
        default=None, ge=0, description="The metadata.generation the operator last acted on (for kstatus)."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready (summary), Connected, SourceConnected, Synced, and Stalled while the spec is unusable.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    integrationId: str | None = Field(
        default=None,
        description="ID of the integration configuration; stamped into the metadata of every Stripe object.",
    )
    connected: bool = Field(default=False, description="The Stripe credential is present, valid and of the right mode.")
    stripeAccountId: str | None = Field(default=None, description="The Stripe account the credential belongs to.")
    disabled: bool = Field(
        default=False, description="Disabled automatically after too many successive errors; see the Ready message."
    )
    consecutiveErrors: int = Field(default=0, ge=0, description="Successive error events since the last success.")
    lastSync: LastSync | None = Field(default=None, description="Summary of the last sync run.")
    lastSuccessfulSyncTime: str | None = Field(
        default=None, description="When a sync run last completed without errors (RFC 3339)."
    )
    lastHandledRequestedAt: str | None = Field(
        default=None, description="Token of the last on-demand sync request handled (the requested-at annotation)."
    )
    lastHandledReenable: str | None = Field(
        default=None, description="Token of the last re-enable request handled (the reenable annotation)."
    )
    lastHandledReplay: str | None = Field(
        default=None, description="Token of the last replay request handled (the replay annotation)."
    )
