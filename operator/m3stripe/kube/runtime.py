"""Process-wide state shared by the kopf handlers: configuration, API clients, metrics, workers."""

from __future__ import annotations

from dataclasses import dataclass, field

from m3stripe.adapters.kube_api import KubeApi
from m3stripe.kube.config import OperatorConfig
from m3stripe.metrics import Metrics


@dataclass
class Runtime:
    config: OperatorConfig
    kube: KubeApi
    metrics: Metrics
    workers: dict[str, object] = field(default_factory=dict)
